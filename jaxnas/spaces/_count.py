"""Exact, fast counts of the architectures of a search space.

Node-labelled DAG spaces (``nasbench101``, ``dag``) are counted without
hashing every labelled spec. The unlabelled full DAGs are enumerated as bit
codes; each is relabelled by exact colour refinement (nodes sorted by their
stable colour), and its canonical code is the smallest code over the
permutations inside equal-colour cells (usually just one). Isomorphic DAGs get
the same code and others cannot, since a code is an adjacency matrix of the
graph. The labellings of each class are counted up to its automorphisms with
Burnside's lemma.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from jaxnas.arch import Arch, nb201_unique_str

_MAX_COUNT_NODES = 8  # all n * n adjacency bits must fit one uint64 code
_BLOCK = 1 << 16  # DAGs handled at once, to bound memory


def count(space, max_nodes: int | None = None) -> tuple[int, int]:
    """Counts a space exactly: (valid, unique).

    ``nasbench201``: valid is the 15,625 cells, unique the number of distinct
    NATS-Bench unique-architecture keys (``nb201_unique_str``), 6,466.

    A ``ChainSpace`` (``mlp``): a chain of L layers, min_layers <= L <= N-2, each
    one of K ops; distinct chains are never isomorphic, so valid = unique =
    sum of K^L.

    Every other space is a node-labelled DAG space with NAS-Bench-101 semantics
    and K = ``space.num_ops``:

    * valid: the number of (matrix, labelling) specs with n nodes, 2 <= n <=
      max_nodes, whose n x n upper-triangular matrix is a full DAG (every node
      on an input -> output path, i.e. the spec equals its pruned graph) with at
      most ``space.max_edges`` edges, each matrix counted with all K^(n-2)
      labellings of its inner nodes. This is the number of distinct compact
      encodings (real nodes first, padding, output last) of valid cells, and
      NAS-Bench-101's count of graphs before de-duplication (1,293,208).
    * unique: the number of those labelled graphs that are distinct up to
      isomorphism, i.e. of pruned cells with at most ``max_edges`` edges up to
      isomorphism (423,624 for NAS-Bench-101: 7 nodes, 9 edges, 3 ops).

    NAS-Bench-101 takes well under a second; an 8-node space without an edge
    limit (24 million full DAGs) takes minutes.

    Args:
      space: a Space (reads ``name``, ``max_nodes``, ``num_ops``, ``max_edges``).
      max_nodes: count cells of at most this many nodes instead of
        ``space.max_nodes`` (DAG spaces only; at most 8).

    Returns:
      (valid, unique) as Python ints.
    """
    if space.name == "nasbench201":
        if max_nodes is not None:
            raise ValueError("nasbench201 has a fixed cell; max_nodes does not apply")
        return _count_nb201(space)
    if space.topology == "chain":
        if max_nodes is not None:
            raise ValueError("a chain space counts all its depths; max_nodes does not apply")
        total = sum(space.num_ops ** depth
                    for depth in range(space.min_layers, space.max_layers + 1))
        return total, total
    max_nodes = space.max_nodes if max_nodes is None else max_nodes
    if not 2 <= max_nodes <= _MAX_COUNT_NODES:
        raise ValueError(f"exact counting supports 2..{_MAX_COUNT_NODES} nodes; got {max_nodes}")
    max_edges = max_nodes ** 2 if space.max_edges is None else space.max_edges
    num_ops = space.num_ops
    valid = unique = 0
    for n in range(2, max_nodes + 1):
        canonical, labelled = [], []
        for codes in _full_dag_blocks(n, max_edges):
            valid += len(codes) * num_ops ** (n - 2)
            block_canonical, block_labelled = _classes(codes, n, num_ops)
            # labelled is a class property, so any member's value will do
            block_canonical, first = np.unique(block_canonical, return_index=True)
            canonical.append(block_canonical)
            labelled.append(block_labelled[first])
        if canonical:
            _, first = np.unique(np.concatenate(canonical), return_index=True)
            unique += int(np.concatenate(labelled)[first].sum())
    return valid, unique


def _count_nb201(space) -> tuple[int, int]:
    cells = space.enumerate()
    keys = {nb201_unique_str(Arch(adj=cells.adj[i], ops=cells.ops[i])) for i in range(len(cells))}
    return len(cells), len(keys)


def full_dag_codes(n: int, max_edges: int) -> np.ndarray:
    """Every n-node upper-triangular full DAG with at most ``max_edges`` edges.

    A full DAG has every node on an input -> output path: each node but the
    input has an in-edge and each node but the output an out-edge.

    Returns:
      (M,) uint64 codes, bit ``i * n + j`` set for each edge i -> j, sorted.
    """
    blocks = list(_full_dag_blocks(n, max_edges))
    return np.sort(np.concatenate(blocks)) if blocks else np.zeros(0, np.uint64)


def _full_dag_blocks(n: int, max_edges: int) -> Iterator[np.ndarray]:
    """``full_dag_codes`` in blocks of about ``_BLOCK`` codes (unsorted)."""
    pending, size = [], 0
    for codes in _full_dag_pieces(n, max_edges):
        pending.append(codes)
        size += len(codes)
        if size >= _BLOCK:
            yield np.concatenate(pending)
            pending, size = [], 0
    if pending:
        yield np.concatenate(pending)


def _full_dag_pieces(n: int, max_edges: int) -> Iterator[np.ndarray]:
    """Full DAG codes built column by column, the last column in bounded pieces."""
    codes = np.zeros(1, np.uint64)
    num_edges = np.zeros(1, np.int64)
    covered = np.zeros(1, np.int64)  # bit i: node i already has an out-edge
    for j in range(1, n):
        if not len(codes):
            return
        # Node j's in-edges: every nonempty subset of the nodes before it.
        subsets = np.arange(1, 2 ** j, dtype=np.int64)
        members = (subsets[:, None] >> np.arange(j)) & 1
        column = (members.astype(np.uint64) << (np.arange(j, dtype=np.uint64) * n + j)).sum(1)
        last = j == n - 1
        step = max(1, _BLOCK // len(subsets)) if last else len(codes)
        for start in range(0, len(codes), step):
            grown = (codes[start:start + step, None] | column[None, :]).ravel()
            grown_edges = (num_edges[start:start + step, None] + members.sum(1)).ravel()
            grown_covered = (covered[start:start + step, None] | subsets).ravel()
            # Each later node needs an in-edge and each node without an out-edge yet
            # needs one into a later node, so at least this many edges remain to add.
            uncovered = j + 1 - _popcount(grown_covered)
            if last:
                keep = (grown_edges <= max_edges) & (uncovered == 1)  # only the output
                if keep.any():
                    yield grown[keep]
            else:
                keep = grown_edges + np.maximum(n - 1 - j, uncovered) <= max_edges
                codes, num_edges, covered = grown[keep], grown_edges[keep], grown_covered[keep]


def _popcount(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.int64)
    total = np.zeros_like(x)
    while x.any():
        total += x & 1
        x = x >> 1
    return total


def _dense_rank(keys: np.ndarray) -> np.ndarray:
    """(B, n) int64: per row, the rank of each key among the row's distinct keys."""
    order = np.argsort(keys, axis=1, kind="stable")
    ordered = np.take_along_axis(keys, order, 1)
    steps = np.concatenate([np.zeros((len(keys), 1), np.int64),
                            (ordered[:, 1:] != ordered[:, :-1]).astype(np.int64)], 1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.cumsum(steps, 1), 1)
    return ranks


def _stable_colours(adj: np.ndarray) -> np.ndarray:
    """Colour refinement of a batch of DAGs, exact (no hashing).

    Args:
      adj: (B, n, n) int8 adjacency.

    Returns:
      (B, n) int64 colour ranks, isomorphism invariant: a node's colour refines
      (in-degree, out-degree) by the multisets of its in- and out-neighbours'
      colours until the partition is stable.
    """
    n = adj.shape[1]
    base = n + 1  # a neighbour count is < base, so a multiset is a base-(n+1) number
    powers = base ** np.arange(n, dtype=np.int64)
    colours = _dense_rank(adj.sum(1, dtype=np.int64) * base + adj.sum(2, dtype=np.int64))
    for _ in range(n):
        weights = powers[colours]
        into = np.einsum("buv,bu->bv", adj, weights)
        out = np.einsum("bvw,bw->bv", adj, weights)
        # colour < n and each multiset < base**n, so the key fits an int64 for n <= 8
        refined = _dense_rank((colours * base ** n + into) * base ** n + out)
        if (refined.max(1) == colours.max(1)).all():
            break
        colours = refined
    return colours


def _cell_permutations(sorted_colours: np.ndarray) -> np.ndarray:
    """(Q, n): every permutation of positions that only moves positions within a colour cell."""
    n = len(sorted_colours)
    cells = [np.flatnonzero(sorted_colours == c) for c in np.unique(sorted_colours)]
    perms = []
    for choice in itertools.product(*(itertools.permutations(cell) for cell in cells)):
        perm = np.empty(n, np.int64)
        for cell, image in zip(cells, choice, strict=True):
            perm[cell] = image
        perms.append(perm)
    return np.array(perms)


def _num_cycles(perm: np.ndarray) -> int:
    seen = np.zeros(len(perm), bool)
    cycles = 0
    for start in range(len(perm)):
        if not seen[start]:
            cycles += 1
            node = start
            while not seen[node]:
                seen[node] = True
                node = perm[node]
    return cycles


def _classes(codes: np.ndarray, n: int, num_ops: int) -> tuple[np.ndarray, np.ndarray]:
    """Canonical codes of n-node full DAGs and the labelled classes of each.

    Args:
      codes: (B,) uint64 DAG codes.

    Returns:
      (canonical (B,) uint64, labelled (B,) int64): equal canonical codes iff
      isomorphic; labelled is the number of labellings with num_ops ops up to
      automorphism, by Burnside the mean over automorphisms of
      num_ops ** (cycles on the inner nodes).
    """
    bits = (codes[:, None] >> np.arange(n * n, dtype=np.uint64)) & np.uint64(1)
    adj = bits.astype(np.int8).reshape(-1, n, n)
    colours = _stable_colours(adj)
    order = np.argsort(colours, axis=1, kind="stable")
    sorted_colours = np.take_along_axis(colours, order, 1)
    position = np.empty_like(order)  # where each node goes when sorted by colour
    np.put_along_axis(position, order, np.arange(n), 1)
    canonical = np.zeros(len(codes), np.uint64)
    for i, j in zip(*np.triu_indices(n, 1), strict=True):
        canonical |= bits[:, i * n + j] << (position[:, i] * n + position[:, j]).astype(np.uint64)
    labelled = np.full(len(codes), num_ops ** (n - 2), np.int64)
    # A discrete colouring (n colours) leaves one ordering and no automorphism but
    # the identity; only the others need the permutations inside their cells.
    tied = np.flatnonzero(sorted_colours[:, -1] < n - 1)
    pair_rows, pair_cols = np.nonzero(~np.eye(n, dtype=bool))
    patterns, group = np.unique(sorted_colours[tied], axis=0, return_inverse=True)
    for index, pattern in enumerate(patterns):
        members = tied[group.ravel() == index]
        member_order = order[members]
        sorted_adj = adj[members[:, None, None], member_order[:, :, None], member_order[:, None, :]]
        pair_bits = sorted_adj[:, pair_rows, pair_cols].astype(np.uint64)
        perms = _cell_permutations(pattern)
        # The input and output are alone in their cells (only they lack in- resp.
        # out-edges), so cycles on the inner nodes are all cycles but those two.
        fixed = num_ops ** np.array([_num_cycles(p) - 2 for p in perms], np.int64)
        shifts = (perms[:, pair_rows] * n + perms[:, pair_cols]).astype(np.uint64)
        permuted = np.zeros((len(members), len(perms)), np.uint64)
        for pair in range(len(pair_rows)):
            permuted |= pair_bits[:, pair, None] << shifts[None, :, pair]
        identity = canonical[members]
        automorphism = permuted == identity[:, None]
        canonical[members] = permuted.min(1)
        labelled[members] = (automorphism * fixed).sum(1) // automorphism.sum(1)
    return canonical, labelled
