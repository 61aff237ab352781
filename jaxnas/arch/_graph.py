"""Host-side graph functions: NAS-Bench-101 pruning and an exact canonical hash.

The canonical form is exact, not a Weisfeiler-Lehman fingerprint: colour
refinement splits the nodes into a stable ordered partition, and the few
orderings consistent with it are searched by individualisation and
refinement; the smallest (labels, adjacency) encoding over all of them is the
form, so two labelled DAGs share it if and only if they are isomorphic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from jaxnas.arch._encoding import INPUT, OUTPUT, PAD, Arch, ArchError

_RESERVED_NAMES = {INPUT: "input", OUTPUT: "output", PAD: "pad"}


def _reachable(adj: np.ndarray, start: int) -> np.ndarray:
    """(N,) bool: nodes reachable from ``start`` along the nonzero entries of adj."""
    edges = adj != 0
    reach = np.zeros(adj.shape[0], bool)
    reach[start] = True
    frontier = reach.copy()
    while frontier.any():
        frontier = edges[frontier].any(0) & ~reach
        reach |= frontier
    return reach


def live_mask(adj: np.ndarray) -> np.ndarray | None:
    """(N,) bool of nodes on some input -> output path; None if the output is unreachable.

    Works for any square matrix (upper-triangular or not); node 0 is the input,
    node N-1 the output.
    """
    adj = np.asarray(adj)
    n = adj.shape[0]
    if n < 2:
        return None
    from_input = _reachable(adj, 0)
    if not from_input[n - 1]:
        return None
    return from_input & _reachable(adj.T, n - 1)


def prune_numpy(adj, ops) -> tuple[np.ndarray, np.ndarray] | None:
    """Deletes every node not on an input -> output path (NAS-Bench-101 semantics).

    Args:
      adj: (N, N) adjacency, node 0 the input and node N-1 the output.
      ops: (N,) op ids.

    Returns:
      (adj (M, M) int8, ops (M,) int32) of the M surviving nodes in their
      original order (padding is always removed), or None when the output is
      not reachable from the input.
    """
    adj = np.asarray(adj)
    ops = np.asarray(ops)
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1] or ops.shape != adj.shape[:1]:
        raise ArchError(f"prune needs an (N, N) adjacency and (N,) ops; got shapes {adj.shape} "
                        f"and {ops.shape}")
    live = live_mask(adj)
    if live is None:
        return None
    keep = np.flatnonzero(live)
    return (adj[np.ix_(keep, keep)] != 0).astype(np.int8), ops[keep].astype(np.int32)


def _refine(edges: np.ndarray, colours: list[int]) -> list[int]:
    """Colour refinement to the coarsest stable partition finer than ``colours``.

    A node's new colour is the rank of (old colour, sorted in-neighbour colours,
    sorted out-neighbour colours) among all nodes' signatures; ranks depend only
    on the graph, so the ordered partition is isomorphism invariant.
    """
    n = len(colours)
    preds = [np.flatnonzero(edges[:, v]).tolist() for v in range(n)]
    succs = [np.flatnonzero(edges[v]).tolist() for v in range(n)]
    num_cells = len(set(colours))
    while True:
        signatures = [
            (colours[v], tuple(sorted(colours[u] for u in preds[v])),
             tuple(sorted(colours[w] for w in succs[v])))
            for v in range(n)
        ]
        rank = {sig: r for r, sig in enumerate(sorted(set(signatures)))}
        colours = [rank[sig] for sig in signatures]
        if len(rank) == num_cells:
            return colours
        num_cells = len(rank)


def _smallest_encoding(edges: np.ndarray, colours: list[int]) -> bytes:
    """Smallest adjacency encoding over the leaves of the individualisation tree."""
    colours = _refine(edges, colours)
    n = len(colours)
    counts = np.bincount(colours, minlength=n)
    split = np.flatnonzero(counts > 1)
    if not len(split):
        order = np.argsort(colours)
        return np.packbits(edges[np.ix_(order, order)]).tobytes()
    cell = [v for v in range(n) if colours[v] == split[0]]
    best = None
    tried: list[int] = []
    for v in cell:
        # Exchanging two twins (same cell, same predecessors and successors) is an
        # automorphism fixing everything individualised so far, so their subtrees
        # hold the same encodings: one of them is enough.
        if any(np.array_equal(edges[v], edges[u]) and np.array_equal(edges[:, v], edges[:, u])
               for u in tried):
            continue
        tried.append(v)
        individualised = [2 * c + 1 for c in colours]
        individualised[v] -= 1
        encoding = _smallest_encoding(edges, individualised)
        if best is None or encoding < best:
            best = encoding
    return best


def canonical_form(adj, labels: Sequence) -> bytes:
    """Exact canonical bytes of a node-labelled directed graph.

    Args:
      adj: (M, M) adjacency (nonzero = edge).
      labels: M sortable labels, all ints or all strings.

    Returns:
      Bytes equal for two graphs iff some node bijection maps one onto the
      other, preserving edges and labels.
    """
    edges = np.asarray(adj) != 0
    distinct = sorted(set(labels))
    rank = {label: r for r, label in enumerate(distinct)}
    colours = [rank[label] for label in labels]
    encoding = _smallest_encoding(edges, colours)
    # Cells are ordered by label rank, so every leaf lists the labels sorted.
    header = repr((len(labels), sorted(labels))).encode()
    return header + b"|" + encoding


def _single_numpy(arch: Arch) -> tuple[np.ndarray, np.ndarray]:
    adj = np.asarray(arch.adj)
    ops = np.asarray(arch.ops)
    if ops.ndim != 1:
        raise ArchError(f"expected one architecture; got a batch of shape {ops.shape[:-1]} "
                        "(hash each member of unstack(population))")
    return adj, ops


def _pruned_form(arch: Arch, op_names: Sequence[str] | None) -> bytes:
    adj, ops = _single_numpy(arch)
    pruned = prune_numpy(adj, ops)
    if pruned is None:
        raise ArchError("the output is not reachable from the input; such an architecture "
                        "has no canonical form")
    adj, ops = pruned
    if op_names is None:
        labels = [int(op) for op in ops]
    else:
        labels = []
        for op in ops.tolist():
            if op in _RESERVED_NAMES:
                labels.append(_RESERVED_NAMES[op])
            elif 0 <= op < len(op_names):
                labels.append(str(op_names[op]))
            else:
                raise ArchError(f"op id {op} is out of range 0..{len(op_names) - 1} "
                                f"for op names {tuple(op_names)}")
    return canonical_form(adj, labels)


def canonical_hash(arch: Arch, op_names: Sequence[str] | None = None) -> str:
    """MD5 hex digest of the exact canonical form of the pruned architecture.

    Dead nodes and padding are deleted first, so two architectures collide iff
    their pruned graphs are isomorphic with equal labels (input and output stay
    distinguished by their reserved op ids).

    Args:
      arch: one architecture, (N, N) adj and (N,) ops.
      op_names: if given, nodes are labelled by these names instead of op ids,
        so hashes agree across spaces that number the same ops differently.

    Raises:
      ArchError: for a batch, or when the output is not reachable from the input.
    """
    return hashlib.md5(_pruned_form(arch, op_names)).hexdigest()


def is_isomorphic(a: Arch, b: Arch) -> bool:
    """Whether the pruned graphs of two architectures are isomorphic with equal op ids.

    Raises:
      ArchError: if either output is unreachable from its input.
    """
    return _pruned_form(a, None) == _pruned_form(b, None)
