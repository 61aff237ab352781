"""Compaction: an architecture as the few node slots it really computes.

The padded interpreter runs every node slot of the space, so a random dense-cell
architecture, which uses about a third of its slots, pays for all of them. Most
slots cost nothing in the architecture's own semantics:

* a **skip** node passes on the sum of its inputs: its inputs are wired straight to
  its successors, with integer multiplicities, so every sum is unchanged (a node fed
  by x directly and through a skip of x receives 2x, as before);
* a **zero**, dead or padding node outputs zeros: it and its out-edges go;
* every other live node (a matmul, a convolution or a pooling) keeps a slot, in its
  original order, so the slots stay topologically sorted.

``compact(layout, arch, size)`` returns the architecture as ``size`` slots (slot 0 the
cell input, slot ``size - 1`` the output, empty slots in between) and the original
node behind each slot, whose parameters that slot uses. ``Model.apply`` runs a
``Compact`` like an ``Arch``: the same function up to float summation order, at the
cost of ``size - 2`` node slots instead of ``N - 2``. A node whose inputs were all zero
nodes keeps its slot and computes its op on zeros, as in the padded program (which
is why liveness comes from the original graph, not from the compacted one).

Everything here is pure and jittable; ``size`` is static.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.arch import Arch, live_nodes
from jaxnas.nn._layout import Layout


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Compact:
    """An architecture folded to the slots it computes (see the module docstring).

    Attributes:
      adj: (K, K) float32 edge multiplicities, ``adj[j, i]`` copies of slot j's
        output summed into slot i.
      ops: (K,) int32 op id of each inner slot; -1 for empty slots and for slot 0 (the
        cell input) and slot K-1 (the output).
      node: (K,) int32 the original node behind each slot (its parameters); 0 for an
        empty slot.
    """

    adj: jax.Array
    ops: jax.Array
    node: jax.Array


def _kinds(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(K,) bool tables over op ids: ops that keep a slot, and skip ops."""
    computes = np.array([s.kind in ("linear", "pool") for s in layout.specs])
    skips = np.array([s.kind == "skip" for s in layout.specs])
    return computes, skips


def compute_nodes(layout: Layout, arch: Arch) -> jax.Array:
    """Inner slots ``arch`` needs after compaction: its live matmul, conv and pool nodes."""
    computes, _ = _kinds(layout)
    ops = arch.ops[1:-1]
    live = live_nodes(arch.adj != 0)[1:-1]
    return jnp.sum(live & (ops >= 0) & jnp.asarray(computes)[jnp.maximum(ops, 0)])


def compact(layout: Layout, arch: Arch, size: int) -> Compact:
    """``arch`` as ``size`` slots; needs ``size >= compute_nodes(layout, arch) + 2``
    (an architecture with more compute nodes loses the last ones: check first)."""
    n = layout.num_nodes
    computes, skips = _kinds(layout)
    live = live_nodes(arch.adj != 0)
    real = live & (arch.ops >= 0)
    op = jnp.maximum(arch.ops, 0)
    keep = (real & jnp.asarray(computes)[op]).at[0].set(True).at[n - 1].set(True)
    skip = real & jnp.asarray(skips)[op]
    # The interpreter's edges: only live nodes send (dead nodes output zeros).
    weights = ((arch.adj != 0) & live[:, None]).astype(jnp.float32)
    for i in range(1, n - 1):
        # In node order, so a skip's inputs are already compacted when it is folded.
        through = jnp.outer(weights[:, i], weights[i, :])
        weights = weights + jnp.where(skip[i], through, 0.0)
        cut = weights.at[i, :].set(0.0).at[:, i].set(0.0)
        weights = jnp.where(keep[i], weights, cut)
    slot = jnp.where(keep, jnp.cumsum(keep) - 1, size).at[n - 1].set(size - 1)
    onehot = (slot[:, None] == jnp.arange(size)[None, :]).astype(jnp.float32)  # (N, size)
    occupied = onehot.sum(0) > 0
    node = jnp.argmax(onehot, axis=0).astype(jnp.int32)
    inner = occupied & (jnp.arange(size) > 0) & (jnp.arange(size) < size - 1)
    return Compact(adj=onehot.T @ weights @ onehot,
                   ops=jnp.where(inner, arch.ops[node], -1).astype(jnp.int32),
                   node=jnp.where(occupied, node, 0))
