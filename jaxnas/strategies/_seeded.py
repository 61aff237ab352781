"""Starting any strategy from given architectures: ``seeded(strategy, initial)``.

The first ceil(k / B) asks return the k seeds in their first rows; the other
rows of the ask that places the last seed are the strategy's own. The wrapped
``ask`` is called at every ask, so its state and keys advance as without seeds,
and its ``tell`` receives the whole batch as evaluated, so whatever a strategy
learns from told archs starts from the seeds: evolution's population (seeds in
place of its first random members), BANANAS's training set, REINFORCE's
baseline and gradient, the start of a local-search climb (seeds beyond the
first batch stand in for neighbours of that climb, which moves to the best of
them if it improves). A strategy with ``fresh`` takes seeds only into fresh
asks: successive halving and Hyperband put them in a bracket's first rung, at
its fidelity, and the seeds that do not fit wait for the next bracket, so
survivors are always asked again. ``lineage`` is the strategy's with
``has_parent`` False on the seeded rows. Jittable when the strategy is; the
seeds are constants of the compiled program. A search whose budget ends first
evaluates only the first seeds.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.arch import Arch
from jaxnas.strategies._base import Lineage, Strategy


@flax.struct.dataclass
class SeededState:
    inner: Any  # the wrapped strategy's state
    placed: jax.Array  # () int32, seeds asked so far
    seeded: jax.Array  # (B,) bool, the rows of the last ask that are seeds


def place(archs: Arch, seeds: Arch, placed, taking, xp=jnp) -> tuple[Arch, Any]:
    """Puts the next seeds into the first rows of an ask.

    Args:
      archs: (B,) the strategy's own ask.
      seeds: (k,) all seeds; ``placed`` () of them were asked already.
      taking: () bool, whether this ask takes seeds.
      xp: ``jnp``, or ``np`` for host-side strategies.

    Returns:
      (the ask, (B,) bool mask of its seeded rows).
    """
    batch, count = archs.ops.shape[0], seeds.ops.shape[0]
    index = placed + np.arange(batch)
    mask = taking & (index < count)
    pick = xp.minimum(index, count - 1)
    archs = jax.tree_util.tree_map(
        lambda own, seed: xp.where(mask.reshape((batch,) + (1,) * (own.ndim - 1)),
                                   seed[pick].astype(own.dtype), own),
        archs, seeds)
    return archs, mask


def seeded(strategy: Strategy, initial: Arch) -> Strategy:
    """``strategy``, asking the k architectures of ``initial`` first, in order.

    Args:
      strategy: any strategy that asks more than once (not a one-shot method).
      initial: (k,) population of valid architectures of ``strategy.space``.

    Raises:
      ValueError: a one-shot strategy, or ``initial`` not a population.
      ArchError: an invalid seed (naming its index).
    """
    info = strategy.info
    if info.max_asks is not None:
        raise ValueError(f"{info.name} asks only {info.max_asks} time"
                         f"{'s' if info.max_asks != 1 else ''}; it cannot start from initial "
                         "architectures")
    seeds = Arch(adj=np.asarray(initial.adj, np.int8), ops=np.asarray(initial.ops, np.int32))
    if seeds.ops.ndim != 2 or not len(seeds.ops):
        raise ValueError("initial architectures must be a population of at least one; got ops "
                         f"of shape {seeds.ops.shape}")
    strategy.space.validate_population(seeds)
    xp = jnp if info.jittable else np
    if info.jittable:
        seeds = jax.tree_util.tree_map(jnp.asarray, seeds)

    def init(key: jax.Array, params=None) -> SeededState:
        return SeededState(strategy.init(key, params), xp.int32(0),
                           xp.zeros(info.batch_size, bool))

    def ask(key: jax.Array, state: SeededState) -> tuple[Arch, SeededState]:
        taking = True if strategy.fresh is None else strategy.fresh(state.inner)
        archs, inner = strategy.ask(key, state.inner)
        archs, mask = place(archs, seeds, state.placed, taking, xp)
        return archs, SeededState(inner, (state.placed + mask.sum()).astype(xp.int32), mask)

    def tell(key: jax.Array, state: SeededState, archs: Arch,
             fitness: jax.Array) -> tuple[SeededState, dict]:
        inner, metrics = strategy.tell(key, state.inner, archs, fitness)
        return state.replace(inner=inner), metrics

    def lineage(state: SeededState) -> Lineage:
        own = strategy.lineage(state.inner)
        return own.replace(has_parent=own.has_parent & ~state.seeded)

    return Strategy(
        init=init, ask=ask, tell=tell, best=lambda state: strategy.best(state.inner),
        space=strategy.space, info=info, default_params=strategy.default_params,
        fidelity=None if strategy.fidelity is None else (
            lambda state: strategy.fidelity(state.inner)),
        lineage=None if strategy.lineage is None else lineage,
        fresh=None if strategy.fresh is None else lambda state: strategy.fresh(state.inner),
        hyperparameters=None if strategy.hyperparameters is None else (
            lambda state: strategy.hyperparameters(state.inner)))
