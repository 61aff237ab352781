"""NAS-Bench-101 interop: its spec pruning, its graph hash, and conversion to ``Arch``.

``nb101_prune`` and ``nb101_hash`` reproduce what NAS-Bench-101's
``ModelSpec(matrix, ops)`` and ``ModelSpec.hash_spec(available_ops)`` compute,
so a jaxnas architecture can be looked up in the published dataset. The hash
is NAS-Bench-101's iterated-MD5 colour refinement, not an exact canonical
form; NAS-Bench-101 verified it has no collisions on its own space.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from jaxnas.arch._encoding import INPUT, OUTPUT, PAD, Arch, ArchError

NB101_OPS = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")


def _as_spec(matrix, ops: Sequence) -> np.ndarray:
    """The matrix as an array, after the checks with which ModelSpec rejects a spec."""
    matrix = matrix if isinstance(matrix, np.ndarray) else np.array(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ArchError(f"a NAS-Bench-101 matrix must be square; got shape {matrix.shape}")
    if len(ops) != matrix.shape[0]:
        raise ArchError(f"a {matrix.shape[0]}-node NAS-Bench-101 matrix needs {matrix.shape[0]} "
                        f"ops; got {len(ops)}")
    below = np.argwhere(np.tril(matrix != 0))
    if len(below):
        i, j = below[0]
        raise ArchError(f"entry ({i}, {j}) of a NAS-Bench-101 matrix is nonzero; the matrix "
                        "must be zero on and below the diagonal")
    return matrix


def _live(matrix: np.ndarray) -> np.ndarray | None:
    """Nodes reachable from the input and reaching the output; None if there are none."""
    n = matrix.shape[0]
    if n < 2:
        return None
    edges = matrix != 0
    forward = np.zeros(n, bool)
    forward[0] = True
    for j in range(1, n):
        forward[j] = (forward[:j] & edges[:j, j]).any()
    backward = np.zeros(n, bool)
    backward[n - 1] = True
    for i in range(n - 2, -1, -1):
        backward[i] = (backward[i + 1:] & edges[i, i + 1:]).any()
    live = forward & backward
    return live if live[0] else None


def nb101_prune(matrix, ops: Sequence) -> tuple[np.ndarray, list] | None:
    """NAS-Bench-101's ``ModelSpec`` pruning of a spec of any size.

    Args:
      matrix: (V, V) nested list or array, zero on and below the diagonal.
      ops: V op names (the first and last are kept but never read).

    Returns:
      (matrix (M, M), ops list of M) with every node off all input -> output
      paths deleted (the matrix keeps its dtype and values), or None where
      ModelSpec marks the spec invalid: no input -> output path, or V < 2.

    Raises:
      ArchError: where ModelSpec raises (non-square matrix, ops of the wrong
        length, an entry on or below the diagonal).
    """
    matrix = _as_spec(matrix, ops)
    live = _live(matrix)
    if live is None:
        return None
    keep = np.flatnonzero(live)
    return matrix[np.ix_(keep, keep)], [ops[i] for i in keep]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def _fingerprint(matrix: np.ndarray, labelling: list[int]) -> str:
    """NAS-Bench-101's ``hash_module``: iterated MD5 colour refinement of a labelled DAG.

    Each node starts from the MD5 of the text of (out-degree, in-degree, label);
    then, once per node, it becomes the MD5 of its sorted in-neighbour hashes,
    '|', its sorted out-neighbour hashes, '|', its own hash. The result is the MD5
    of the text of the sorted final hashes.
    """
    n = matrix.shape[0]
    # Degrees go through tolist() so their text is exactly NAS-Bench-101's, whatever
    # the matrix dtype (int, bool or float entries).
    out_degree = np.sum(matrix, axis=1).tolist()
    in_degree = np.sum(matrix, axis=0).tolist()
    node_hashes = [_md5(str(triple)) for triple in zip(out_degree, in_degree, labelling,
                                                       strict=True)]
    edges = matrix != 0
    preds = [np.flatnonzero(edges[:, v]) for v in range(n)]
    succs = [np.flatnonzero(edges[v]) for v in range(n)]
    for _ in range(n):
        node_hashes = [
            _md5("".join(sorted(node_hashes[u] for u in preds[v])) + "|"
                 + "".join(sorted(node_hashes[w] for w in succs[v])) + "|" + node_hashes[v])
            for v in range(n)
        ]
    return _md5(str(sorted(node_hashes)))


def nb101_hash(matrix, ops: Sequence, canonical_ops: Sequence[str] = NB101_OPS) -> str | None:
    """NAS-Bench-101's ``ModelSpec(matrix, ops).hash_spec(canonical_ops)``.

    Args:
      matrix: (V, V) nested list or array, zero on and below the diagonal.
      ops: V op names, e.g. ``['input', 'conv3x3-bn-relu', ..., 'output']``.
      canonical_ops: the dataset's op order; label i is ``canonical_ops[i]``.

    Returns:
      The 32-character hex hash used as the dataset key, or None for an invalid
      spec (no input -> output path).

    Raises:
      ArchError: where ModelSpec or hash_spec raises, including an op of a
        surviving inner node missing from ``canonical_ops``.
    """
    pruned = nb101_prune(matrix, ops)
    if pruned is None:
        return None
    matrix, ops = pruned
    labelling = [-1]
    for op in ops[1:-1]:
        if op not in canonical_ops:
            raise ArchError(f"unknown NAS-Bench-101 op {op!r}; ops are {', '.join(canonical_ops)}")
        labelling.append(list(canonical_ops).index(op))
    labelling.append(-2)
    return _fingerprint(matrix, labelling)


def nb101_to_arch(matrix, ops: Sequence[str], max_nodes: int = 7) -> Arch:
    """A NAS-Bench-101 spec as a padded ``Arch`` of ``max_nodes`` nodes.

    Inner op ids follow ``NB101_OPS``. A spec of V < max_nodes nodes keeps its
    V-1 first nodes in place, then padding, with the output last. The spec is
    not pruned: dead nodes stay compute nodes (``jaxnas.arch.prune`` removes them).

    Args:
      matrix: (V, V) 0/1 nested list or array, strictly upper triangular.
      ops: V names, ``'input'``, then names from ``NB101_OPS``, then ``'output'``.
      max_nodes: N of the result.

    Returns:
      Arch with numpy adj (N, N) int8 and ops (N,) int32.
    """
    matrix = _as_spec(matrix, ops)
    n = matrix.shape[0]
    if not 2 <= n <= max_nodes:
        raise ArchError(f"a spec of {n} nodes does not fit {max_nodes} padded nodes "
                        "(need 2 <= nodes <= max_nodes)")
    if not np.isin(matrix, (0, 1)).all():
        raise ArchError("NAS-Bench-101 matrix entries must be 0 or 1")
    if ops[0] != "input" or ops[-1] != "output":
        raise ArchError(f"a spec's ops must start with 'input' and end with 'output'; got "
                        f"{ops[0]!r} ... {ops[-1]!r}")
    positions = np.r_[np.arange(n - 1), max_nodes - 1]
    adj = np.zeros((max_nodes, max_nodes), np.int8)
    adj[np.ix_(positions, positions)] = matrix
    op_ids = np.full(max_nodes, PAD, np.int32)
    op_ids[0], op_ids[-1] = INPUT, OUTPUT
    for node, op in enumerate(ops[1:-1], start=1):
        if op not in NB101_OPS:
            raise ArchError(f"unknown NAS-Bench-101 op {op!r} at node {node}; ops are "
                            f"{', '.join(NB101_OPS)}")
        op_ids[node] = NB101_OPS.index(op)
    return Arch(adj=adj, ops=op_ids)


def nb101_from_arch(arch: Arch) -> tuple[np.ndarray, list[str]]:
    """The NAS-Bench-101 spec of one ``Arch``: padding nodes dropped, nothing else.

    Returns:
      (matrix (V, V) int8, ops list of V names) for ``ModelSpec(matrix, ops)``.
    """
    adj = np.asarray(arch.adj)
    ops = np.asarray(arch.ops)
    if ops.ndim != 1:
        raise ArchError(f"expected one architecture; got a batch of shape {ops.shape[:-1]}")
    real = np.flatnonzero(ops != PAD)
    padding = np.flatnonzero(ops == PAD)
    if adj[padding].any() or adj[:, padding].any():
        raise ArchError("a padding node has edges; padding nodes must be isolated")
    names = []
    for node in real:
        op = int(ops[node])
        if op == INPUT or op == OUTPUT:
            names.append("input" if op == INPUT else "output")
        elif 0 <= op < len(NB101_OPS):
            names.append(NB101_OPS[op])
        else:
            raise ArchError(f"op id {op} at node {node} is not a NAS-Bench-101 op (0..2)")
    return adj[np.ix_(real, real)].astype(np.int8), names
