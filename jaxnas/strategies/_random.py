"""Random search: uniform samples from the space (``space.sample``)."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from jaxnas.arch import Arch
from jaxnas.spaces import Space
from jaxnas.strategies._base import Strategy, check_config, initial_best, make_strategy


@flax.struct.dataclass
class RandomParams:
    """Random search has no tunable numbers."""


@flax.struct.dataclass
class RandomState:
    params: RandomParams
    best_arch: Arch  # one arch, or the (C,) Pareto archive when M > 1
    best_fitness: jax.Array  # (), or (C, M) archive fitness when M > 1
    count: jax.Array  # () int32, archs told so far


def random_search(space: Space, *, batch_size: int = 10, objectives: int = 1,
                  archive_size: int = 64, weights=None) -> Strategy:
    """Random search: every ask draws ``batch_size`` archs uniformly from ``space``.

    Args:
      space: the search space.
      batch_size: B, archs per ask.
      objectives: M; with M > 1 ``best`` is the Pareto front of everything
        told, kept in an archive of ``archive_size`` rows (NSGA-II selection).
      archive_size: C, capacity of the Pareto archive (M > 1 only).
      weights: accepted and checked so every strategy takes the same settings;
        Pareto ranking does not use them.
    """
    check_config("random", batch_size, objectives, weights)
    archive = archive_size if objectives > 1 else None

    def init(key: jax.Array, params: RandomParams) -> RandomState:
        arch, fitness = initial_best(space.sample_one(key), objectives, archive)
        return RandomState(params=params, best_arch=arch, best_fitness=fitness,
                           count=jnp.int32(0))

    def ask(key: jax.Array, state: RandomState) -> tuple[Arch, RandomState]:
        return space.sample(key, batch_size), state

    def tell(key, state: RandomState, archs: Arch, fitness: jax.Array):
        return state, {}

    return make_strategy("random", space, batch_size=batch_size, objectives=objectives,
                         init=init, ask=ask, tell=tell, default_params=RandomParams(),
                         vector_fitness=True)
