"""The Arch encoding: validation, jittable validity and pruning, canonical hash, JSON."""

import itertools
import json

import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from hypothesis import given, settings

from jaxnas.arch import (
    INPUT,
    OUTPUT,
    PAD,
    Arch,
    ArchError,
    canonical_hash,
    from_json,
    is_isomorphic,
    is_valid,
    population_from_json,
    population_to_json,
    prune,
    prune_numpy,
    stack,
    to_json,
    validate,
)

NUM_OPS = 3
OP_NAMES = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")


def _arch(adj, ops) -> Arch:
    return Arch(adj=np.asarray(adj, np.int8), ops=np.asarray(ops, np.int32))


def _random_arch(rng: np.random.Generator, n: int, density: float = 0.5,
                 pad_rate: float = 0.2) -> Arch:
    """An upper-triangular arch with isolated padding; possibly disconnected."""
    adj = np.triu(rng.random((n, n)) < density, 1).astype(np.int8)
    ops = rng.integers(0, NUM_OPS, n).astype(np.int32)
    ops[0], ops[-1] = INPUT, OUTPUT
    pad = rng.random(n) < pad_rate
    pad[0] = pad[-1] = False
    ops[pad] = PAD
    adj[pad, :] = 0
    adj[:, pad] = 0
    return Arch(adj=adj, ops=ops)


@st.composite
def archs(draw, min_nodes=2, max_nodes=8, connected=True):
    n = draw(st.integers(min_nodes, max_nodes))
    seed = draw(st.integers(0, 2**32 - 1))
    density = draw(st.sampled_from([0.3, 0.5, 0.8]))
    rng = np.random.default_rng(seed)
    arch = _random_arch(rng, n, density)
    if connected:
        arch.adj[0, n - 1] = 1  # guarantees a path; pruning still removes dead nodes
    return arch


def _valid_base() -> Arch:
    # input -> 1 -> 3 -> output, input -> 2 -> output, node 4 padding
    adj = np.zeros((6, 6), np.int8)
    for i, j in [(0, 1), (1, 3), (3, 5), (0, 2), (2, 5)]:
        adj[i, j] = 1
    return _arch(adj, [INPUT, 0, 1, 2, PAD, OUTPUT])


def _with(arch: Arch, adj_edits=(), op_edits=()) -> Arch:
    adj, ops = arch.adj.copy(), arch.ops.copy()
    for (i, j), value in adj_edits:
        adj[i, j] = value
    for node, value in op_edits:
        ops[node] = value
    return Arch(adj=adj, ops=ops)


BAD_ARCHS = {
    "not square": (lambda a: Arch(adj=a.adj[:, :5], ops=a.ops), "square"),
    "ops shape": (lambda a: Arch(adj=a.adj, ops=a.ops[:5]), r"ops must have shape \(6,\)"),
    "one node": (lambda a: _arch([[0]], [INPUT]), "at least 2 nodes"),
    "not binary": (lambda a: _with(a, [((0, 1), 2)]), "0 or 1"),
    "below diagonal": (lambda a: _with(a, [((3, 1), 1)]), "below the diagonal"),
    "diagonal": (lambda a: _with(a, [((2, 2), 1)]), "on or below the diagonal"),
    "first not input": (lambda a: _with(a, op_edits=[(0, 0)]), "node 0 must be the input"),
    "last not output": (lambda a: _with(a, op_edits=[(5, 1)]), "node 5 must be the output"),
    "inner input id": (lambda a: _with(a, op_edits=[(2, INPUT)]), "carries the input/output"),
    "op out of range": (lambda a: _with(a, op_edits=[(1, NUM_OPS)]), "out of range"),
    "negative op": (lambda a: _with(a, op_edits=[(1, -7)]), "out of range"),
    "padding with edges": (lambda a: _with(a, [((4, 5), 1)]), "padding node 4 has edges"),
    "unreachable output": (lambda a: _with(a, [((3, 5), 0), ((2, 5), 0)]), "not reachable"),
}


def test_base_is_valid():
    base = _valid_base()
    validate(base, num_ops=NUM_OPS, max_nodes=6, max_edges=5)
    assert bool(jax.jit(is_valid, static_argnums=(1, 2))(base, NUM_OPS, 5))


@pytest.mark.parametrize("problem", sorted(BAD_ARCHS))
def test_validate_names_each_problem(problem):
    corrupt, message = BAD_ARCHS[problem]
    bad = corrupt(_valid_base())
    with pytest.raises(ArchError, match=message):
        validate(bad, num_ops=NUM_OPS)
    if bad.adj.shape == (6, 6) and bad.ops.shape == (6,):
        assert not bool(is_valid(bad, NUM_OPS))


def test_validate_space_limits():
    base = _valid_base()
    with pytest.raises(ArchError, match="uses 7 padded nodes"):
        validate(base, num_ops=NUM_OPS, max_nodes=7)
    with pytest.raises(ArchError, match="5 edges exceed the space's limit of 4"):
        validate(base, num_ops=NUM_OPS, max_edges=4)
    assert not bool(is_valid(base, NUM_OPS, 4))


@settings(max_examples=60, deadline=None)
@given(archs(connected=False), st.data())
def test_validate_rejects_any_single_corruption(arch, data):
    n = arch.num_nodes
    kind = data.draw(st.sampled_from(["lower", "first", "last", "range", "pad"]))
    adj, ops = arch.adj.copy(), arch.ops.copy()
    if kind == "lower":
        i = data.draw(st.integers(0, n - 1))
        j = data.draw(st.integers(0, i))
        adj[i, j] = 1
    elif kind == "first":
        ops[0] = data.draw(st.sampled_from([0, OUTPUT, PAD]))
    elif kind == "last":
        ops[-1] = data.draw(st.sampled_from([0, INPUT, PAD]))
    elif kind == "range":
        if n < 3:
            return
        ops[data.draw(st.integers(1, n - 2))] = data.draw(st.sampled_from([NUM_OPS, 99, -4]))
    else:
        if n < 3:
            return
        node = data.draw(st.integers(1, n - 2))
        ops[node] = PAD
        adj[0, node] = adj[node, n - 1] = 1
    with pytest.raises(ArchError):
        validate(Arch(adj=adj, ops=ops), num_ops=NUM_OPS)


def _host_valid(arch: Arch, max_edges: int) -> bool:
    try:
        validate(arch, num_ops=NUM_OPS, max_edges=max_edges)
    except ArchError:
        return False
    return True


def _random_population(seed: int, size: int, n: int) -> list[Arch]:
    """Random archs of one size, some corrupted in ways is_valid must see."""
    rng = np.random.default_rng(seed)
    population = []
    for _ in range(size):
        arch = _random_arch(rng, n, rng.choice([0.2, 0.4, 0.7]))
        corruption = rng.integers(0, 8)
        if corruption == 0:
            i, j = sorted(rng.integers(0, n, 2))
            arch.adj[j, i] = 1
        elif corruption == 1:
            arch.ops[rng.integers(1, n - 1)] = rng.choice([NUM_OPS, -5, INPUT])
        elif corruption == 2:
            node = rng.integers(1, n - 1)
            arch.ops[node] = PAD
            arch.adj[node, rng.integers(node + 1, n)] = 1
        population.append(arch)
    return population


def test_jittable_is_valid_and_prune_agree_with_host():
    population = _random_population(seed=0, size=400, n=7)
    batch = stack(population)
    valid = np.asarray(jax.jit(jax.vmap(lambda a: is_valid(a, NUM_OPS, 9)))(batch))
    pruned = jax.jit(jax.vmap(prune))(batch)
    pruned_adj, pruned_ops = np.asarray(pruned.adj), np.asarray(pruned.ops)
    assert valid.any() and not valid.all()
    for index, arch in enumerate(population):
        assert valid[index] == _host_valid(arch, 9), index
        pad = arch.ops == PAD
        if arch.adj[pad].any() or arch.adj[:, pad].any():
            continue  # pruning compares only encodings whose padding is isolated
        host = prune_numpy(arch.adj, arch.ops)
        if host is None:
            # an unreachable output leaves the arch unchanged (and invalid)
            np.testing.assert_array_equal(pruned_adj[index], arch.adj)
            np.testing.assert_array_equal(pruned_ops[index], arch.ops)
            continue
        # in-place pruning, compacted, is the deleting pruning
        kept = np.flatnonzero(pruned_ops[index] != PAD)
        np.testing.assert_array_equal(pruned_adj[index][np.ix_(kept, kept)], host[0])
        np.testing.assert_array_equal(pruned_ops[index][kept], host[1])
        dropped = np.setdiff1d(np.arange(7), kept)
        assert not pruned_adj[index][dropped].any() and not pruned_adj[index][:, dropped].any()


def test_pruning_is_idempotent():
    population = [a for a in _random_population(seed=1, size=200, n=8)
                  if prune_numpy(a.adj, a.ops) is not None]
    batch = stack(population)
    once = jax.vmap(prune)(batch)
    twice = jax.vmap(prune)(once)
    np.testing.assert_array_equal(np.asarray(once.adj), np.asarray(twice.adj))
    np.testing.assert_array_equal(np.asarray(once.ops), np.asarray(twice.ops))
    for arch in population:
        adj, ops = prune_numpy(arch.adj, arch.ops)
        again = prune_numpy(adj, ops)
        np.testing.assert_array_equal(again[0], adj)
        np.testing.assert_array_equal(again[1], ops)


def test_prune_numpy_examples():
    # node 1 is not fed by the input, node 2 feeds nothing, node 3 is padding
    adj = np.zeros((6, 6), np.int8)
    for i, j in [(0, 2), (0, 4), (1, 4), (4, 5)]:
        adj[i, j] = 1
    result = prune_numpy(adj, [INPUT, 0, 1, PAD, 2, OUTPUT])
    np.testing.assert_array_equal(result[0], [[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(result[1], [INPUT, 2, OUTPUT])
    assert result[0].dtype == np.int8 and result[1].dtype == np.int32
    adj[4, 5] = 0
    assert prune_numpy(adj, [INPUT, 0, 1, PAD, 2, OUTPUT]) is None


def _random_topological_relabel(arch: Arch, rng: np.random.Generator) -> Arch:
    """The same graph with inner nodes renumbered by a random topological order."""
    n = arch.num_nodes
    adj = arch.adj != 0
    order, placed = [0], {0}
    while len(order) < n - 1:
        ready = [v for v in range(1, n - 1) if v not in placed
                 and all(u in placed for u in np.flatnonzero(adj[:, v]))]
        v = ready[rng.integers(len(ready))]
        order.append(v)
        placed.add(v)
    order.append(n - 1)
    order = np.array(order)
    return Arch(adj=arch.adj[np.ix_(order, order)], ops=arch.ops[order])


@settings(max_examples=80, deadline=None)
@given(archs(), st.integers(0, 2**32 - 1))
def test_hash_invariant_under_relabelling(arch, seed):
    relabelled = _random_topological_relabel(arch, np.random.default_rng(seed))
    assert canonical_hash(relabelled) == canonical_hash(arch)
    assert canonical_hash(relabelled, OP_NAMES) == canonical_hash(arch, OP_NAMES)
    assert is_isomorphic(arch, relabelled)


@settings(max_examples=80, deadline=None)
@given(archs(min_nodes=3), st.data())
def test_hash_changes_with_a_label_or_an_edge(arch, data):
    adj, ops = prune_numpy(arch.adj, arch.ops)
    compute = np.flatnonzero(ops >= 0)
    if len(compute):
        node = data.draw(st.sampled_from(compute.tolist()))
        relabelled = ops.copy()
        relabelled[node] = (ops[node] + data.draw(st.integers(1, NUM_OPS - 1))) % NUM_OPS
        assert canonical_hash(_arch(adj, relabelled)) != canonical_hash(arch)
    missing = np.argwhere(np.triu(adj == 0, 1))
    if len(missing):
        i, j = missing[data.draw(st.integers(0, len(missing) - 1))]
        grown = adj.copy()
        grown[i, j] = 1
        assert canonical_hash(_arch(grown, ops)) != canonical_hash(arch)
        assert not is_isomorphic(_arch(grown, ops), arch)


def _brute_force_isomorphic(a: tuple, b: tuple) -> bool:
    (adj_a, ops_a), (adj_b, ops_b) = a, b
    n = len(ops_a)
    if len(ops_b) != n:
        return False
    for inner in itertools.permutations(range(1, n - 1)):
        order = np.array((0, *inner, n - 1))
        if (np.array_equal(adj_a[np.ix_(order, order)], adj_b)
                and np.array_equal(ops_a[order], ops_b)):
            return True
    return False


def test_hash_is_exact_against_brute_force():
    rng = np.random.default_rng(2)
    graphs = []
    for _ in range(150):
        n = int(rng.integers(4, 7))
        arch = _random_arch(rng, n, 0.5, pad_rate=0.0)
        arch.adj[0, n - 1] = 1
        arch.ops[1:-1] = rng.integers(0, 2, n - 2)  # two ops: many near-collisions
        graphs.append(prune_numpy(arch.adj, arch.ops))
    hashes = [canonical_hash(_arch(*g)) for g in graphs]
    for i, j in itertools.combinations(range(len(graphs)), 2):
        if len(graphs[i][1]) == len(graphs[j][1]) and graphs[i][0].sum() == graphs[j][0].sum():
            assert (hashes[i] == hashes[j]) == _brute_force_isomorphic(graphs[i], graphs[j])


def _layered(pairs) -> Arch:
    """input -> nodes 1..4 -> nodes 5..8 -> output, with the given middle edges."""
    adj = np.zeros((10, 10), np.int8)
    adj[0, 1:5] = 1
    adj[5:9, 9] = 1
    for i, j in pairs:
        adj[i, j] = 1
    return _arch(adj, [INPUT] + [0] * 8 + [OUTPUT])


# Every middle node has in- and out-degree 2 in both, so colour refinement (and
# NAS-Bench-101's hash) sees one cell per layer; one is an 8-cycle, the other two
# 4-cycles.
EIGHT_CYCLE = _layered([(1, 5), (1, 6), (2, 6), (2, 7), (3, 7), (3, 8), (4, 8), (4, 5)])
TWO_FOUR_CYCLES = _layered([(1, 5), (1, 6), (2, 5), (2, 6), (3, 7), (3, 8), (4, 7), (4, 8)])


def test_hash_separates_graphs_colour_refinement_cannot():
    assert canonical_hash(EIGHT_CYCLE) != canonical_hash(TWO_FOUR_CYCLES)
    assert not is_isomorphic(EIGHT_CYCLE, TWO_FOUR_CYCLES)
    shifted = _layered([(1, 6), (1, 7), (2, 7), (2, 8), (3, 8), (3, 5), (4, 5), (4, 6)])
    assert canonical_hash(shifted) == canonical_hash(EIGHT_CYCLE)


def test_hash_ignores_padding_and_dead_nodes():
    compact = _arch([[0, 1, 0], [0, 0, 1], [0, 0, 0]], [INPUT, 1, OUTPUT])
    padded = np.zeros((6, 6), np.int8)
    padded[0, 2] = padded[2, 5] = padded[0, 3] = 1  # node 3 is dead, node 1 / 4 padding
    assert canonical_hash(_arch(padded, [INPUT, PAD, 1, 0, PAD, OUTPUT])) == canonical_hash(compact)
    assert canonical_hash(_arch(padded, [INPUT, PAD, 2, 0, PAD, OUTPUT])) != canonical_hash(compact)


def test_hash_with_op_names_is_independent_of_op_numbering():
    arch = _arch([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], [INPUT, 0, 1, OUTPUT])
    swapped = _arch(arch.adj, [INPUT, 1, 0, OUTPUT])
    names = ("a", "b")
    assert canonical_hash(arch, names) == canonical_hash(swapped, names[::-1])
    assert canonical_hash(_arch(arch.adj, [INPUT, 0, 0, OUTPUT]), names) != canonical_hash(
        arch, names)


def test_hash_errors():
    disconnected = _arch(np.zeros((3, 3)), [INPUT, 0, OUTPUT])
    with pytest.raises(ArchError, match="not reachable"):
        canonical_hash(disconnected)
    with pytest.raises(ArchError, match="not reachable"):
        is_isomorphic(disconnected, disconnected)
    with pytest.raises(ArchError, match="batch"):
        canonical_hash(stack([_valid_base(), _valid_base()]))
    with pytest.raises(ArchError, match="out of range"):
        canonical_hash(_valid_base(), op_names=("only",))


@settings(max_examples=60, deadline=None)
@given(archs(connected=False))
def test_json_round_trip(arch):
    text = json.dumps(to_json(arch, OP_NAMES))
    back = from_json(json.loads(text), OP_NAMES)
    np.testing.assert_array_equal(back.adj, arch.adj)
    np.testing.assert_array_equal(back.ops, arch.ops)
    assert back.adj.dtype == np.int8 and back.ops.dtype == np.int32


def test_json_form_is_readable():
    obj = to_json(_valid_base(), OP_NAMES)
    assert obj == {
        "num_nodes": 6,
        "nodes": ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3", "pad", "output"],
        "edges": [[0, 1], [0, 2], [1, 3], [2, 5], [3, 5]],
    }


def test_population_json_round_trip():
    population = stack([_random_arch(np.random.default_rng(seed), 5) for seed in range(10)])
    obj = json.loads(json.dumps(population_to_json(population, OP_NAMES)))
    assert len(obj) == 10
    back = population_from_json(obj, OP_NAMES)
    np.testing.assert_array_equal(back.adj, population.adj)
    np.testing.assert_array_equal(back.ops, population.ops)


BAD_JSON = {
    "unknown op": (lambda o: o["nodes"].__setitem__(1, "conv5x5"), "unknown op name 'conv5x5'"),
    "not a list": (lambda o: o.__setitem__("nodes", "input"), "list of op names"),
    "count mismatch": (lambda o: o.__setitem__("num_nodes", 7), "'num_nodes' is 7"),
    "first not input": (lambda o: o["nodes"].__setitem__(0, "pad"), "first node must be 'input'"),
    "inner output": (lambda o: o["nodes"].__setitem__(2, "output"), "only the first and last"),
    "backward edge": (lambda o: o["edges"].append([3, 1]), "0 <= from < to < 6"),
    "edge out of range": (lambda o: o["edges"].append([0, 6]), "0 <= from < to < 6"),
    "not a pair": (lambda o: o["edges"].append([0, 1, 2]), "not a \\[from, to\\] pair"),
    "duplicate edge": (lambda o: o["edges"].append([0, 1]), "listed twice"),
    "padding edge": (lambda o: o["edges"].append([0, 4]), "padding node 4 has edges"),
    "missing key": (lambda o: o.pop("edges"), "'nodes' and 'edges'"),
}


@pytest.mark.parametrize("problem", sorted(BAD_JSON))
def test_from_json_names_each_problem(problem):
    corrupt, message = BAD_JSON[problem]
    obj = to_json(_valid_base(), OP_NAMES)
    corrupt(obj)
    with pytest.raises(ArchError, match=message):
        from_json(obj, OP_NAMES)


def test_population_json_errors():
    base = to_json(_valid_base(), OP_NAMES)
    small = to_json(_arch([[0, 1], [0, 0]], [INPUT, OUTPUT]), OP_NAMES)
    with pytest.raises(ArchError, match="architecture 1 has 2 nodes"):
        population_from_json([base, small], OP_NAMES)
    broken = json.loads(json.dumps(base))
    broken["nodes"][1] = "nope"
    with pytest.raises(ArchError, match="architecture 1: unknown op name"):
        population_from_json([base, broken], OP_NAMES)
    with pytest.raises(ArchError, match="non-empty list"):
        population_from_json([], OP_NAMES)
    with pytest.raises(ArchError, match="reserved"):
        to_json(_valid_base(), ("input", "b", "c"))
