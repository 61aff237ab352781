"""Pareto ranking for minimised vector fitness (NSGA-II, Deb et al. 2002), jittable.

Every function takes fitness (P, M): P candidates, M objectives, all minimised;
NaN counts as +inf.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def clean(fitness: jax.Array) -> jax.Array:
    """NaN -> +inf, so a failed evaluation is dominated by every finite one."""
    return jnp.where(jnp.isnan(fitness), jnp.inf, fitness)


def dominance(fitness: jax.Array) -> jax.Array:
    """(P, P) bool: ``[i, j]`` is True when candidate i dominates candidate j.

    i dominates j if it is no worse in every objective and better in one.
    """
    f = clean(fitness)
    no_worse = jnp.all(f[:, None, :] <= f[None, :, :], -1)
    better = jnp.any(f[:, None, :] < f[None, :, :], -1)
    return no_worse & better


def non_dominated_rank(fitness: jax.Array) -> jax.Array:
    """(P,) int32 front index: 0 for the Pareto front, 1 for the front without it, ...

    Fronts are peeled one at a time; a ``while_loop`` stops after the last one.
    """
    dominates = dominance(fitness)
    count = fitness.shape[0]

    def cond(carry):
        remaining, _, _ = carry
        return remaining.any()

    def body(carry):
        remaining, rank, level = carry
        dominated = jnp.any(dominates & remaining[:, None], 0)
        front = remaining & ~dominated
        return remaining & ~front, jnp.where(front, level, rank), level + 1

    start = (jnp.ones(count, bool), jnp.full(count, count, jnp.int32), jnp.int32(0))
    _, rank, _ = jax.lax.while_loop(cond, body, start)
    return rank


def crowding_distance(fitness: jax.Array, rank: jax.Array) -> jax.Array:
    """(P,) crowding distance of every candidate within its own front.

    Per objective, a candidate scores the gap between its two neighbours in its
    front, divided by the front's range; the ends of a front score +inf; the sum
    over objectives is returned. Non-finite values are placed just above the
    largest finite value of their objective, so they stay ordered last.
    """
    f = clean(fitness)
    finite = jnp.isfinite(f)
    ceiling = jnp.max(jnp.where(finite, f, -jnp.inf), 0)
    ceiling = jnp.where(jnp.isfinite(ceiling), ceiling + 1.0, 1.0)
    f = jnp.where(finite, f, ceiling[None, :])
    count = f.shape[0]

    def one_objective(values):
        order = jnp.lexsort((values, rank))
        v, r = values[order], rank[order]
        low = jax.ops.segment_min(values, rank, num_segments=count + 1)[r]
        high = jax.ops.segment_max(values, rank, num_segments=count + 1)[r]
        span = high - low
        prev_v = jnp.concatenate([v[:1], v[:-1]])
        next_v = jnp.concatenate([v[1:], v[-1:]])
        first = jnp.concatenate([jnp.array([True]), r[1:] != r[:-1]])
        last = jnp.concatenate([r[1:] != r[:-1], jnp.array([True])])
        gap = jnp.where(span > 0, (next_v - prev_v) / jnp.where(span > 0, span, 1.0), 0.0)
        distance = jnp.where(first | last, jnp.inf, gap)
        return jnp.zeros(count, f.dtype).at[order].set(distance)

    return jnp.sum(jax.vmap(one_objective, in_axes=1, out_axes=1)(f), 1)


def sort_key(fitness: jax.Array) -> jax.Array:
    """(P,) float key, ascending = better: rank first, then larger crowding distance."""
    rank = non_dominated_rank(fitness)
    crowding = crowding_distance(fitness, rank)
    return 2.0 * rank + 1.0 / (1.0 + crowding)


def select(fitness: jax.Array, k: int) -> jax.Array:
    """(k,) indices of the k best candidates by (rank, -crowding), best first."""
    return jnp.argsort(sort_key(fitness), stable=True)[:k]


def front_mask(fitness: jax.Array) -> jax.Array:
    """(P,) bool: the non-dominated candidates."""
    return ~jnp.any(dominance(fitness), 0)
