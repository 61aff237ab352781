"""A cheap synthetic objective with a known optimum, for testing and benchmarking strategies.

The value of an architecture is a fixed random score per (node, op), plus a
fixed random interaction per pair of nodes and their two ops, plus a fixed
random score per edge, all drawn once from a seed. In ``nasbench201`` nodes are
the cell's edges, so this is a score per (edge, op) with pairwise
interactions between edges' ops. It is jittable, minimised, and small spaces
can be enumerated to find its exact optimum (``optimum``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.arch import Arch
from jaxnas.spaces import Space


class Synthetic(NamedTuple):
    """Tables of the synthetic objective for a space of N nodes and K ops.

    Attributes:
      unary: (N, K) score of each op at each node.
      pairwise: (N, N, K, K) interaction of node i's op with node j's op, i < j.
      edge: (N, N) score of each edge.
    """

    unary: jax.Array
    pairwise: jax.Array
    edge: jax.Array

    def value(self, arch: Arch) -> jax.Array:
        """Scalar value of one architecture (jittable); padding nodes add nothing."""
        n, k = self.unary.shape
        compute = arch.ops >= 0
        op = jnp.clip(arch.ops, 0, k - 1)
        index = jnp.arange(n)
        unary = jnp.sum(jnp.where(compute, self.unary[index, op], 0.0))
        pair = self.pairwise[index[:, None], index[None, :], op[:, None], op[None, :]]
        both = compute[:, None] & compute[None, :] & (index[:, None] < index[None, :])
        return (unary + jnp.sum(jnp.where(both, pair, 0.0))
                + jnp.sum(self.edge * arch.adj.astype(jnp.float32)))

    def __call__(self, archs: Arch) -> jax.Array:
        """(P,) values of a population."""
        return jax.vmap(self.value)(archs)

    def evaluate(self, key: jax.Array, archs: Arch) -> jax.Array:
        """``evaluate(key, archs) -> (P,)`` for ``run_fused``; exact, the key is unused."""
        del key
        return self(archs)

    def noisy(self, noise: float, full_steps: int) -> Callable[..., jax.Array]:
        """A multi-fidelity ``evaluate(key, archs, steps) -> (P,)``.

        Gaussian noise of standard deviation ``noise * sqrt(full_steps / steps)``
        is added: more training steps, a more faithful fitness.
        """

        def evaluate(key: jax.Array, archs: Arch, steps: jax.Array) -> jax.Array:
            values = self(archs)
            scale = noise * jnp.sqrt(full_steps / jnp.maximum(steps, 1).astype(jnp.float32))
            return values + scale * jax.random.normal(key, values.shape)

        return evaluate


def synthetic(space: Space, seed: int = 0, interaction: float = 0.5,
              edge_scale: float = 0.1) -> Synthetic:
    """Draws the tables for ``space`` from ``seed`` (deterministic numpy generator).

    Args:
      space: gives N (``max_nodes``) and K (``num_ops``).
      seed: the tables' seed.
      interaction: standard deviation of the pairwise terms (unary terms have 1).
      edge_scale: standard deviation of the per-edge terms.
    """
    rng = np.random.default_rng(seed)
    n, k = space.max_nodes, space.num_ops
    unary = rng.normal(size=(n, k))
    pairwise = interaction * rng.normal(size=(n, n, k, k))
    edge = np.triu(edge_scale * rng.normal(size=(n, n)), 1)
    return Synthetic(jnp.asarray(unary, jnp.float32), jnp.asarray(pairwise, jnp.float32),
                     jnp.asarray(edge, jnp.float32))


def optimum(objective: Synthetic, space: Space) -> tuple[Arch, float]:
    """The exact minimiser over ``space.enumerate()`` (host) and its value."""
    archs = space.enumerate()
    values = np.asarray(jax.jit(objective.__call__)(archs))
    index = int(np.argmin(values))
    return Arch(adj=np.asarray(archs.adj)[index], ops=np.asarray(archs.ops)[index]), float(
        values[index])
