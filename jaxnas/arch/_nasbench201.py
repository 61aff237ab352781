"""NAS-Bench-201 cells in jaxnas's node-op form.

NAS-Bench-201 labels the 6 edges of a 4-node cell. jaxnas stores the standard
edge -> node transformation: node 0 is the input, nodes 1..6 are the edges in
NAS-Bench-201's string order ``(1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2)``
and node 7 is the output. Edge node (j<-i) reads the sum of the edge nodes that
enter cell node i (the input when i = 0); the output sums the edges entering
cell node 3. The adjacency is therefore fixed (``NB201_ADJ``) and a cell is its
6 edge op ids.
"""

from __future__ import annotations

import numpy as np

from jaxnas.arch._encoding import INPUT, OUTPUT, Arch, ArchError

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def _edge_node_adjacency() -> np.ndarray:
    adj = np.zeros((8, 8), np.int8)
    for node, (_, source) in enumerate(NB201_EDGES, start=1):
        feeding = [k for k, (target, _) in enumerate(NB201_EDGES, start=1) if target == source]
        adj[feeding or [0], node] = 1
    for node, (target, _) in enumerate(NB201_EDGES, start=1):
        if target == 3:
            adj[node, 7] = 1
    return adj


NB201_ADJ = _edge_node_adjacency()
NB201_ADJ.setflags(write=False)


def nb201_from_str(arch_str: str) -> Arch:
    """Parses a NAS-Bench-201 string such as ``|nor_conv_3x3~0|+|skip_connect~0|none~1|+|...|``.

    Returns:
      Arch with numpy adj (8, 8) int8 (``NB201_ADJ``) and ops (8,) int32.

    Raises:
      ArchError: naming the first problem of a malformed string.
    """
    if not isinstance(arch_str, str):
        raise ArchError(f"a NAS-Bench-201 cell string is a str; got {type(arch_str).__name__}")
    cell_nodes = arch_str.split("+")
    if len(cell_nodes) != 3:
        raise ArchError(f"a NAS-Bench-201 string has 3 '+'-separated nodes; got "
                        f"{len(cell_nodes)} in {arch_str!r}")
    ops = [INPUT]
    for target, node_str in enumerate(cell_nodes, start=1):
        if len(node_str) < 2 or node_str[0] != "|" or node_str[-1] != "|":
            raise ArchError(f"node {target} of a NAS-Bench-201 string must look like "
                            f"'|op~0|...|'; got {node_str!r}")
        entries = node_str[1:-1].split("|")
        if len(entries) != target:
            raise ArchError(f"node {target} of a NAS-Bench-201 string needs {target} inputs; "
                            f"got {len(entries)} in {node_str!r}")
        for source, entry in enumerate(entries):
            op, sep, index = entry.partition("~")
            if not sep:
                raise ArchError(f"input {entry!r} of node {target} must be 'op~index'")
            if op not in NB201_OPS:
                raise ArchError(f"unknown NAS-Bench-201 op {op!r} at node {target}; ops are "
                                f"{', '.join(NB201_OPS)}")
            if index != str(source):
                raise ArchError(f"input {source + 1} of node {target} must come from node "
                                f"{source} ('{op}~{source}'); got {entry!r}")
            ops.append(NB201_OPS.index(op))
    ops.append(OUTPUT)
    return Arch(adj=NB201_ADJ.copy(), ops=np.array(ops, np.int32))


def _edge_ops(arch: Arch) -> list[int]:
    """The 6 edge op ids of one cell, after checking it is a NAS-Bench-201 cell."""
    adj = np.asarray(arch.adj)
    ops = np.asarray(arch.ops)
    if ops.shape != (8,):
        raise ArchError(f"a NAS-Bench-201 cell has ops of shape (8,); got {ops.shape}")
    if adj.shape != (8, 8) or not np.array_equal(adj, NB201_ADJ):
        raise ArchError("a NAS-Bench-201 cell has the fixed adjacency NB201_ADJ; this one differs")
    if ops[0] != INPUT or ops[7] != OUTPUT:
        raise ArchError(f"a NAS-Bench-201 cell has ops {INPUT} at node 0 and {OUTPUT} at node 7")
    edge_ops = ops[1:7].tolist()
    bad = [op for op in edge_ops if not 0 <= op < len(NB201_OPS)]
    if bad:
        raise ArchError(f"op id {bad[0]} is out of range 0..{len(NB201_OPS) - 1} for NAS-Bench-201")
    return edge_ops


def nb201_to_str(arch: Arch) -> str:
    """The NAS-Bench-201 string of one cell; the exact inverse of ``nb201_from_str``."""
    edge_ops = _edge_ops(arch)
    cell_nodes = []
    for target in (1, 2, 3):
        entries = [f"{NB201_OPS[op]}~{source}"
                   for op, (t, source) in zip(edge_ops, NB201_EDGES, strict=True) if t == target]
        cell_nodes.append("|" + "|".join(entries) + "|")
    return "+".join(cell_nodes)


def nb201_unique_str(arch: Arch | str) -> str:
    """NATS-Bench's unique-architecture key (``Structure.to_unique_str(consider_zero=True)``).

    Cell nodes are described bottom-up as expressions of the input "0": a
    ``none`` edge, or any edge leaving a node whose expression is exactly "#",
    contributes "#" (zero); ``skip_connect`` passes its source's expression
    through; any other op wraps it as ``(source)@op``. A node joins its sorted
    contributions with "+", and the key is node 3's expression. Equal keys mean
    the cells compute the same function; the 15,625 cells have 6,466 keys.

    Args:
      arch: one cell as an Arch, or its NAS-Bench-201 string.
    """
    if isinstance(arch, str):
        arch = nb201_from_str(arch)
    edge_ops = _edge_ops(arch)
    expressions = {0: "0"}
    for target in (1, 2, 3):
        terms = []
        for op, (t, source) in zip(edge_ops, NB201_EDGES, strict=True):
            if t != target:
                continue
            name = NB201_OPS[op]
            # Only a node that is exactly "#" counts as zero downstream; "#+#" does not.
            # NATS-Bench's rule behaves this way and its 6,466 count depends on it.
            if name == "none" or expressions[source] == "#":
                terms.append("#")
            elif name == "skip_connect":
                terms.append(expressions[source])
            else:
                terms.append(f"({expressions[source]})@{name}")
        expressions[target] = "+".join(sorted(terms))
    return expressions[3]
