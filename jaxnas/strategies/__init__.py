"""Search strategies: pure ask/tell functions over architectures and fitness.

A strategy is a ``Strategy`` named tuple built by a factory closed over the
space and the static configuration (shapes such as the batch size)::

    strategy = strategies.get("evolution", space, population_size=20, batch_size=5)
    state = strategy.init(key)                      # params default: strategy.default_params
    archs, state = strategy.ask(k_ask, state)       # (B,) architectures
    state, metrics = strategy.tell(k_tell, state, archs, fitness)   # fitness (B,) minimised
    arch, fitness = strategy.best(state)

Tunable numbers (tournament size, learning rate, ...) live in a ``Params``
pytree stored in the state: ``strategy.init(key, params)`` with other values
reuses every compiled ``ask``/``tell``. Fitness is minimised and any non-finite
value (NaN included) counts as +inf. ``info`` says whether a strategy is
jittable, multi-fidelity and whether it ranks vector fitness (B, M) by Pareto
dominance (``random``, ``evolution``: NSGA-II) instead of a weighted sum with
``params.weights`` (all others).

Multi-fidelity (``halving``, ``hyperband``): ``strategy.fidelity(state)`` is the
number of training steps at which the archs of the next ask must be evaluated.
Later rungs ask again exactly the survivors of the previous rung, so the
driver, keeping trained candidates by canonical hash, continues each from its
stored step count instead of training it from scratch.

Duplicates: the search driver owns the evaluation cache, keyed by the
canonical hash of the pruned graph (and by the number of training steps for
multi-fidelity strategies). Strategies may propose an architecture that was
evaluated before (or twice in one ask); the driver does not train it again and
tells the cached fitness.

Fusing: ``run_fused`` runs ask -> evaluate -> tell for G generations in one
jitted ``lax.scan`` (``run_stepwise`` does the same from Python); every
strategy except ``local`` fuses (``local`` computes variable-sized
neighbourhoods on the host with ``space.neighbours``).

Joint search: random, evolution, local, bananas and reinforce take
``hyperparameters=HyperSpace(...)`` and then also search training numbers: each
member carries H unit coordinates (``Strategy.hyperparameters(state)`` after an ask;
``HyperSpace.values`` maps them to numbers), which they sample, mutate, encode or
draw from a categorical. The others do not take it.

Seeding: ``seeded(strategy, archs)`` asks the given archs first, then lets the
strategy go on; its tell sees them, so populations, training sets and climbs
start from them (multi-fidelity strategies take them into a first rung).

Strategies never import the trainer or the model: they see archs and fitness.

Adding a strategy: ``register(name, factory)`` with a factory
``factory(space, *, batch_size, ..., **options) -> Strategy``; ``make_strategy``
builds the ``Strategy`` from the algorithm's own ``init``, ``ask`` and ``tell``
and adds the bookkeeping (docs/writing-a-strategy.md). The search driver
offers every factory the same keyword context and passes those its signature
names (or all of them to a ``**context``): ``batch_size`` (the population),
``objectives``, ``weights``, ``max_steps`` (training steps of a full evaluation),
``budget`` (unique evaluations), ``model_config``, ``train_config``, ``data``,
``score_fn`` (a training-free proxy, built only for a factory that takes it) and
``hyperparameters`` (a ``HyperSpace`` in a joint search, else None; a search with
one refuses a factory that does not take it). Its
other keyword arguments are the strategy's options (``strategy_options``,
``--strategy-option KEY=VALUE``).
"""

from __future__ import annotations

from collections.abc import Callable

from jaxnas import spaces
from jaxnas.spaces import Space
from jaxnas.strategies import objectives, pareto
from jaxnas.strategies._bananas import bananas
from jaxnas.strategies._base import (
    Info,
    Lineage,
    Strategy,
    improve,
    initial_best,
    make_strategy,
    score,
)
from jaxnas.strategies._evolution import evolution
from jaxnas.strategies._halving import hyperband, successive_halving
from jaxnas.strategies._hyper import Dimension, HyperSpace, JointSpace
from jaxnas.strategies._local import local_search
from jaxnas.strategies._loop import History, make_fused, run_fused, run_stepwise
from jaxnas.strategies._random import random_search
from jaxnas.strategies._reinforce import reinforce
from jaxnas.strategies._seeded import seeded
from jaxnas.strategies._zero_cost import top_scored, zero_cost

_REGISTRY: dict[str, Callable[..., Strategy]] = {
    "random": random_search,
    "evolution": evolution,
    "local": local_search,
    "reinforce": reinforce,
    "bananas": bananas,
    "halving": successive_halving,
    "hyperband": hyperband,
    "zero_cost": zero_cost,
}


def names() -> list[str]:
    """Names of the registered strategies."""
    return list(_REGISTRY)


def register(name: str, factory: Callable[..., Strategy]) -> None:
    """Adds (or replaces) the strategy ``name``: ``factory(space, **config) -> Strategy``."""
    if not callable(factory):
        raise TypeError(f"the factory of strategy {name!r} must be callable")
    _REGISTRY[name] = factory


def factory(name: str) -> Callable[..., Strategy]:
    """The factory registered under ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def get(name: str, space: Space | str, **config) -> Strategy:
    """Builds the strategy registered under ``name`` for ``space`` (a Space or a space name)."""
    build = factory(name)
    if isinstance(space, str):
        space = spaces.get(space)
    return build(space, **config)


__all__ = [
    "Dimension", "History", "HyperSpace", "Info", "JointSpace", "Lineage", "Strategy", "bananas",
    "evolution", "factory", "get", "hyperband",
    "improve", "initial_best", "local_search", "make_fused", "make_strategy", "names",
    "objectives", "pareto", "random_search", "register", "reinforce", "run_fused",
    "run_stepwise", "score", "seeded", "successive_halving", "top_scored", "zero_cost",
]
