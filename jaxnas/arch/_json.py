"""A human-readable JSON form of architectures and populations.

One architecture is ``{"num_nodes": N, "nodes": ["input", "conv3x3-bn-relu", "pad",
..., "output"], "edges": [[0, 1], [1, 6], ...]}``: node i carries the name of its
op (``"input"``, ``"output"`` and ``"pad"`` are reserved), edges are listed
in row-major order, and padding stays in place so the round trip is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxnas.arch._encoding import INPUT, OUTPUT, PAD, Arch, ArchError, stack

_RESERVED = {"input": INPUT, "output": OUTPUT, "pad": PAD}


def _name_table(op_names: Sequence[str]) -> dict[str, int]:
    clash = sorted(set(op_names) & set(_RESERVED))
    if clash:
        raise ArchError(f"op name {clash[0]!r} is reserved for the JSON form")
    if len(set(op_names)) != len(op_names):
        raise ArchError(f"op names must be distinct; got {tuple(op_names)}")
    return {**_RESERVED, **{name: i for i, name in enumerate(op_names)}}


def to_json(arch: Arch, op_names: Sequence[str]) -> dict:
    """The JSON form (a dict of plain lists and strings) of one architecture."""
    ids = {i: name for name, i in _name_table(op_names).items()}
    adj = np.asarray(arch.adj)
    ops = np.asarray(arch.ops)
    if ops.ndim != 1:
        raise ArchError(f"expected one architecture; got a batch of shape {ops.shape[:-1]} "
                        "(use population_to_json)")
    nodes = []
    for node, op in enumerate(ops.tolist()):
        if op not in ids:
            raise ArchError(f"op id {op} at node {node} has no name in {tuple(op_names)}")
        nodes.append(ids[op])
    return {
        "num_nodes": len(nodes),
        "nodes": nodes,
        "edges": np.argwhere(adj != 0).tolist(),
    }


def from_json(obj: dict, op_names: Sequence[str]) -> Arch:
    """Parses the JSON form of one architecture (the exact inverse of ``to_json``).

    Checks the encoding's shape rules (names, node count, edges in range and
    pointing forward, padding isolated) but not a space's limits or connectivity;
    use ``validate`` or the space for those.

    Returns:
      Arch with numpy adj (N, N) int8 and ops (N,) int32.
    """
    table = _name_table(op_names)
    if not isinstance(obj, dict) or not {"nodes", "edges"} <= obj.keys():
        raise ArchError("an architecture's JSON form is an object with 'nodes' and 'edges'")
    nodes, edges = obj["nodes"], obj["edges"]
    if not isinstance(nodes, list) or not all(isinstance(name, str) for name in nodes):
        raise ArchError("'nodes' must be a list of op names")
    n = len(nodes)
    if obj.get("num_nodes", n) != n:
        raise ArchError(f"'num_nodes' is {obj['num_nodes']} but {n} nodes are listed")
    if n < 2:
        raise ArchError(f"an architecture needs at least 2 nodes (input, output); got {n}")
    for node, name in enumerate(nodes):
        if name not in table:
            raise ArchError(f"unknown op name {name!r} at node {node}; known: "
                            f"{', '.join(op_names)} (and input, output, pad)")
    ops = np.array([table[name] for name in nodes], np.int32)
    if ops[0] != INPUT or ops[-1] != OUTPUT:
        raise ArchError(f"the first node must be 'input' and the last 'output'; got "
                        f"{nodes[0]!r} and {nodes[-1]!r}")
    misplaced = [node for node in range(1, n - 1) if ops[node] in (INPUT, OUTPUT)]
    if misplaced:
        raise ArchError(f"node {misplaced[0]} is named {nodes[misplaced[0]]!r}; only the first "
                        "and last nodes may be")
    adj = np.zeros((n, n), np.int8)
    if not isinstance(edges, list):
        raise ArchError("'edges' must be a list of [from, to] pairs")
    for edge in edges:
        if (not isinstance(edge, list | tuple) or len(edge) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in edge)):
            raise ArchError(f"edge {edge!r} is not a [from, to] pair of node indices")
        i, j = edge
        if not (0 <= i < j < n):
            raise ArchError(f"edge {i}->{j} must satisfy 0 <= from < to < {n}")
        if adj[i, j]:
            raise ArchError(f"edge {i}->{j} is listed twice")
        adj[i, j] = 1
    for node in np.flatnonzero(ops == PAD):
        if adj[node].any() or adj[:, node].any():
            raise ArchError(f"padding node {node} has edges; padding nodes must be isolated")
    return Arch(adj=adj, ops=ops)


def population_to_json(population: Arch, op_names: Sequence[str]) -> list:
    """The JSON forms of a population with one leading axis P, as a list of P dicts."""
    adj = np.asarray(population.adj)
    ops = np.asarray(population.ops)
    if ops.ndim != 2:
        raise ArchError(f"expected a population with one leading axis; got ops of shape "
                        f"{ops.shape}")
    return [to_json(Arch(adj=adj[i], ops=ops[i]), op_names) for i in range(ops.shape[0])]


def population_from_json(obj: list, op_names: Sequence[str]) -> Arch:
    """Parses a list of JSON forms into one stacked population (numpy, leading axis P)."""
    if not isinstance(obj, list) or not obj:
        raise ArchError("a population's JSON form is a non-empty list of architectures")
    archs = []
    for index, item in enumerate(obj):
        try:
            archs.append(from_json(item, op_names))
        except ArchError as error:
            raise ArchError(f"architecture {index}: {error}") from None
    sizes = {arch.num_nodes for arch in archs}
    if len(sizes) > 1:
        first = archs[0].num_nodes
        index = next(i for i, arch in enumerate(archs) if arch.num_nodes != first)
        raise ArchError(f"architecture {index} has {archs[index].num_nodes} nodes but "
                        f"architecture 0 has {first}; a population shares one node count")
    return stack(archs)


def describe(arch: Arch, op_names: Sequence[str]) -> str:
    """A few readable lines: one per live node with its op and inputs."""
    adj, ops = np.asarray(arch.adj), np.asarray(arch.ops)
    lines = []
    for node, op in enumerate(ops.tolist()):
        if op == PAD:
            continue
        name = "input" if node == 0 else "output" if node == len(ops) - 1 else op_names[op]
        inputs = np.flatnonzero(adj[:, node]).tolist()
        source = f" <- {', '.join(map(str, inputs))}" if inputs else ""
        lines.append(f"  node {node}: {name}{source}")
    edges = int(adj.sum())
    live = int((ops >= 0).sum())
    return f"{live} compute nodes, {edges} edges\n" + "\n".join(lines)
