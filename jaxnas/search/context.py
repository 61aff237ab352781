"""Building a strategy: the context the driver offers every factory, and its options.

The driver names no strategy. It offers each factory the same keyword context
(``CONTEXT``) and passes the entries the factory's signature names, or all of
them to a factory that takes ``**context``; expensive entries (the score
function of training-free proxies) are built only when taken. The user's
``strategy_options`` are the factory's other keyword arguments.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from jaxnas import strategies as strategies_lib
from jaxnas.data import Dataset
from jaxnas.search.config import OBJECTIVE_WEIGHTS, SearchConfig, SearchError
from jaxnas.search.initial import initial_population
from jaxnas.spaces import Space
from jaxnas.strategies import Strategy, seeded
from jaxnas.train import TrainConfig

CONTEXT = ("batch_size", "objectives", "weights", "max_steps", "budget", "model_config",
           "train_config", "data", "score_fn", "hyperparameters")


def _context(config: SearchConfig, space: Space, data: Dataset,
             train_config: TrainConfig) -> dict[str, Callable[[], Any]]:
    """Each context entry as a function that builds it."""

    def score_fn():
        from jaxnas.nn.proxies import make_score_fn

        return make_score_fn(space, data, model_config=config.model)

    thunks = {
        "batch_size": lambda: config.population,
        "objectives": lambda: config.num_objectives,
        "weights": lambda: OBJECTIVE_WEIGHTS[:config.num_objectives],
        "max_steps": lambda: config.steps,
        "budget": lambda: config.budget_evals,
        "model_config": lambda: config.model,
        "train_config": lambda: train_config,
        "data": lambda: data,
        "score_fn": score_fn,
        "hyperparameters": config.hyper_space,
    }
    assert tuple(thunks) == CONTEXT
    return thunks


def option_names(factory: Callable[..., Strategy]) -> list[str]:
    """The keyword arguments of a strategy factory that are not driver context."""
    parameters = list(inspect.signature(factory).parameters.values())[1:]  # after the space
    return [p.name for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in CONTEXT]


def check_options(name: str, factory: Callable[..., Strategy], options: dict) -> None:
    """Raises SearchError for an option the factory does not take, listing those it does."""
    try:
        json.dumps(options)
    except (TypeError, ValueError):
        raise SearchError("strategy options must be JSON values (numbers, strings, booleans, "
                          "lists), so that the run directory can record them") from None
    valid = option_names(factory)
    takes_all = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())
    for key in options:
        if key in CONTEXT:
            raise SearchError(f"strategy option {key!r} is set by the search itself "
                              f"(its settings); {name} takes {_listed(valid)}")
        if key not in valid and not takes_all:
            raise SearchError(f"strategy {name} has no option {key!r}; it takes "
                              f"{_listed(valid)}")


def _listed(valid: list[str]) -> str:
    return ", ".join(valid) if valid else "no options"


def build_strategy(name: str, factory: Callable[..., Strategy], space: Space,
                   config: SearchConfig, data: Dataset, train_config: TrainConfig) -> Strategy:
    """The strategy of a search: ``factory(space, **context it takes, **options)``, asking
    ``config.initial`` first (``seeded``) when the run has initial architectures."""
    options = dict(config.strategy_options)
    check_options(name, factory, options)
    parameters = inspect.signature(factory).parameters.values()
    takes_all = any(p.kind is p.VAR_KEYWORD for p in parameters)
    taken = {p.name for p in parameters}
    if config.hyperparameters and not (takes_all or "hyperparameters" in taken):
        raise SearchError(f"strategy {name} cannot search training hyper-parameters; "
                          f"use one of {', '.join(joint_strategies())}, or leave "
                          "hyperparameters (--search-hp) out")
    thunks = _context(config, space, data, train_config)
    context = {key: build() for key, build in thunks.items() if takes_all or key in taken}
    try:
        strategy = factory(space, **context, **options)
        if config.initial:
            strategy = seeded(strategy, initial_population(config.initial, space))
    except (TypeError, ValueError) as error:
        raise SearchError(f"strategy {name}: {error}") from None
    if config.hyperparameters and strategy.hyperparameters is None:
        raise SearchError(f"strategy {name} took hyperparameters but reports none for its "
                          "asks (Strategy.hyperparameters)")
    return strategy


def joint_strategies() -> list[str]:
    """The registered strategies whose factory takes ``hyperparameters`` (joint search)."""
    return [name for name in strategies_lib.names()
            if "hyperparameters" in inspect.signature(
                strategies_lib.factory(name)).parameters]
