"""Random search: uniform samples from the space (``space.sample``), and of the
training hyper-parameters in a joint search."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from jaxnas.arch import Arch
from jaxnas.spaces import Space
from jaxnas.strategies._base import Strategy, check_config, initial_best, make_strategy
from jaxnas.strategies._hyper import HyperSpace, JointSpace


@flax.struct.dataclass
class RandomParams:
    """Random search has no tunable numbers."""


@flax.struct.dataclass
class RandomState:
    params: RandomParams
    best_arch: Arch  # one arch, or the (C,) Pareto archive when M > 1
    best_fitness: jax.Array  # (), or (C, M) archive fitness when M > 1
    count: jax.Array  # () int32, archs told so far
    hyper: jax.Array | None = None  # (B, H) unit coordinates of the last ask (joint search)


def random_search(space: Space, *, batch_size: int = 10, objectives: int = 1,
                  archive_size: int = 64, weights=None,
                  hyperparameters: HyperSpace | None = None) -> Strategy:
    """Random search: every ask draws ``batch_size`` archs uniformly from ``space``.

    Args:
      space: the search space.
      batch_size: B, archs per ask.
      objectives: M; with M > 1 ``best`` is the Pareto front of everything
        told, kept in an archive of ``archive_size`` rows (NSGA-II selection).
      archive_size: C, capacity of the Pareto archive (M > 1 only).
      weights: accepted and checked so every strategy takes the same settings;
        Pareto ranking does not use them.
      hyperparameters: a joint search: every member also draws its training numbers
        uniformly in their unit coordinates (``Strategy.hyperparameters``).
    """
    check_config("random", batch_size, objectives, weights)
    joint = None if hyperparameters is None else JointSpace(space, hyperparameters)
    archive = archive_size if objectives > 1 else None

    def init(key: jax.Array, params: RandomParams) -> RandomState:
        arch, fitness = initial_best(space.sample_one(key), objectives, archive)
        hyper = None if joint is None else jnp.zeros((batch_size, joint.hyper.size))
        return RandomState(params=params, best_arch=arch, best_fitness=fitness,
                           count=jnp.int32(0), hyper=hyper)

    def ask(key: jax.Array, state: RandomState) -> tuple[Arch, RandomState]:
        if joint is None:
            return space.sample(key, batch_size), state
        archs, units = joint.sample(key, batch_size)
        return archs, state.replace(hyper=units)

    def tell(key, state: RandomState, archs: Arch, fitness: jax.Array):
        return state, {}

    return make_strategy("random", space, batch_size=batch_size, objectives=objectives,
                         init=init, ask=ask, tell=tell, default_params=RandomParams(),
                         vector_fitness=True,
                         hyperparameters=None if joint is None else lambda state: state.hyper)
