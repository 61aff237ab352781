"""Training configuration, learning-rate schedules and optimisers.

A ``TrainConfig`` mixes two kinds of settings. Shape-fixing ones (steps, batch
size, optimiser family, schedule shape, model) are static: they key the compile
cache. The numbers a user sweeps (``learning_rate``, ``weight_decay``,
``momentum``) enter the compiled program traced, one value per candidate
(``Hyperparams``), so changing them reuses the compiled program and every candidate
of a population may train with its own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnas.nn import ModelConfig

OPTIMIZERS = ("adam", "adamw", "sgd")
PROGRAMS = ("auto", "cpu", "accelerator", "select")
SCHEDULES = ("constant", "cosine", "linear", "warmup_cosine")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a population is trained and evaluated (frozen and hashable).

    Attributes:
      steps: optimiser steps per call of ``train``.
      batch_size: training examples per step; at most the size of the training split.
      optimizer: "adam" (L2 penalty added to the gradient, as torch.optim.Adam),
        "adamw" (decoupled weight decay) or "sgd" (with ``momentum`` and an L2 penalty).
      learning_rate: peak learning rate (traced: changing it does not recompile).
      schedule: "constant", "cosine" or "linear" decay to ``final_lr_fraction`` of the
        peak, or "warmup_cosine" (cosine that needs ``warmup_steps > 0``). Every schedule
        applies the linear warmup of ``warmup_steps``.
      schedule_steps: the schedule's horizon in steps counted from the first call; None
        means ``steps``. Set it to the total when a run continues over several calls
        (successive halving), so the schedule does not restart.
      warmup_steps: steps of linear warmup from ``learning_rate / warmup_steps``.
      final_lr_fraction: learning rate at the horizon as a fraction of the peak.
      weight_decay: decay coefficient (traced).
      momentum: SGD momentum (traced; ignored by adam and adamw).
      model: the model built for every candidate.
      eval_batch_size: validation examples per evaluation batch; the vmapped programs
        ("accelerator", "select") evaluate at most ``batch_size`` at a time, so that a
        chunk's evaluation never needs more memory than its training step.
      curve_points: length of the training-loss curve: the mean minibatch loss over
        each of this many equal segments of the call's steps (capped at ``steps``).
      program: how a device trains its candidates (the same function, up to float
        summation order): "cpu", one candidate at a time, each node running only its
        own op under ``lax.switch`` (chunks of one, not vmapped: fastest on a CPU; a
        larger ``chunk_size`` vmaps chunks of the "select" program instead);
        "accelerator", chunks of candidates in ``vmap``, each chunk through typed node
        slots that run only its candidates' ops (``jaxnas.train.template_family``,
        docs/scaling.md); "select", vmapped chunks of the padded program where every
        node slot runs the space's largest kernel (the traced form ``make_evaluate``
        needs); "auto", "cpu" on CPU devices, else "accelerator".
      templates: the most slot templates of the accelerator program (branches of one
        compiled program; each chunk runs one): more fit the candidates more tightly
        and compile longer. 1 runs every chunk in the full template.
      chunk_size: the most candidates trained together (in ``vmap``) through the whole
        step loop; the population is a ``lax.map`` over chunks. None: 1 for the "cpu"
        program, else the largest chunk whose working memory (the compiled step's own
        memory analysis) fits the memory budget.
      memory_budget_mb: working memory one device may use for the chunk it trains; the
        population's parameters and optimiser state are held besides unless
        ``keep_state`` is False. None: ``memory_fraction`` of what the device holds
        (its allocator's limit on GPUs and TPUs, the machine's memory on a CPU), less
        what is in use.
      memory_fraction: the share of the device's memory a chunk may use when
        ``memory_budget_mb`` is None.
      population_rounding: padded sizes per doubling of the number of chunks (1: powers
        of two, 2: also 1.5x powers of two, ...; 0: whole chunks only). A population that
        fits one chunk per device pads to a power of two (unless 0). Rounding makes
        searches with varying population sizes reuse a few compiled programs; finer
        grids waste less padding on large populations. The accelerator program rounds
        to powers of two at most (its padding chunks run nothing, so only fewer
        programs follow).
      shared_batches: every candidate sees the same minibatches (False: each candidate
        draws its own order).
      keep_state: return trained parameters and optimiser state; False keeps only the
        metrics, so memory does not grow with the population (very large populations).
    """

    steps: int = 100
    batch_size: int = 128
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"
    schedule_steps: int | None = None
    warmup_steps: int = 0
    final_lr_fraction: float = 0.0
    weight_decay: float = 0.0
    momentum: float = 0.9
    model: ModelConfig = ModelConfig()
    eval_batch_size: int = 1024
    curve_points: int = 20
    program: str = "auto"
    templates: int = 8
    chunk_size: int | None = None
    memory_budget_mb: int | None = None
    memory_fraction: float = 0.8
    population_rounding: int = 2
    shared_batches: bool = True
    keep_state: bool = True

    def __post_init__(self):
        positive = ("steps", "batch_size", "eval_batch_size", "curve_points", "templates")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be at least 1; "
                                 f"got {getattr(self, name)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of "
                             f"{', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of "
                             f"{', '.join(SCHEDULES)}")
        if self.schedule == "warmup_cosine" and self.warmup_steps < 1:
            raise ValueError("schedule 'warmup_cosine' needs warmup_steps > 0")
        if self.warmup_steps < 0:
            raise ValueError(f"TrainConfig.warmup_steps must be >= 0; got {self.warmup_steps}")
        if self.schedule_steps is not None and self.schedule_steps < 1:
            raise ValueError("TrainConfig.schedule_steps must be at least 1 or None; "
                             f"got {self.schedule_steps}")
        if self.program not in PROGRAMS:
            raise ValueError(f"unknown program {self.program!r}; choose one of "
                             f"{', '.join(PROGRAMS)}")
        if self.memory_budget_mb is not None and self.memory_budget_mb < 1:
            raise ValueError("TrainConfig.memory_budget_mb must be at least 1 or None; "
                             f"got {self.memory_budget_mb}")
        if not 0 < self.memory_fraction <= 1:
            raise ValueError("TrainConfig.memory_fraction must be in (0, 1]; "
                             f"got {self.memory_fraction}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"TrainConfig.chunk_size must be at least 1 or None; "
                             f"got {self.chunk_size}")
        if self.population_rounding < 0:
            raise ValueError("TrainConfig.population_rounding must be >= 0; "
                             f"got {self.population_rounding}")
        for name in ("learning_rate", "weight_decay", "momentum", "final_lr_fraction"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be finite and >= 0; got {value}")

    def program_for(self, platform: str) -> str:
        """The program on ``platform`` ("cpu", "gpu", "tpu"): ``program`` resolved."""
        if self.program == "auto":
            return "cpu" if platform == "cpu" else "accelerator"
        return self.program

    @property
    def horizon(self) -> int:
        return self.steps if self.schedule_steps is None else self.schedule_steps

    def hyperparams(self) -> Hyperparams:
        """The traced numbers of this configuration."""
        return Hyperparams(learning_rate=self.learning_rate, weight_decay=self.weight_decay,
                           momentum=self.momentum)

    def static(self) -> TrainConfig:
        """This configuration with the traced numbers zeroed: the compile-cache key."""
        return dataclasses.replace(self, learning_rate=0.0, weight_decay=0.0, momentum=0.0)


class Hyperparams(NamedTuple):
    """The traced optimiser numbers: float32 scalars, or (P,) arrays (one value per
    candidate) where the trainer runs them; ``TrainConfig``'s fields of the same names.

    The schedule's shape (``final_lr_fraction``, warmup) stays static: it keys the
    compiled program.
    """

    learning_rate: jax.Array
    weight_decay: jax.Array
    momentum: jax.Array


def per_candidate(config: TrainConfig, hyperparams: Hyperparams | Mapping | None,
                  population: int) -> Hyperparams:
    """(P,) float32 host arrays of the traced numbers of P candidates.

    Args:
      config: supplies every number ``hyperparams`` does not give.
      hyperparams: None, a ``Hyperparams`` or a mapping from some of its field names;
        each value a scalar (the same for every candidate) or P values, one each.
      population: P.

    Raises:
      ValueError: an unknown name, a wrong shape, or a value not finite and >= 0.
    """
    given = {} if hyperparams is None else dict(
        hyperparams._asdict() if isinstance(hyperparams, Hyperparams) else hyperparams)
    unknown = sorted(set(given) - set(Hyperparams._fields))
    if unknown:
        raise ValueError(f"unknown hyperparameter {unknown[0]!r}; the trainer takes "
                         f"{', '.join(Hyperparams._fields)}")
    numbers = {}
    for name in Hyperparams._fields:
        value = np.asarray(given.get(name, getattr(config, name)), np.float32)
        if value.shape not in ((), (population,)):
            raise ValueError(f"hyperparameter {name} must be a scalar or one value per "
                             f"candidate ({population}); got shape {value.shape}")
        flat = value.reshape(-1)
        bad = flat[~(np.isfinite(flat) & (flat >= 0))]
        if bad.size:
            raise ValueError(f"hyperparameter {name} must be finite and >= 0; got {bad[0]}")
        numbers[name] = np.broadcast_to(value, (population,)).copy()
    return Hyperparams(**numbers)


def schedule_factor(config: TrainConfig, step: jax.Array) -> jax.Array:
    """Multiplier of the peak learning rate for the update at global step ``step`` (0-based)."""
    step = step.astype(jnp.float32)
    factor = jnp.ones((), jnp.float32)
    warmup = config.warmup_steps
    if config.schedule != "constant":
        span = max(config.horizon - warmup, 1)
        progress = jnp.clip((step - warmup) / span, 0.0, 1.0)
        if config.schedule == "linear":
            shape = 1.0 - progress
        else:
            shape = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        end = config.final_lr_fraction
        factor = end + (1.0 - end) * shape
    if warmup > 0:
        factor = factor * jnp.minimum((step + 1.0) / warmup, 1.0)
    return factor


def make_optimizer(config: TrainConfig, hyper: Hyperparams,
                   step: jax.Array) -> optax.GradientTransformation:
    """The optimiser for the update at global ``step``, built inside the traced program.

    The learning rate is a traced scalar computed from the global step, so the optax
    state holds no schedule counter and continuing a run resumes the schedule exactly.
    """
    lr = hyper.learning_rate * schedule_factor(config, step)
    if config.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=hyper.weight_decay)
    if config.optimizer == "adam":
        return optax.chain(optax.add_decayed_weights(hyper.weight_decay), optax.adam(lr))
    return optax.chain(optax.add_decayed_weights(hyper.weight_decay),
                       optax.sgd(lr, momentum=hyper.momentum))
