"""One-shot methods as strategies that ask once.

DARTS trains a weight-sharing supernet instead of asking populations; wrapped as
a strategy whose only ask returns its discretised cell (``Info.max_asks`` 1), the
driver trains and logs that cell like any other architecture.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxnas.arch import Arch, stack
from jaxnas.data import Dataset
from jaxnas.spaces import Space
from jaxnas.strategies import Info, Strategy
from jaxnas.train import TrainConfig
from jaxnas.train.darts import DartsConfig, check_space
from jaxnas.train.darts import darts as run_darts


@struct.dataclass
class OneAskState:
    asked: jax.Array  # () int32: asks so far
    best_arch: Arch  # one architecture, the last told
    best_fitness: jax.Array  # () float32


def darts(space: Space, *, data: Dataset, max_steps: int, batch_size: int,
          train_config: TrainConfig, alpha_lr: float = 3e-3, alpha_weight_decay: float = 1e-3,
          inputs_per_node: int = 2) -> Strategy:
    """First-order DARTS as a strategy of one ask (``jaxnas.train.darts``).

    Args:
      space: a cell space (not a chain).
      data: the search's dataset; the supernet trains on its training split.
      max_steps, batch_size: the supernet trains for ``max_steps * batch_size`` steps,
        the training budget of one generation of the population.
      train_config: minibatch size, weight learning rate and model of the supernet.
      alpha_lr, alpha_weight_decay, inputs_per_node: ``DartsConfig``'s.
    """
    check_space(space)
    settings = DartsConfig(steps=max_steps * batch_size, batch_size=train_config.batch_size,
                           weight_lr=train_config.learning_rate, alpha_lr=alpha_lr,
                           alpha_weight_decay=alpha_weight_decay,
                           inputs_per_node=inputs_per_node, model=train_config.model)

    def init(key: jax.Array, params=None) -> OneAskState:
        del params
        return OneAskState(jnp.int32(0), space.sample_one(key), jnp.float32(jnp.inf))

    def ask(key: jax.Array, state: OneAskState) -> tuple[Arch, OneAskState]:
        arch = run_darts(key, space, data, settings).arch
        return stack([arch]), state.replace(asked=state.asked + 1)

    def tell(key: jax.Array, state: OneAskState, archs: Arch, fitness: jax.Array):
        del key
        arch = jax.tree_util.tree_map(lambda leaf: leaf[0], archs)
        return state.replace(best_arch=arch, best_fitness=jnp.asarray(fitness[0])), {}

    def best(state: OneAskState) -> tuple[Arch, jax.Array]:
        return state.best_arch, state.best_fitness

    return Strategy(init=init, ask=ask, tell=tell, best=best, space=space,
                    info=Info(name="darts", batch_size=1, jittable=False, max_asks=1))
