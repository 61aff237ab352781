"""The padded architecture encoding shared by every search space.

An architecture is a DAG of at most N nodes in topological order. Node 0 is the
input, node N-1 the output; the nodes in between are either real compute nodes
(op id in ``0..num_ops-1``) or padding (op id ``PAD``, no edges at all). All
architectures of a space therefore have the same shapes and can be stacked,
vmapped and jitted together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

INPUT = -1  # op id of node 0
OUTPUT = -2  # op id of node N-1
PAD = -3  # op id of an isolated padding node


class ArchError(ValueError):
    """An architecture that breaks the encoding's rules or its space's limits."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Arch:
    """One architecture, or a population of them with leading batch axes.

    Attributes:
      adj: (..., N, N) int8 adjacency; ``adj[i, j] == 1`` is an edge i -> j, i < j.
      ops: (..., N) int32 op ids; ``INPUT`` at node 0, ``OUTPUT`` at node N-1,
        ``PAD`` on padding nodes, ``0..num_ops-1`` on compute nodes.
    """

    adj: jax.Array
    ops: jax.Array

    @property
    def num_nodes(self) -> int:
        return self.ops.shape[-1]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.ops.shape[:-1])

    def __len__(self) -> int:
        if not self.batch_shape:
            raise TypeError("len() of a single Arch; only populations have a length")
        return self.batch_shape[0]

    def __getitem__(self, index) -> Arch:
        if not self.batch_shape:
            raise TypeError("cannot index a single Arch; only populations")
        return Arch(adj=self.adj[index], ops=self.ops[index])

    def to_numpy(self) -> Arch:
        return Arch(adj=np.asarray(self.adj, np.int8), ops=np.asarray(self.ops, np.int32))


def make(adj, ops) -> Arch:
    """Builds an Arch (single or batched) from array-likes, casting the dtypes."""
    return Arch(adj=jnp.asarray(adj, jnp.int8), ops=jnp.asarray(ops, jnp.int32))


def stack(archs: Sequence[Arch]) -> Arch:
    """Stacks single architectures into a population with leading axis P."""
    if not archs:
        raise ArchError("cannot stack an empty list of architectures")
    return Arch(
        adj=np.stack([np.asarray(a.adj, np.int8) for a in archs]),
        ops=np.stack([np.asarray(a.ops, np.int32) for a in archs]),
    )


def unstack(population: Arch) -> list[Arch]:
    """Splits a population with one leading axis into numpy single architectures."""
    adj = np.asarray(population.adj, np.int8)
    ops = np.asarray(population.ops, np.int32)
    return [Arch(adj=adj[i], ops=ops[i]) for i in range(ops.shape[0])]


def validate(arch: Arch, *, num_ops: int, max_nodes: int | None = None,
             max_edges: int | None = None) -> None:
    """Checks one architecture on the host; raises ArchError naming the first problem.

    Args:
      arch: a single architecture (no batch axis).
      num_ops: number of compute ops of the space; valid ids are 0..num_ops-1.
      max_nodes: N of the space, if the shape must match it.
      max_edges: edge limit of the space, if any.
    """
    adj = np.asarray(arch.adj)
    ops = np.asarray(arch.ops)
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise ArchError(f"adjacency must be a square (N, N) matrix; got shape {adj.shape}")
    n = adj.shape[0]
    if ops.shape != (n,):
        raise ArchError(f"ops must have shape ({n},) to match the adjacency; got {ops.shape}")
    if n < 2:
        raise ArchError(f"an architecture needs at least 2 nodes (input, output); got {n}")
    if max_nodes is not None and n != max_nodes:
        raise ArchError(f"this space uses {max_nodes} padded nodes; got {n}")
    if not np.isin(adj, (0, 1)).all():
        found = sorted(set(adj.ravel().tolist()) - {0, 1})[:3]
        raise ArchError(f"adjacency entries must be 0 or 1; found {found}")
    lower = np.argwhere(np.tril(adj) != 0)
    if len(lower):
        i, j = lower[0]
        raise ArchError(f"edge {i}->{j} is on or below the diagonal; adjacency must be "
                        "strictly upper triangular (nodes in topological order)")
    if ops[0] != INPUT:
        raise ArchError(f"node 0 must be the input (op id {INPUT}); got op id {ops[0]}")
    if ops[-1] != OUTPUT:
        raise ArchError(f"node {n - 1} must be the output (op id {OUTPUT}); got op id {ops[-1]}")
    inner = ops[1:-1]
    misplaced = np.flatnonzero((inner == INPUT) | (inner == OUTPUT))
    if len(misplaced):
        raise ArchError(f"node {misplaced[0] + 1} carries the input/output op id; only nodes 0 "
                        f"and {n - 1} may")
    bad = np.flatnonzero((inner != PAD) & ((inner < 0) | (inner >= num_ops)))
    if len(bad):
        node = bad[0] + 1
        raise ArchError(f"op id {ops[node]} at node {node} is out of range 0..{num_ops - 1}")
    pad = np.flatnonzero(ops == PAD)
    for node in pad:
        if adj[node].any() or adj[:, node].any():
            raise ArchError(f"padding node {node} has edges; padding nodes must be isolated")
    num_edges = int(adj.sum())
    if max_edges is not None and num_edges > max_edges:
        raise ArchError(f"{num_edges} edges exceed the space's limit of {max_edges}")
    if not reaches_output(adj):
        raise ArchError("the output is not reachable from the input")


def reaches_output(adj: np.ndarray) -> bool:
    """Host check that some path leads from node 0 to node N-1."""
    reach = np.zeros(adj.shape[0], bool)
    reach[0] = True
    for j in range(1, adj.shape[0]):
        reach[j] = bool((reach[:j] & (adj[:j, j] != 0)).any())
    return bool(reach[-1])


def _closure(adj: jax.Array, start: jax.Array) -> jax.Array:
    """Nodes reachable from the boolean vector ``start`` along ``adj`` (jittable)."""
    a = adj.astype(jnp.int32)

    def step(_, reach):
        return reach | ((reach.astype(jnp.int32) @ a) > 0)

    return jax.lax.fori_loop(0, adj.shape[-1] - 1, step, start)


def live_nodes(adj: jax.Array) -> jax.Array:
    """(N,) bool: nodes on some input -> output path (jittable, one architecture)."""
    n = adj.shape[-1]
    index = jnp.arange(n)
    from_input = _closure(adj, index == 0)
    to_output = _closure(adj.T, index == n - 1)
    return from_input & to_output & from_input[n - 1]


def prune(arch: Arch) -> Arch:
    """Turns every node on no input -> output path into padding (jittable, one arch).

    This is NAS-Bench-101's pruning expressed in place: dead nodes keep their
    position but lose their edges and get the ``PAD`` op. If the output is not
    reachable at all the architecture is returned unchanged (and is invalid).
    """
    n = arch.num_nodes
    live = live_nodes(arch.adj)
    connected = live[n - 1]
    keep = jnp.where(connected, live, jnp.ones_like(live))
    adj = arch.adj * (keep[:, None] & keep[None, :]).astype(arch.adj.dtype)
    ops = jnp.where(keep, arch.ops, PAD)
    return Arch(adj=adj, ops=ops)


def is_valid(arch: Arch, num_ops: int, max_edges: int | None = None) -> jax.Array:
    """Jittable validity of one architecture (a scalar bool); vmap for populations."""
    adj = arch.adj.astype(jnp.int32)
    ops = arch.ops
    n = arch.num_nodes
    index = jnp.arange(n)
    upper = jnp.all(jnp.where(index[:, None] < index[None, :], True, adj == 0))
    binary = jnp.all((adj == 0) | (adj == 1))
    inner = (index > 0) & (index < n - 1)
    ops_ok = jnp.all(jnp.where(inner, (ops == PAD) | ((ops >= 0) & (ops < num_ops)), True))
    ends = (ops[0] == INPUT) & (ops[n - 1] == OUTPUT)
    degree = adj.sum(0) + adj.sum(1)
    pad_isolated = jnp.all(jnp.where(ops == PAD, degree == 0, True))
    edges_ok = True if max_edges is None else adj.sum() <= max_edges
    connected = _closure(arch.adj, index == 0)[n - 1]
    return upper & binary & ops_ok & ends & pad_isolated & edges_ok & connected


def num_edges(arch: Arch) -> jax.Array:
    """Number of edges, per architecture of a (possibly batched) Arch."""
    return arch.adj.astype(jnp.int32).sum((-2, -1))
