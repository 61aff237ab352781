"""Exact space counts against brute force and NAS-Bench-101 / 201's published totals."""

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from jaxnas import spaces
from jaxnas.arch import INPUT, NB101_OPS, OUTPUT, Arch, canonical_hash, nb101_hash, nb101_prune
from jaxnas.spaces._count import count, full_dag_codes


def _dag_space(max_nodes=7, num_ops=3, max_edges=9, name="nasbench101"):
    # count() reads only these attributes of a Space
    op_names = tuple(f"op{i}" for i in range(num_ops))
    return SimpleNamespace(name=name, max_nodes=max_nodes, num_ops=num_ops,
                           max_edges=max_edges, op_names=op_names, topology="dag")


def _brute_force(max_nodes, num_ops, max_edges):
    """(valid, unique by nb101_hash, unique by canonical_hash) over every labelled spec."""
    valid = 0
    nb_hashes, our_hashes = set(), set()
    memo = {}
    for n in range(2, max_nodes + 1):
        rows, cols = np.triu_indices(n, 1)
        for bits in itertools.product((0, 1), repeat=len(rows)):
            matrix = np.zeros((n, n), np.int8)
            matrix[rows, cols] = bits
            kept = nb101_prune(matrix, list(range(n)))
            if kept is None or kept[0].sum() > max_edges:
                continue
            pruned, nodes = kept
            full = len(nodes) == n
            for labels in itertools.product(range(num_ops), repeat=n - 2):
                valid += full
                names = ["input"] + [NB101_OPS[op] for op in labels] + ["output"]
                key = (pruned.tobytes(), tuple(names[i] for i in nodes))
                if key not in memo:
                    ops = np.array([INPUT] + list(labels) + [OUTPUT], np.int32)[nodes]
                    memo[key] = (nb101_hash(pruned, list(key[1])),
                                 canonical_hash(Arch(adj=pruned, ops=ops)))
                nb_hashes.add(memo[key][0])
                our_hashes.add(memo[key][1])
    return valid, len(nb_hashes), len(our_hashes)


@pytest.mark.parametrize("max_nodes, num_ops, max_edges", [
    (5, 3, 9), (5, 2, 5), (4, 3, 4), pytest.param(6, 2, 7, marks=pytest.mark.slow)])
def test_dag_count_matches_brute_force(max_nodes, num_ops, max_edges):
    valid, nb_unique, our_unique = _brute_force(max_nodes, num_ops, max_edges)
    assert nb_unique == our_unique
    assert count(_dag_space(7, num_ops, max_edges), max_nodes=max_nodes) == (valid, our_unique)


def test_unlabelled_six_node_classes_match_brute_force():
    codes = full_dag_codes(6, 7)
    hashes = set()
    for code in codes:
        adj = ((int(code) >> np.arange(36)) & 1).reshape(6, 6).astype(np.int8)
        hashes.add(canonical_hash(Arch(adj=adj, ops=np.array([INPUT, 0, 0, 0, 0, OUTPUT]))))
    smaller = count(_dag_space(5, 1, 7))[1]
    assert count(_dag_space(6, 1, 7))[1] - smaller == len(hashes)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_full_dag_codes_match_brute_force(n):
    # NAS-Bench-101's criterion: only the output has no out-edge, only the input no in-edge
    rows, cols = np.triu_indices(n, 1)
    every = np.arange(2 ** len(rows), dtype=np.int64)
    matrices = np.zeros((len(every), n, n), np.int64)
    matrices[:, rows, cols] = (every[:, None] >> np.arange(len(rows))) & 1
    full = (matrices[:, :-1].any(2).all(1) & matrices[:, :, 1:].any(1).all(1)
            & (matrices.sum((1, 2)) <= 8))
    expected = (matrices[full].reshape(-1, n * n) << np.arange(n * n)).sum(1)
    np.testing.assert_array_equal(full_dag_codes(n, 8), np.sort(expected).astype(np.uint64))


def test_nasbench101_published_total():
    # NAS-Bench-101: 423,624 unique graphs with <= 7 nodes, <= 9 edges, 3 ops; its
    # generator also reports about three times as many before de-duplication.
    valid, unique = count(_dag_space())
    assert unique == 423_624
    assert valid == 1_293_208


def test_nasbench201_count():
    assert count(spaces.nasbench201()) == (15_625, 6_466)


def test_enumerate_nb201():
    cells = spaces.nasbench201().enumerate()
    assert cells.adj.shape == (15_625, 8, 8) and cells.ops.shape == (15_625, 8)
    assert cells.adj.dtype == np.int8 and cells.ops.dtype == np.int32
    assert len({row.tobytes() for row in cells.ops}) == 15_625
    np.testing.assert_array_equal(cells.ops[1], [INPUT, 0, 0, 0, 0, 0, 1, OUTPUT])


def test_count_rejects_bad_requests():
    with pytest.raises(ValueError, match="2..8 nodes"):
        count(_dag_space(9))
    with pytest.raises(ValueError, match="max_nodes does not apply"):
        count(SimpleNamespace(name="nasbench201"), max_nodes=8)


def test_edge_limit_below_any_cell():
    # only input -> output fits one edge
    assert count(_dag_space(5, 3, 1)) == (1, 1)
    assert count(_dag_space(5, 3, 0)) == (0, 0)


def test_registered_spaces_agree_with_their_enumeration():
    for space in (spaces.get("mlp", max_layers=3), spaces.get("nasbench101", max_nodes=5),
                  spaces.get("dag", ops=("a", "b"), max_nodes=5, max_edges=6)):
        assert count(space)[0] == len(space.enumerate())
    assert count(spaces.get("nasbench101")) == (1_293_208, 423_624)
    assert count(spaces.get("nasbench201")) == (15_625, 6_466)
