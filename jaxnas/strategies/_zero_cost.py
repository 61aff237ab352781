"""Training-free pre-selection: score a large random pool, train only its top archs."""

from __future__ import annotations

from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp

from jaxnas.arch import Arch
from jaxnas.spaces import Space
from jaxnas.strategies._base import Strategy, check_config, initial_fitness, make_strategy
from jaxnas.strategies._population import take, top_unique

ScoreFn = Callable[[jax.Array, Arch], jax.Array]


def top_scored(key: jax.Array, space: Space, score_fn: ScoreFn, n: int,
               pool_size: int = 1000) -> Arch:
    """The n distinct archs of highest ``score_fn`` among ``pool_size`` random samples.

    Jittable with ``space``, ``score_fn``, ``n`` and ``pool_size`` static. Use it
    to warm-start another strategy, e.g. ``seeded(evolution(...),
    top_scored(...))``.

    Args:
      key: PRNG key.
      space: the search space.
      score_fn: jittable ``score_fn(key, archs (P,)) -> (P,)`` scores, higher is
        better; NaN counts as -inf.
      n: number of archs returned.
      pool_size: number of random samples scored.

    Returns:
      (n,) population, best score first.
    """
    if n > pool_size:
        raise ValueError(f"top_scored: n ({n}) exceeds pool_size ({pool_size})")
    k_pool, k_score = jax.random.split(key)
    pool = space.sample(k_pool, pool_size)
    scores = jnp.asarray(score_fn(k_score, pool), jnp.float32)
    if scores.shape != (pool_size,):
        raise ValueError(f"score_fn must return one score per arch, shape ({pool_size},); got "
                         f"{scores.shape}")
    scores = jnp.where(jnp.isnan(scores), -jnp.inf, scores)
    return take(pool, top_unique(scores, pool, n))


@flax.struct.dataclass
class ZeroCostParams:
    weights: jax.Array  # (M,) scalarisation weights


@flax.struct.dataclass
class ZeroCostState:
    params: ZeroCostParams
    best_arch: Arch
    best_fitness: jax.Array  # () or (M,)
    count: jax.Array  # () int32


def zero_cost(space: Space, *, score_fn: ScoreFn, batch_size: int = 10, pool_size: int = 1000,
              objectives: int = 1, weights=None) -> Strategy:
    """Each ask scores a fresh random pool with ``score_fn`` and returns its top archs.

    ``score_fn`` is any jittable training-free proxy (the driver builds it from
    the proxies module); the trained fitness told back only tracks the best
    arch, so asks do not depend on it.

    Args:
      space: the search space.
      score_fn: ``score_fn(key, archs (P,)) -> (P,)``, higher is better.
      batch_size: B archs returned per ask (the top B distinct of the pool).
      pool_size: archs scored per ask, static.
      objectives: M; M > 1 fitness is scalarised with ``params.weights``.
      weights: (M,) default weights (1/M each).
    """
    weights = check_config("zero_cost", batch_size, objectives, weights)
    if not callable(score_fn):
        raise ValueError("zero_cost needs score_fn=callable(key, archs) -> scores")
    if pool_size < batch_size:
        raise ValueError(f"zero_cost: pool_size ({pool_size}) must be at least batch_size "
                         f"({batch_size})")

    def init(key: jax.Array, params: ZeroCostParams) -> ZeroCostState:
        return ZeroCostState(params=params, best_arch=space.sample_one(key),
                             best_fitness=initial_fitness(objectives), count=jnp.int32(0))

    def ask(key: jax.Array, state: ZeroCostState) -> tuple[Arch, ZeroCostState]:
        return top_scored(key, space, score_fn, batch_size, pool_size), state

    def tell(key, state: ZeroCostState, archs: Arch, fitness: jax.Array):
        return state, {}

    return make_strategy("zero_cost", space, batch_size=batch_size, objectives=objectives,
                         init=init, ask=ask, tell=tell,
                         default_params=ZeroCostParams(weights=weights))
