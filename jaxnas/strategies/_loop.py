"""Whole searches: G generations of ask -> evaluate -> tell, fused or step by step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxnas.arch import Arch
from jaxnas.strategies._base import State, Strategy


class History(NamedTuple):
    """Per-generation record of a search with G generations of B archs.

    Attributes:
      archs: (G, B) population of the asked architectures.
      fitness: (G, B) or (G, B, M) told fitness.
      best_fitness: (G, ...) ``best(state)`` fitness after each tell.
      fidelity: (G,) int32 training steps of each generation, or None.
      metrics: dict of (G,) arrays from ``tell``.
    """

    archs: Arch
    fitness: jax.Array
    best_fitness: jax.Array
    fidelity: jax.Array | None
    metrics: dict[str, Any]


def _check_loop(strategy: Strategy) -> None:
    """The loops evaluate architectures only: a joint strategy's training numbers
    (``Strategy.hyperparameters``) would be ignored, so it is refused."""
    if strategy.hyperparameters is not None:
        raise ValueError(f"strategy {strategy.info.name!r} also searches training numbers, "
                         "which these loops do not pass to evaluate; run it with "
                         "jaxnas.search(hyperparameters=...) or drive ask/tell yourself")


def _generation(strategy: Strategy, evaluate: Callable, state: State,
                key: jax.Array) -> tuple[State, History]:
    k_ask, k_eval, k_tell = jax.random.split(key, 3)
    steps = None if strategy.fidelity is None else strategy.fidelity(state)
    archs, state = strategy.ask(k_ask, state)
    fitness = evaluate(k_eval, archs) if steps is None else evaluate(k_eval, archs, steps)
    state, metrics = strategy.tell(k_tell, state, archs, fitness)
    _, best_fitness = strategy.best(state)
    return state, History(archs, fitness, best_fitness, steps, metrics)


def make_fused(strategy: Strategy, evaluate: Callable,
               generations: int) -> Callable[[jax.Array, State], tuple[State, History]]:
    """A pure ``run(key, state) -> (state, history)`` doing G generations in one scan.

    Jit it, or vmap it over keys and states for many seeds. ``evaluate(key, archs)
    -> fitness`` must be jittable; for multi-fidelity strategies it is called as
    ``evaluate(key, archs, steps)`` with ``steps = strategy.fidelity(state)``.
    """
    _check_loop(strategy)
    if not strategy.info.jittable:
        raise ValueError(f"strategy {strategy.info.name!r} runs on the host and cannot be "
                         "fused; use run_stepwise or drive ask/tell yourself")
    if generations < 1:
        raise ValueError(f"generations must be at least 1; got {generations}")

    def run(key: jax.Array, state: State) -> tuple[State, History]:
        keys = jax.random.split(key, generations)
        return jax.lax.scan(lambda s, k: _generation(strategy, evaluate, s, k), state, keys)

    return run


def run_fused(key: jax.Array, strategy: Strategy, evaluate: Callable, generations: int,
              state: State | None = None) -> tuple[State, History]:
    """Runs a whole search as one jitted ``lax.scan``: no host round trip.

    Args:
      key: PRNG key; split into the init key and the loop key.
      strategy: a jittable strategy (``strategy.info.jittable``).
      evaluate: jittable ``evaluate(key, archs) -> fitness`` (or with ``steps``
        for multi-fidelity strategies, see ``make_fused``).
      generations: G, the number of ask/evaluate/tell rounds.
      state: a state from ``strategy.init`` (to set params or warm-start);
        default ``strategy.init`` with the default params.

    Returns:
      (final state, ``History`` with a leading axis G).

    Each call traces and compiles anew (the loop closes over ``strategy`` and
    ``evaluate``); for many runs, ``jax.jit(make_fused(...))`` once and call it
    with states from ``strategy.init(key, params)``, or vmap it over seeds.
    """
    k_init, k_run = jax.random.split(key)
    if state is None:
        state = strategy.init(k_init)
    return jax.jit(make_fused(strategy, evaluate, generations))(k_run, state)


def run_stepwise(key: jax.Array, strategy: Strategy, evaluate: Callable, generations: int,
                 state: State | None = None, jit: bool = True) -> tuple[State, History]:
    """The same search as ``run_fused``, one generation per Python iteration.

    With the same key and state both follow the same trajectory. Host-side
    strategies (``local``) run only this way; ``jit`` compiles ``ask`` and
    ``tell`` of jittable strategies (``evaluate`` is called as given).

    Returns:
      (final state, ``History`` stacked on the host as numpy arrays).
    """
    _check_loop(strategy)
    k_init, k_run = jax.random.split(key)
    if state is None:
        state = strategy.init(k_init)
    if jit and strategy.info.jittable:
        strategy = strategy._replace(ask=jax.jit(strategy.ask), tell=jax.jit(strategy.tell))
    records = []
    for generation_key in jax.random.split(k_run, generations):
        state, record = _generation(strategy, evaluate, state, generation_key)
        records.append(jax.device_get(record))
    history = jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *records)
    return state, history
