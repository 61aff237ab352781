"""What defines a search (``SearchConfig``), what it records and what it returns.

``SearchConfig`` is the one source of truth for the settings of a search: their
defaults, their choices and their help text (field metadata), from which the
``jaxnas search`` command builds its options.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from jaxnas import spaces as spaces_lib
from jaxnas.arch import Arch, describe
from jaxnas.nn import NORMS, ModelConfig
from jaxnas.search.hyper import hyper_space
from jaxnas.strategies import HyperSpace
from jaxnas.train import OPTIMIZERS, PROGRAMS

OBJECTIVES = ("loss", "loss+params", "loss+flops")
# Two objectives are (validation loss, log10 of params or FLOPs); strategies that do not
# rank by Pareto dominance, and the choice of the one model to retrain, use this sum.
OBJECTIVE_WEIGHTS = (1.0, 0.1)


class SearchError(Exception):
    """A user mistake or an unusable run directory; the message is one line."""


class RunDirectoryError(SearchError):
    """A run directory that cannot be used as asked; the message is one line naming the
    file and what is wrong."""


class SettingError(SearchError):
    """A bad setting; the message names it as the caller did (``naming``).

    ``str(error)`` names the keyword of ``jaxnas.search``; ``error.named(flag_name)``
    names the command line's option.
    """

    def __init__(self, field: str, template: str):
        self.field = field
        self.template = template
        super().__init__(self.named(keyword_name))

    def named(self, naming) -> str:
        """The message with the setting named by ``naming(field name)``."""
        return self.template.format(name=naming(self.field))


def keyword_name(field: str) -> str:
    """The keyword of ``jaxnas.search`` that sets a ``SearchConfig`` field."""
    return {"budget_evals": "budget", "dataset": "data"}.get(field, field)


def flag_name(field: str) -> str:
    """The ``jaxnas search`` option that sets a ``SearchConfig`` field."""
    return flag_of(next(f for f in dataclasses.fields(SearchConfig) if f.name == field))


def unknown_space_hint(name: str) -> str:
    """One line for a run whose space is not registered in this process."""
    return (f"the run searched the space {name!r}, which is not registered here; import the "
            f"module that registers it (jaxnas --import MODULE ..., or import it in Python "
            f"first); registered: {', '.join(spaces_lib.names())}")


class SearchInterrupted(Exception):
    """Ctrl-C: the search stopped after writing its checkpoint."""


def _setting(default: Any, text: str, *, choices=None, flag: str | None = None,
             minimum: int | None = None) -> Any:
    """A ``SearchConfig`` field whose metadata the CLI turns into an option."""
    metadata = {"help": text, "choices": choices, "flag": flag, "minimum": minimum}
    if isinstance(default, dict):
        return dataclasses.field(default_factory=dict, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search (written to result.json and the checkpoint).

    Attributes:
      space: registered space name (``jaxnas.spaces.register``).
      strategy: registered strategy name (``jaxnas.strategies.register``).
      dataset: "digits", "mnist1d", a registered dataset or a path to an .npz file.
      strategy_options: keyword arguments of the strategy's factory beyond the context
        the driver gives every strategy (e.g. ``{"tournament_size": 3}``).
      population: architectures per generation (the strategy's batch size).
      generations: stop after this many generations (None: only the budgets).
      budget_evals: stop after this many unique evaluations.
      budget_minutes: stop after this much wall time (None: no time budget).
      steps: training steps per candidate (the highest fidelity for multi-fidelity
        strategies).
      batch_size: training minibatch size (at most the training split's size).
      learning_rate: peak learning rate.
      optimizer: one of ``jaxnas.train.OPTIMIZERS``.
      width: cell width of the model.
      cells: cells stacked in the model's macro skeleton.
      norm: the normalisation of conv ops (``ModelConfig.norm``).
      program: ``TrainConfig.program``: "auto", "cpu", "accelerator" or "select" (the
        same function; how a device runs it).
      seed: the run's seed; the same seed on the same machine gives the same log.
      objective: "loss", or "loss+params" / "loss+flops" for two objectives
        (validation loss and log10 of the parameter count or FLOPs).
      final_steps: training steps of the final retraining on train + validation.
      inherit: weight inheritance: a child the strategy mutated from a trained parent
        (``Strategy.lineage``) starts from the parent's trained parameters; only its
        new or changed nodes start fresh (``Model.inherit``), and the optimiser state
        starts fresh.
      repeats: K, each candidate trains K times in the same batch, with different
        initial weights and minibatch orders; the log holds the mean and std of the
        validation loss and accuracy, and strategies are told the mean loss.
      initial: the JSON forms (``jaxnas.arch.to_json``) of architectures the search
        evaluates first, in order; the strategy starts from them (``seeded``).
        ``search(initial=...)`` and ``--initial`` read them from files, strings and
        objects (``jaxnas.search.initial``).
      hyperparameters: a joint search of training numbers too: {name: "LOW:HIGH",
        "LOW:HIGH:log" or "A,B,C"} (``jaxnas.search.hyper``; names of
        ``jaxnas.train.Hyperparams``); each candidate trains at its own, the others
        keep their settings. Empty: architectures only.
    """

    space: str = _setting("mlp", "search space")
    strategy: str = _setting("evolution", "search strategy")
    dataset: str = _setting("digits", "digits, mnist1d, a registered dataset, PATH.npz "
                            "with x, y (optionally x_test, y_test), or a Hugging Face "
                            "dataset hf:NAME[:CONFIG] or hf:DIRECTORY (save_to_disk), "
                            "optionally ?input=COL&label=COL")
    strategy_options: dict = _setting({}, "options of the strategy's factory")
    population: int = _setting(16, "architectures per generation", minimum=1)
    generations: int | None = _setting(None, "stop after this many generations", minimum=1)
    budget_evals: int = _setting(96, "stop after this many unique evaluations", minimum=1)
    budget_minutes: float | None = _setting(None, "stop after this many minutes")
    steps: int = _setting(200, "training steps per candidate", minimum=1)
    batch_size: int = _setting(64, "training minibatch size", minimum=1)
    learning_rate: float = _setting(3e-3, "learning rate", flag="--lr")
    optimizer: str = _setting("adam", "optimizer", choices=OPTIMIZERS)
    width: int = _setting(32, "cell width (channels or units)", minimum=1)
    cells: int = _setting(1, "cells stacked in the model", minimum=1)
    norm: str = _setting("batch", "normalisation of conv ops (batch is NAS-Bench-101/201's)",
                         choices=NORMS)
    program: str = _setting("auto", "how a device trains its candidates: cpu (one at a time, "
                            "nodes branch), accelerator (vmapped chunks of typed node slots) "
                            "or select (vmapped chunks of the padded program); auto: cpu on "
                            "CPUs, else accelerator", choices=PROGRAMS)
    seed: int = _setting(0, "the run's seed")
    objective: str = _setting("loss", "what is minimised", choices=OBJECTIVES)
    final_steps: int = _setting(1000, "training steps when retraining the best on train+val",
                                minimum=1)
    inherit: bool = _setting(False, "a mutated child starts from its parent's trained weights "
                             "(only new or changed nodes start fresh)")
    repeats: int = _setting(1, "train each candidate this many times (other initial weights "
                            "and minibatch orders) and tell strategies the mean", minimum=1)
    initial: tuple[dict, ...] = _setting((), "architectures to evaluate first")
    hyperparameters: dict = _setting({}, "training numbers searched with the architecture",
                                     flag="--search-hp")

    def check(self) -> None:
        """Raises SettingError naming the first bad value (names are checked by ``search``,
        which may be given a space or strategy object instead)."""
        for field in dataclasses.fields(self):
            value, meta = getattr(self, field.name), field.metadata
            if meta["choices"] is not None and value not in meta["choices"]:
                raise SettingError(field.name, f"{{name}} must be one of "
                                   f"{', '.join(meta['choices'])}; got {value!r}")
            if meta["minimum"] is not None and value is not None and value < meta["minimum"]:
                raise SettingError(field.name, f"{{name}} must be at least {meta['minimum']}; "
                                   f"got {value}")
        if self.budget_minutes is not None and not self.budget_minutes > 0:
            raise SettingError("budget_minutes",
                               f"{{name}} must be positive; got {self.budget_minutes}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise SettingError("learning_rate",
                               f"{{name}} must be a positive number; got {self.learning_rate}")
        if self.seed < 0:
            raise SettingError("seed", f"{{name}} must be non-negative; got {self.seed}")
        self.hyper_space()

    def hyper_space(self) -> HyperSpace | None:
        """The searched training numbers (None: architectures only); SettingError for a
        bad entry."""
        try:
            return hyper_space(self.hyperparameters, self.optimizer)
        except ValueError as error:
            raise SettingError("hyperparameters", f"{{name}}: {error}") from None

    @property
    def model(self) -> ModelConfig:
        return ModelConfig(width=self.width, num_cells=self.cells, norm=self.norm)

    @property
    def num_objectives(self) -> int:
        return 1 if self.objective == "loss" else 2


def flag_of(field: dataclasses.Field) -> str:
    """The CLI option of a ``SearchConfig`` field: ``--lr`` or ``--name-with-dashes``."""
    return field.metadata["flag"] or f"--{field.name.replace('_', '-')}"


@dataclasses.dataclass
class Record:
    """One evaluated architecture (one line of log.jsonl)."""

    generation: int
    hash: str
    arch: dict
    val_loss: float
    val_acc: float
    params: int
    flops: int
    steps: int
    seconds: float
    # With repeats > 1: the std over repeats (val_loss and val_acc are the means) and
    # each repeat's values; with inherit: the hash whose trained weights it started from.
    val_loss_std: float | None = None
    val_acc_std: float | None = None
    repeat_val_loss: list[float] | None = None
    repeat_val_acc: list[float] | None = None
    parent: str | None = None
    # In a joint search: the training numbers this candidate was trained with.
    hyperparameters: dict[str, float] | None = None

    @property
    def identity(self) -> tuple:
        """What makes two evaluations the same candidate: the architecture's canonical
        hash and, in a joint search, its training numbers."""
        return (self.hash, tuple(sorted((self.hyperparameters or {}).items())))

    def to_json(self) -> dict:
        """The log line's fields: the unset optional ones are left out."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def fitness(self, objective: str) -> tuple[float, ...]:
        loss = self.val_loss if math.isfinite(self.val_loss) else math.inf
        if objective == "loss":
            return (loss,)
        size = self.params if objective == "loss+params" else self.flops
        return (loss, math.log10(max(size, 1)))

    def weighted_fitness(self, objective: str) -> float:
        """The fitness as one number: two objectives summed with ``OBJECTIVE_WEIGHTS``."""
        return sum(w * f for w, f in zip(OBJECTIVE_WEIGHTS, self.fitness(objective),
                                         strict=False))


def describe_hyperparameters(values: dict[str, float]) -> str:
    """``learning_rate=0.003, momentum=0.9``."""
    return ", ".join(f"{name}={value:.4g}" for name, value in values.items())


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b rank correlation of two equally long sequences (NaN if undefined)."""
    upper = np.triu_indices(len(a), 1)
    x = np.sign(a[:, None] - a[None, :])[upper]
    y = np.sign(b[:, None] - b[None, :])[upper]
    pairs = np.count_nonzero(x) * np.count_nonzero(y)
    return float(np.sum(x * y) / math.sqrt(pairs)) if pairs else math.nan


def rank_stability(history: list[Record]) -> tuple[float, float, int] | None:
    """How stably repeated evaluations rank the candidates: Kendall's tau between the
    validation losses of every two repeats over the candidates trained at the run's
    highest fidelity with finite losses. Returns (mean over repeat pairs, smallest,
    candidates) or None without repeats or with fewer than 3 such candidates."""
    top = max(r.steps for r in history)
    rows = [r.repeat_val_loss for r in history
            if r.steps == top and r.repeat_val_loss and np.isfinite(r.repeat_val_loss).all()]
    if len(rows) < 3:
        return None
    losses = np.asarray(rows, np.float64)
    taus = [kendall_tau(losses[:, i], losses[:, j])
            for i in range(losses.shape[1]) for j in range(i + 1, losses.shape[1])]
    return float(np.nanmean(taus)), float(np.nanmin(taus)), len(rows)


def best_record(history: list[Record], objective: str) -> Record:
    """The record to retrain: among the highest-fidelity ones, the lowest weighted fitness."""
    top = max(r.steps for r in history)
    finished = [r for r in history if r.steps == top]
    return min(finished, key=lambda r: (r.weighted_fitness(objective), r.identity))


@dataclasses.dataclass
class SearchResult:
    """What a search returns: the best architecture, its scores, the training numbers it
    was retrained with and the history."""

    space: spaces_lib.Space
    best_arch: Arch
    best: Record
    test_accuracy: float
    test_loss: float
    history: list[Record]
    config: SearchConfig
    wall_seconds: float
    generations: int
    out: Path | None
    # The training numbers of the final retraining: the winner's searched ones, the
    # run's settings for the others (momentum only with SGD).
    hyperparameters: dict[str, float] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"best architecture ({self.space.name}, hash {self.best.hash[:12]}):",
            describe(self.best_arch, self.space.op_names),
            f"validation loss {self.best.val_loss:.4f}, accuracy {self.best.val_acc:.4f}; "
            f"{self.best.params:,} params, {self.best.flops:,} FLOPs/example",
            f"test accuracy after retraining on train+val: {self.test_accuracy:.4f}",
            f"{len(self.history)} unique evaluations in {self.generations} "
            f"generation{'s' if self.generations != 1 else ''}, "
            f"{self.wall_seconds:.1f} s",
        ]
        if self.best.hyperparameters:
            lines.insert(3, "trained with " + describe_hyperparameters(self.best.hyperparameters))
        if self.out is not None:
            lines.append(f"run directory: {self.out}")
        return "\n".join(lines)
