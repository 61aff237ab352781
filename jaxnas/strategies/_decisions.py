"""How a space's encoding factorises into the categorical decisions of a controller.

* ``nasbench201``: one op per edge node (6 decisions over 5 ops);
* chain spaces (``mlp``): the depth, then one op per layer (ops of layers
  beyond the depth are not used);
* ``nasbench_graph``: each op node's parent (2, 3, 4 choices for nodes 2-4),
  then one op per node; the all-skip draw is invalid;
* DAG spaces (``dag``, ``nasbench101``): every upper-triangular edge (on/off)
  and every inner node's op; a draw is pruned (nodes off every input -> output
  path lose their op decision) and may be invalid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.arch import INPUT, OUTPUT, PAD, Arch, prune
from jaxnas.spaces import Space, chain_arch, nasbench_graph_arch


class Decisions(NamedTuple):
    """How a space's encoding factorises into categorical decisions.

    Attributes:
      mask: (D, C) bool, the choices each of D decisions may take.
      decode: ``decode(choices (D,) int32) -> (arch, used (D,) bool)``; ``used``
        marks the decisions the arch depends on.
      checked: whether a decoded arch may be invalid and must be redrawn.
      encode: ``encode(arch) -> (choices, used)``, the decisions of one valid arch
        of the space (``decode`` of them gives the arch, pruned in DAG spaces).
    """

    mask: np.ndarray
    decode: Callable[[jax.Array], tuple[Arch, jax.Array]]
    checked: bool
    encode: Callable[[Arch], tuple[jax.Array, jax.Array]]


def decisions(space: Space) -> Decisions:
    """The controller's decisions for a space; ValueError for unsupported spaces."""
    build = {"fixed": _cell, "chain": _chain, "link": _graph, "dag": _dag}.get(space.topology)
    if build is None:
        raise ValueError(f"reinforce has no controller for space {space.name!r} "
                         f"({type(space).__name__}); it supports nasbench201, chain and DAG "
                         "spaces")
    return build(space)


def _cell(space: Space) -> Decisions:
    """One op per inner node of a fixed cell."""
    n = space.max_nodes
    fixed = jnp.asarray(space.fixed_adj())

    def decode(choices):
        ops = jnp.concatenate([jnp.array([INPUT]), choices, jnp.array([OUTPUT])])
        return Arch(adj=fixed, ops=ops.astype(jnp.int32)), jnp.ones(choices.shape, bool)

    def encode(arch):
        return arch.ops[1:-1].astype(jnp.int32), jnp.ones(n - 2, bool)

    return Decisions(np.ones((n - 2, space.num_ops), bool), decode, False, encode)


def _chain(space: Space) -> Decisions:
    """The depth, then one op per layer."""
    k, layers, shallowest = space.num_ops, space.max_layers, space.min_layers
    depths = layers - shallowest + 1
    mask = np.zeros((1 + layers, max(k, depths)), bool)
    mask[0, :depths] = True
    mask[1:, :k] = True

    def decode(choices):
        depth = shallowest + choices[0]
        active = jnp.arange(layers) < depth
        arch = chain_arch(jnp.where(active, choices[1:], PAD).astype(jnp.int32))
        return arch, jnp.concatenate([jnp.array([True]), active])

    def encode(arch):
        hidden = arch.ops[1:-1]
        active = hidden != PAD
        depth = jnp.sum(active) - shallowest
        choices = jnp.concatenate([depth[None], jnp.where(active, hidden, 0)])
        return choices.astype(jnp.int32), jnp.concatenate([jnp.array([True]), active])

    return Decisions(mask, decode, False, encode)


def _graph(space: Space) -> Decisions:
    """NAS-Bench-Graph: the parent of each op node 2-4, then the 4 ops."""
    mask = np.zeros((7, max(space.num_ops, 4)), bool)
    for node in range(3):
        mask[node, :node + 2] = True
    mask[3:, :space.num_ops] = True

    def decode(choices):
        link = jnp.concatenate([jnp.zeros(1, choices.dtype), choices[:3]])
        return nasbench_graph_arch(link, choices[3:]), jnp.ones(choices.shape, bool)

    def encode(arch):
        parents = jnp.argmax(arch.adj[:5, 2:5], axis=0)  # of op nodes 2-4
        choices = jnp.concatenate([parents, arch.ops[1:5]]).astype(jnp.int32)
        return choices, jnp.ones(7, bool)

    return Decisions(mask, decode, True, encode)


def _dag(space: Space) -> Decisions:
    """Every upper-triangular edge on or off, then every inner node's op."""
    n = space.max_nodes
    rows, cols = np.triu_indices(n, 1)
    edges = len(rows)
    mask = np.zeros((edges + n - 2, max(space.num_ops, 2)), bool)
    mask[:edges, :2] = True
    mask[edges:, :space.num_ops] = True

    def decode(choices):
        adj = jnp.zeros((n, n), jnp.int8).at[rows, cols].set(choices[:edges].astype(jnp.int8))
        ops = jnp.concatenate([jnp.array([INPUT]), choices[edges:], jnp.array([OUTPUT])])
        arch = prune(Arch(adj=adj, ops=ops.astype(jnp.int32)))
        live = arch.ops[1:-1] != PAD
        return arch, jnp.concatenate([jnp.ones(edges, bool), live])

    def encode(arch):
        inner = arch.ops[1:-1]
        choices = jnp.concatenate([arch.adj[rows, cols].astype(jnp.int32),
                                   jnp.where(inner >= 0, inner, 0)])
        live = prune(arch).ops[1:-1] != PAD
        return choices.astype(jnp.int32), jnp.concatenate([jnp.ones(edges, bool), live])

    return Decisions(mask, decode, True, encode)
