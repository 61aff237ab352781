"""Random search: uniform samples from the space (``space.sample``)."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from jaxnas.arch._encoding import Arch
from jaxnas.spaces import Space
from jaxnas.strategies import _base
from jaxnas.strategies._base import Info, Strategy


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
    _base.check_config("random", batch_size, objectives, weights)
    single = jnp.ones((1,), jnp.float32)
    vector = objectives > 1

    def init(key: jax.Array, params: RandomParams | None = None) -> RandomState:
        params = default_params if params is None else params
        first = space.sample_one(key)
        if vector:
            arch = _base.broadcast(first, archive_size)
            fitness = jnp.full((archive_size, objectives), jnp.inf, jnp.float32)
        else:
            arch, fitness = first, _base.initial_fitness(1)
        return RandomState(params, arch, fitness, jnp.int32(0))

    def ask(key: jax.Array, state: RandomState) -> tuple[Arch, RandomState]:
        return space.sample(key, batch_size), state

    def tell(key: jax.Array, state: RandomState, archs: Arch,
             fitness: jax.Array) -> tuple[RandomState, dict]:
        del key
        fitness = _base.check_fitness("random", fitness, batch_size, objectives)
        if vector:
            arch, best = _base.merge_front(state.best_arch, state.best_fitness, archs, fitness)
        else:
            arch, best = _base.improve(state.best_arch, state.best_fitness, archs, fitness,
                                       single)
        state = state.replace(best_arch=arch, best_fitness=best, count=state.count + batch_size)
        return state, {"count": state.count}

    def best(state: RandomState) -> tuple[Arch, jax.Array]:
        if vector:
            return _base.front_of(state.best_arch, state.best_fitness)
        return state.best_arch, state.best_fitness

    default_params = RandomParams()
    info = Info("random", batch_size, objectives, jittable=True, multi_fidelity=False,
                vector_fitness=True)
    return Strategy(init, ask, tell, best, None, default_params, space, info)
