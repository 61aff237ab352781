"""NAS-Bench-Graph architectures in jaxnas's node-op form, and their table keys.

NAS-Bench-Graph (Qin et al. 2022) searches GNNs built from 4 op nodes. Each op
node reads one earlier node, given by ``link``: ``link[i] == 0`` is the input,
``link[i] == k`` the output of op node k-1 (so ``link[i] <= i``: 24 link
patterns). The output aggregates every op node no other node reads. jaxnas
stores this as a 6-node DAG: node 0 the input, nodes 1..4 the ops, node 5 the
output, fed by the op nodes without successors.

The benchmark's table is keyed by an integer: the link pattern and ops of a
canonical representative, base 10 (9 ops + 1), whatever dataset. ``nbg_key``
computes it with the package's rules (its ``Arch.valid_hash``): relabel the 15
non-canonical link patterns onto 9, move skip ops out of chains, sort ops of
interchangeable nodes. The 24 x 9**4 - 1 encodings (all-skip excluded) have
26,206 keys.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from jaxnas.arch._encoding import INPUT, OUTPUT, Arch, ArchError

NBG_OPS = ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip")
NBG_SKIP = NBG_OPS.index("skip")
# The 9 canonical link patterns; a key's leading digit is the index in this list.
NBG_LINKS = ((0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 1), (0, 0, 1, 2), (0, 0, 1, 3),
             (0, 1, 1, 1), (0, 1, 1, 2), (0, 1, 2, 2), (0, 1, 2, 3))
# Every link pattern (link[i] <= i), in the order of ``nbg_link_index``.
NBG_ALL_LINKS = tuple(link for link in itertools.product(range(4), repeat=4)
                      if all(parent <= node for node, parent in enumerate(link)))
# The package's relabelling of the other 15 patterns: pattern -> (canonical
# pattern, new op order as indices into the old ops).
_RELABEL = {
    (0, 0, 0, 2): ((0, 0, 0, 1), (1, 0, 2, 3)), (0, 0, 0, 3): ((0, 0, 0, 1), (2, 0, 1, 3)),
    (0, 0, 1, 0): ((0, 0, 0, 1), (0, 1, 3, 2)), (0, 0, 2, 0): ((0, 0, 0, 1), (1, 0, 3, 2)),
    (0, 0, 2, 1): ((0, 0, 1, 2), (1, 0, 2, 3)), (0, 0, 2, 2): ((0, 0, 1, 1), (1, 0, 2, 3)),
    (0, 0, 2, 3): ((0, 0, 1, 3), (1, 0, 2, 3)), (0, 1, 0, 0): ((0, 0, 0, 1), (0, 2, 3, 1)),
    (0, 1, 0, 1): ((0, 0, 1, 1), (0, 2, 1, 3)), (0, 1, 0, 2): ((0, 0, 1, 3), (0, 2, 1, 3)),
    (0, 1, 0, 3): ((0, 0, 1, 2), (0, 2, 1, 3)), (0, 1, 1, 0): ((0, 0, 1, 1), (0, 3, 1, 2)),
    (0, 1, 1, 3): ((0, 1, 1, 2), (0, 2, 1, 3)), (0, 1, 2, 0): ((0, 0, 1, 3), (0, 3, 1, 2)),
    (0, 1, 2, 1): ((0, 1, 1, 2), (0, 1, 3, 2)),
}
# Op positions whose ops are interchangeable, per canonical pattern (sorted by op id).
_SYMMETRIC = {(0, 0, 0, 0): (0, 1, 2, 3), (0, 0, 0, 1): (1, 2), (0, 0, 1, 1): (2, 3),
              (0, 1, 1, 1): (1, 2, 3), (0, 1, 2, 2): (2, 3)}


def nbg_link_index(link: Sequence[int]) -> int:
    """Index of a link pattern in ``NBG_ALL_LINKS`` (mixed radix 1, 2, 3, 4)."""
    return link[1] * 12 + link[2] * 4 + link[3]


def _move_skips(link: list[int], ops: list[int]) -> tuple[list[int], list[int]]:
    """The package's ``move_skip_op``: a skip op that feeds another node, has no
    sibling, or only repeats the input is moved to the front as a leaf reading the
    input; its readers read its parent instead."""

    def only_skips_to_input(node: int) -> bool:
        while node > -1:
            if ops[node] != NBG_SKIP:
                return False
            node = link[node] - 1
        return True

    for node in range(4):
        if ops[node] != NBG_SKIP:
            continue
        read = any(parent == node + 1 for parent in link)
        sibling = any(j != node and parent == link[node] for j, parent in enumerate(link))
        if read or not sibling or only_skips_to_input(node):
            moved = []
            for parent in link[:node] + link[node + 1:]:
                if parent == node + 1:
                    moved.append(link[node] + 1)
                else:
                    moved.append(parent + 1 if parent <= node else parent)
            link = [0] + moved
            ops = [ops[node]] + ops[:node] + ops[node + 1:]
    if link == [0, 1, 2, 1]:
        link, ops = [0, 1, 1, 2], [ops[0], ops[1], ops[3], ops[2]]
    elif link == [0, 1, 1, 3]:
        link, ops = [0, 1, 1, 2], [ops[0], ops[2], ops[1], ops[3]]
    return link, ops


def nbg_key(link: Sequence[int], ops: Sequence[int]) -> int:
    """The benchmark's table key of one architecture.

    Args:
      link: 4 parents, ``link[i] <= i`` (0 is the input).
      ops: 4 op ids into ``NBG_OPS``.

    Raises:
      ArchError: for a malformed link or op, or the all-skip architecture, which
        the benchmark excludes.
    """
    link, ops = [int(p) for p in link], [int(o) for o in ops]
    if len(link) != 4 or tuple(link) not in NBG_ALL_LINKS:
        raise ArchError(f"a NAS-Bench-Graph link is 4 parents with link[i] <= i; got {link}")
    if len(ops) != 4 or not all(0 <= op < len(NBG_OPS) for op in ops):
        raise ArchError(f"NAS-Bench-Graph ops are 4 ids in 0..{len(NBG_OPS) - 1}; got {ops}")
    if all(op == NBG_SKIP for op in ops):
        raise ArchError("the all-skip architecture is not part of NAS-Bench-Graph")
    if tuple(link) in _RELABEL:
        canonical, order = _RELABEL[tuple(link)]
        link, ops = list(canonical), [ops[i] for i in order]
    link, ops = _move_skips(link, ops)
    if link == [0, 0, 1, 2]:
        if ops[0] > ops[1] or (ops[0] == ops[1] and ops[2] > ops[3]):
            ops = [ops[1], ops[0], ops[3], ops[2]]
    elif tuple(link) in _SYMMETRIC:
        positions = _SYMMETRIC[tuple(link)]
        for position, op in zip(positions, sorted(ops[p] for p in positions), strict=True):
            ops[position] = op
    key = NBG_LINKS.index(tuple(link))
    for op in ops:
        key = key * (len(NBG_OPS) + 1) + op
    return key


def nbg_to_arch(link: Sequence[int], ops: Sequence[int]) -> Arch:
    """The 6-node Arch of ``link`` and op ids ``ops`` (ids of the caller's op list)."""
    adj = np.zeros((6, 6), np.int8)
    for node, parent in enumerate(link, start=1):
        adj[parent, node] = 1
    read = set(link)
    for node in range(1, 5):
        if node not in read:
            adj[node, 5] = 1
    return Arch(adj=adj, ops=np.array([INPUT, *ops, OUTPUT], np.int32))


def nbg_from_arch(arch: Arch) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(link, op ids) of one 6-node NAS-Bench-Graph Arch; the inverse of ``nbg_to_arch``."""
    adj, ops = np.asarray(arch.adj), np.asarray(arch.ops)
    if adj.shape != (6, 6) or ops.shape != (6,):
        raise ArchError(f"a NAS-Bench-Graph architecture has 6 nodes; got ops {ops.shape}")
    link = tuple(int(np.argmax(adj[:5, node])) for node in range(1, 5))
    expected = nbg_to_arch(link, ops[1:5])
    if not (np.array_equal(adj, expected.adj) and np.array_equal(ops, expected.ops)):
        raise ArchError("not a NAS-Bench-Graph architecture: each op node reads one earlier "
                        "node and the output reads exactly the op nodes no other node reads")
    return link, tuple(int(op) for op in ops[1:5])
