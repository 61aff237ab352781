"""The training hyper-parameters a joint search declares: their forms and checks.

A search's ``hyperparameters`` maps a trainer number (``jaxnas.train.Hyperparams``:
learning_rate, weight_decay, momentum) to where it is searched, kept in the command
line's form (``SearchConfig.hyperparameters``, the run directory's record):
``"LOW:HIGH"``, ``"LOW:HIGH:log"`` or ``"A,B,C"``. Python callers may also give a
tuple ``(low, high)`` or ``(low, high, "log")`` for a range and a list of numbers for
choices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from jaxnas.strategies import Dimension, HyperSpace
from jaxnas.train import Hyperparams

NAMES = Hyperparams._fields


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: {text!r} must be a finite number >= 0")
    if name == "learning_rate" and value == 0:
        raise ValueError(f"{name}: a learning rate must be positive; got {text!r}")
    return value


def dimension(name: str, spec: str) -> Dimension:
    """The ``Dimension`` of ``NAME=spec``; ValueError (one line) for a bad one."""
    if name not in NAMES:
        raise ValueError(f"unknown hyper-parameter {name!r}; the trainer searches "
                         f"{', '.join(NAMES)}")
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{name}: expected LOW:HIGH, LOW:HIGH:log or A,B,C; got {spec!r}")
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
            raise ValueError(f"{name}: a range is LOW:HIGH or LOW:HIGH:log; got {spec!r}")
        low, high = (_number(name, p.strip()) for p in parts[:2])
        if not low < high:
            raise ValueError(f"{name}: a range needs LOW < HIGH; got {spec!r}")
        log = len(parts) == 3
        if log and low == 0:
            raise ValueError(f"{name}: a log range needs LOW > 0; got {spec!r}")
        return Dimension(name, low, high, log=log)
    choices = tuple(_number(name, p.strip()) for p in spec.split(","))
    if len(choices) < 2 or len(set(choices)) != len(choices):
        raise ValueError(f"{name}: choices are two or more different numbers A,B,...; got "
                         f"{spec!r} (a fixed value is a setting, not a search)")
    return Dimension(name, choices=choices)


def _spec_of(name: str, value) -> str:
    """The command line's form of a Python value (string, range tuple, choice list)."""
    if isinstance(value, str):
        return value
    if isinstance(value, tuple) and len(value) in (2, 3) and (
            len(value) == 2 or value[2] == "log"):
        return ":".join(str(v) for v in value)
    if isinstance(value, list) and value:
        return ",".join(str(v) for v in value)
    raise ValueError(f"{name}: expected 'LOW:HIGH[:log]', 'A,B,C', a tuple (low, high[, "
                     f"'log']) or a list of choices; got {value!r}")


def canonical(hyperparameters: Mapping) -> dict[str, str]:
    """{name: spec} in the command line's canonical form (numbers as Python writes
    them), in the trainer's order of names; ValueError (one line) for a bad entry."""
    if not isinstance(hyperparameters, Mapping):
        raise ValueError(f"expected a mapping from names to ranges or choices; got "
                         f"{type(hyperparameters).__name__}")
    dimensions = {name: dimension(name, _spec_of(name, value))
                  for name, value in hyperparameters.items()}
    return {name: dimensions[name].spec() for name in NAMES if name in dimensions}


def hyper_space(hyperparameters: Mapping[str, str], optimizer: str) -> HyperSpace | None:
    """The searched space of a search's canonical ``hyperparameters`` (None: none);
    ValueError (one line) for a bad entry or momentum without SGD."""
    if not hyperparameters:
        return None
    if "momentum" in hyperparameters and optimizer != "sgd":
        raise ValueError(f"momentum is used only by the sgd optimizer; this search uses "
                         f"{optimizer}")
    return HyperSpace(tuple(dimension(name, spec) for name, spec in hyperparameters.items()))
