"""Search spaces: validity of sample / mutate / neighbours, distributions, one compile."""

import collections
import itertools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import spaces
from jaxnas.arch import PAD, Arch, ArchError, prune, unstack

SPACES = {
    "nasbench101": spaces.nasbench101(),
    "nasbench201": spaces.nasbench201(),
    "nasbench_graph": spaces.nasbench_graph(),
    "mlp": spaces.mlp(),
    "dag": spaces.dag(),
    "dag-small-edges": spaces.dag(("a", "b", "c"), max_nodes=8, max_edges=6),
}


@pytest.fixture(params=list(SPACES), name="space")
def space_fixture(request):
    return SPACES[request.param]


def _counting(fn):
    """Wraps fn so that ``traces[0]`` counts how often jit traced it."""
    traces = [0]

    def wrapped(*args):
        traces[0] += 1
        return fn(*args)

    return wrapped, traces


def _same(a: Arch, b: Arch) -> bool:
    return np.array_equal(a.adj, b.adj) and np.array_equal(a.ops, b.ops)


def test_registry_builds_every_space():
    assert set(spaces.names()) == {"nasbench101", "nasbench201", "mlp", "dag", "conv"}
    for name in spaces.names():
        assert spaces.get(name).name == name
    with pytest.raises(ValueError, match="unknown space 'nope'"):
        spaces.get("nope")


def test_sample_is_valid_and_compiles_once(space):
    counted, traces = _counting(space.sample)
    sample = jax.jit(counted, static_argnums=1)
    for seed in range(3):
        population = sample(jax.random.key(seed), 64)
        assert population.adj.shape == (64, space.max_nodes, space.max_nodes)
        assert population.adj.dtype == jnp.int8 and population.ops.dtype == jnp.int32
        assert bool(jax.vmap(space.is_valid)(population).all())
        for arch in unstack(population):
            space.validate(arch)
    assert traces[0] == 1


def test_sample_is_deterministic_and_key_sensitive(space):
    sample = jax.jit(space.sample, static_argnums=1)
    a = sample(jax.random.key(1), 16)
    b = sample(jax.random.key(1), 16)
    c = sample(jax.random.key(2), 16)
    assert _same(a, b)
    assert not _same(a, c)


def test_mutate_gives_a_valid_different_arch_and_compiles_once(space):
    counted, traces = _counting(jax.vmap(space.mutate))
    mutate = jax.jit(counted)
    parents = space.sample(jax.random.key(0), 64)
    for seed in range(3):
        children = mutate(jax.random.split(jax.random.key(seed), 64), parents)
        assert bool(jax.vmap(space.is_valid)(children).all())
        for child, parent in zip(unstack(children), unstack(parents), strict=True):
            space.validate(child)
            assert not _same(child, parent)
        parents = children
    assert traces[0] == 1


def test_mutate_uses_every_move_of_a_dag_space():
    space = SPACES["nasbench101"]
    parents = space.sample(jax.random.key(3), 512)
    children = jax.vmap(space.mutate)(jax.random.split(jax.random.key(4), 512), parents)
    real = lambda archs: np.asarray(archs.ops != PAD).sum(1)  # noqa: E731
    edges = lambda archs: np.asarray(archs.adj).sum((1, 2))  # noqa: E731
    grew, shrank = real(children) > real(parents), real(children) < real(parents)
    more, fewer = edges(children) > edges(parents), edges(children) < edges(parents)
    same_shape = (real(children) == real(parents)) & (edges(children) == edges(parents))
    assert grew.any() and shrank.any() and more.any() and fewer.any() and same_shape.any()


@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1), name=st.sampled_from(list(SPACES)))
def test_mutate_chains_stay_valid(seed, name):
    space = SPACES[name]
    arch = _jitted(space, "sample_one")(jax.random.key(seed))
    for key in jax.random.split(jax.random.key(seed + 1), 5):
        child = _jitted(space, "mutate")(key, arch)
        space.validate(child)
        assert not _same(child, arch)
        arch = child


_JITTED = {}


def _jitted(space, method):
    if (space, method) not in _JITTED:
        _JITTED[space, method] = jax.jit(getattr(space, method))
    return _JITTED[space, method]


def test_neighbours_are_valid_distinct_and_one_move_away(space):
    arch = unstack(space.sample(jax.random.key(5), 4))[1]
    neighbours = space.neighbours(arch)
    assert len(neighbours) > 0
    encodings = set()
    for neighbour in unstack(neighbours):
        space.validate(neighbour)
        assert not _same(neighbour, arch)
        encodings.add(neighbour.adj.tobytes() + neighbour.ops.tobytes())
    assert len(encodings) == len(neighbours)


def test_nasbench201_neighbours_and_enumeration():
    space = SPACES["nasbench201"]
    arch = unstack(space.sample(jax.random.key(0), 1))[0]
    neighbours = space.neighbours(arch)
    assert len(neighbours) == 24  # 6 edges x 4 other ops
    assert ((np.asarray(neighbours.ops) != arch.ops).sum(1) == 1).all()
    cells = space.enumerate()
    assert len(cells) == 5**6
    assert len({o.tobytes() for o in np.asarray(cells.ops)}) == 5**6


def test_nasbench201_sample_is_uniform():
    ops = np.asarray(SPACES["nasbench201"].sample(jax.random.key(0), 20000).ops[:, 1:7])
    counts = np.stack([np.bincount(ops[:, e], minlength=5) for e in range(6)])
    expected = 20000 / 5
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 60  # 24 dof: p < 1e-4 beyond ~52


def test_mlp_enumeration_and_depth_distribution():
    space = SPACES["mlp"]
    k, max_layers = space.num_ops, space.max_nodes - 2
    assert len(space.enumerate()) == sum(k**d for d in range(1, max_layers + 1))
    depth = np.asarray((space.sample(jax.random.key(0), 20000).ops >= 0).sum(1))
    expected = np.array([k**d for d in range(1, max_layers + 1)], float)
    expected /= expected.sum()
    observed = np.bincount(depth, minlength=max_layers + 1)[1:] / len(depth)
    np.testing.assert_allclose(observed, expected, atol=0.015)


_prune = jax.jit(prune)


def _exact_dag_distribution(space):
    """NAS-Bench-101's random_spec law on a tiny space, computed by enumeration."""
    n, k = space.max_nodes, space.num_ops
    rows, cols = np.triu_indices(n, 1)
    weights = collections.Counter()
    for bits in itertools.product((0, 1), repeat=len(rows)):
        adj = np.zeros((n, n), np.int8)
        adj[rows, cols] = bits
        for inner in itertools.product(range(k), repeat=n - 2):
            ops = np.array((-1, *inner, -2), np.int32)
            arch = jax.tree_util.tree_map(np.asarray, _prune(Arch(adj, ops)))
            try:
                space.validate(arch)
            except ArchError:
                continue
            weights[arch.adj.tobytes() + arch.ops.tobytes()] += 1
    total = sum(weights.values())
    return {key: count / total for key, count in weights.items()}


def test_dag_sample_follows_nasbench101_random_spec_law():
    space = spaces.dag(("a", "b"), max_nodes=4, max_edges=4)
    exact = _exact_dag_distribution(space)
    draws = 30000
    population = jax.jit(space.sample, static_argnums=1)(jax.random.key(0), draws)
    adj, ops = np.asarray(population.adj), np.asarray(population.ops)
    observed = collections.Counter(adj[i].tobytes() + ops[i].tobytes() for i in range(draws))
    assert set(observed) <= set(exact)
    chi2 = sum((observed[key] - draws * p) ** 2 / (draws * p) for key, p in exact.items())
    assert chi2 < len(exact) + 6 * np.sqrt(2 * len(exact))


def _all_live(adj: np.ndarray) -> bool:
    """Every node lies on an input -> output path (transitive closure by matrix powers)."""
    n = len(adj)
    reach = np.eye(n, dtype=np.int64)
    for _ in range(n):
        reach = np.minimum(reach + reach @ adj, 1)
    return bool(reach[0].all() and reach[:, -1].all())


def test_dag_enumerate_matches_brute_force():
    space = spaces.dag(("a", "b"), max_nodes=5, max_edges=5)
    cells = space.enumerate()
    for arch in unstack(cells):
        space.validate(arch)
    encodings = {a.adj.tobytes() + a.ops.tobytes() for a in unstack(cells)}
    assert len(encodings) == len(cells)
    # brute force: every 5-node spec that is full (no dead node) and within the edge limit
    full = 0
    for size in range(2, 6):
        r, c = np.triu_indices(size, 1)
        for bits in itertools.product((0, 1), repeat=len(r)):
            if sum(bits) > 5:
                continue
            adj = np.zeros((size, size), np.int8)
            adj[r, c] = bits
            if _all_live(adj):
                full += 2 ** (size - 2)
    assert len(cells) == full


def test_space_validation_errors():
    space = SPACES["nasbench101"]
    arch = unstack(space.sample(jax.random.key(0), 1))[0]
    with pytest.raises(ArchError, match="padded nodes"):
        space.validate(Arch(np.zeros((5, 5), np.int8), np.array([-1, 0, 0, 0, -2], np.int32)))
    dense = np.triu(np.ones((7, 7), np.int8), 1)
    with pytest.raises(ArchError, match="exceed the space's limit of 9"):
        space.validate(Arch(dense, np.array([-1, 0, 1, 2, 0, 1, -2], np.int32)))
    with pytest.raises(ArchError, match="expected one architecture"):
        space.validate(space.sample(jax.random.key(0), 2))
    with pytest.raises(ArchError, match="architecture 1: "):
        bad = Arch(np.stack([arch.adj, np.zeros_like(arch.adj)]), np.stack([arch.ops, arch.ops]))
        space.validate_population(bad)
    with pytest.raises(ArchError, match="unknown op 'conv5'"):
        space.op_id("conv5")
    with pytest.raises(ArchError, match="fixed edge->node adjacency"):
        nb201 = SPACES["nasbench201"]
        cell = unstack(nb201.sample(jax.random.key(0), 1))[0]
        adj = cell.adj.copy()
        adj[0, 1] = 0
        nb201.validate(Arch(adj, cell.ops))
