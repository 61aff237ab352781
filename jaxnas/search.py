"""The search driver: the one stateful loop of jaxnas.

``search(...)`` runs ask -> train -> tell generation by generation with an
evaluation cache keyed by canonical hash (no architecture is trained twice),
a budget of unique evaluations and/or minutes, an atomic checkpoint after every
generation, a final retraining of the best architecture on train + validation,
and a run directory a person can read, plot, resume and export.

Determinism: an architecture's initial weights come from the run's seed and its
canonical hash, and every candidate of the whole search sees the same
minibatches; so its result does not depend on the population it was trained
with, and a resumed run retraces the uninterrupted one exactly.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from jaxnas import compile_cache as cache_lib
from jaxnas import data as data_lib
from jaxnas import spaces as spaces_lib
from jaxnas import strategies as strategies_lib
from jaxnas.arch import Arch, describe, stack, to_json, unstack
from jaxnas.drawing import arch_png, arch_svg
from jaxnas.importance import run_importance
from jaxnas.nn import ModelConfig, make_model
from jaxnas.train import TrainConfig, evaluate, put_data, train_population

OBJECTIVES = ("loss", "loss+params", "loss+flops")
# Two objectives are (validation loss, log10 of params or FLOPs); strategies that do not
# rank by Pareto dominance, and the choice of the one model to retrain, use this sum.
OBJECTIVE_WEIGHTS = (1.0, 0.1)
# One-shot methods train a supernet instead of asking populations; the driver runs them
# once and then trains and logs their discretised architecture like any other.
ONE_SHOT = ("darts",)


def strategy_names() -> list[str]:
    """Every strategy the driver runs: the ask/tell registry plus the one-shot methods."""
    return strategies_lib.names() + list(ONE_SHOT)
CHECKPOINT_VERSION = 1


class SearchError(Exception):
    """A user mistake or an unusable run directory; the message is one line."""


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search (written to result.json and the checkpoint).

    Attributes:
      space: registered space name.
      strategy: registered strategy name.
      dataset: "digits", "mnist1d" or a path to an .npz file.
      population: architectures per generation (the strategy's batch size).
      generations: stop after this many generations (None: only the budgets).
      budget_evals: stop after this many unique evaluations.
      budget_minutes: stop after this much wall time (None: no time budget).
      steps: training steps per candidate (the highest fidelity for multi-fidelity
        strategies).
      batch_size: training minibatch size.
      learning_rate: peak learning rate.
      optimizer: "adam", "adamw" or "sgd".
      width: cell width of the model.
      cells: cells stacked in the model's macro skeleton.
      norm: "batch" or "layer", the normalisation of conv ops (``ModelConfig.norm``).
      seed: the run's seed; the same seed on the same machine gives the same log.
      objective: "loss", or "loss+params" / "loss+flops" for two objectives
        (validation loss and log10 of the parameter count or FLOPs).
      final_steps: training steps of the final retraining on train + validation.
    """

    space: str = "mlp"
    strategy: str = "evolution"
    dataset: str = "digits"
    population: int = 16
    generations: int | None = None
    budget_evals: int = 96
    budget_minutes: float | None = None
    steps: int = 200
    batch_size: int = 64
    learning_rate: float = 3e-3
    optimizer: str = "adam"
    width: int = 32
    cells: int = 1
    norm: str = "batch"
    seed: int = 0
    objective: str = "loss"
    final_steps: int = 1000

    def check(self) -> None:
        """Raises SearchError naming the first bad value."""
        if self.space not in spaces_lib.names():
            raise SearchError(f"unknown space {self.space!r}; "
                              f"choose one of {', '.join(spaces_lib.names())}")
        if self.strategy not in strategy_names():
            raise SearchError(f"unknown strategy {self.strategy!r}; "
                              f"choose one of {', '.join(strategy_names())}")
        if self.objective not in OBJECTIVES:
            raise SearchError(f"unknown objective {self.objective!r}; "
                              f"choose one of {', '.join(OBJECTIVES)}")
        positive = {"population": self.population, "budget_evals": self.budget_evals,
                    "steps": self.steps, "batch_size": self.batch_size, "width": self.width,
                    "cells": self.cells,
                    "final_steps": self.final_steps}
        for name, value in positive.items():
            if value < 1:
                raise SearchError(f"--{name.replace('_', '-')} must be at least 1; got {value}")
        if self.generations is not None and self.generations < 1:
            raise SearchError(f"--generations must be at least 1; got {self.generations}")
        if self.budget_minutes is not None and not self.budget_minutes > 0:
            raise SearchError(f"--budget-minutes must be positive; got {self.budget_minutes}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise SearchError(f"--lr must be a positive number; got {self.learning_rate}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise SearchError(f"unknown optimizer {self.optimizer!r}; choose adam, adamw or sgd")
        if self.norm not in ("batch", "layer"):
            raise SearchError(f"unknown norm {self.norm!r}; choose batch or layer")
        if self.seed < 0:
            raise SearchError(f"--seed must be non-negative; got {self.seed}")

    @property
    def model(self) -> ModelConfig:
        return ModelConfig(width=self.width, num_cells=self.cells, norm=self.norm)

    @property
    def num_objectives(self) -> int:
        return 1 if self.objective == "loss" else 2


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

    def fitness(self, objective: str) -> tuple[float, ...]:
        loss = self.val_loss if math.isfinite(self.val_loss) else math.inf
        if objective == "loss":
            return (loss,)
        size = self.params if objective == "loss+params" else self.flops
        return (loss, math.log10(max(size, 1)))


@dataclasses.dataclass
class SearchResult:
    """What a search returns: the best architecture, its scores and the history."""

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
        if self.out is not None:
            lines.append(f"run directory: {self.out}")
        return "\n".join(lines)


def _rungs_within(budget: int, population: int, eta: int = 3, most: int = 4) -> int:
    """Rungs of a successive-halving bracket whose evaluations fit the budget.

    A bracket of s + 1 rungs evaluates population * (eta**s + ... + eta + 1) archs.
    """
    rungs = 1
    while rungs < most and population * sum(eta**i for i in range(rungs + 1)) <= budget:
        rungs += 1
    return rungs


def _arch_keys(seed_key: jax.Array, hashes: list[str]) -> jax.Array:
    """(P,) initialisation keys, each a function of the run seed and the arch's hash."""
    return jnp.stack([jax.random.fold_in(seed_key, int(h[:8], 16)) for h in hashes])


def _atomic_write(path: Path, payload: bytes) -> None:
    """Writes ``path`` whole or not at all (a failed write leaves no temporary file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _load_data(dataset: str | tuple, seed: int) -> data_lib.Dataset:
    if isinstance(dataset, data_lib.Dataset):
        return dataset
    if isinstance(dataset, tuple):
        return data_lib.from_arrays(*dataset, seed=seed)
    return data_lib.load(dataset, seed=seed)


class _Run:
    """The mutable state of one search; only ``search`` creates it."""

    def __init__(self, config: SearchConfig, dataset, out: Path | None):
        config.check()
        self.config = config
        self.data = _load_data(dataset, config.seed)
        self.space = spaces_lib.get(config.space)
        self.one_shot = config.strategy in ONE_SHOT
        if self.one_shot and isinstance(self.space, spaces_lib.ChainSpace):
            raise SearchError(f"{config.strategy} needs a cell space; {config.space} is a chain")
        strategy = "random" if self.one_shot else config.strategy  # its state goes unused
        self.strategy = strategies_lib.get(strategy, self.space, **self._strategy_config())
        self.out = out
        self.model = make_model(self.space, self.data.input_shape, self.data.num_classes,
                                config.model)
        self.device_data = put_data(self.data)
        root = jax.random.key(config.seed)
        self.k_strategy, self.k_weights, self.k_batches, self.k_final = jax.random.split(root, 4)
        self.cache: dict[tuple[str, int], Record] = {}
        # hash -> one candidate's train state, kept for multi-fidelity continuation. Not
        # checkpointed: with hash-derived weights and shared minibatches, retraining from
        # scratch to the same step count after a resume gives the same result.
        self.trained: dict[str, Any] = {}
        self.history: list[Record] = []
        self.generation = 0
        self.elapsed = 0.0
        info = self.strategy.info
        self.ask = jax.jit(self.strategy.ask) if info.jittable else self.strategy.ask
        self.tell = jax.jit(self.strategy.tell) if info.jittable else self.strategy.tell
        self.state = self.strategy.init(jax.random.fold_in(self.k_strategy, 0))
        self.key = jax.random.fold_in(self.k_strategy, 1)

    def _strategy_config(self) -> dict:
        config = {"batch_size": self.config.population}
        if self.config.num_objectives > 1:
            config["objectives"] = self.config.num_objectives
            config["weights"] = OBJECTIVE_WEIGHTS
        if self.config.strategy in ("halving", "hyperband"):
            config["max_steps"] = self.config.steps
            config["rungs"] = _rungs_within(self.config.budget_evals, self.config.population)
        if self.config.strategy == "zero_cost":
            from jaxnas.nn.proxies import make_score_fn

            config["score_fn"] = make_score_fn(self.space, self.data,
                                               model_config=self.config.model)
        return config

    def train_config(self, steps: int) -> TrainConfig:
        return TrainConfig(steps=steps, batch_size=min(self.config.batch_size,
                                                       len(self.data.y_train)),
                           optimizer=self.config.optimizer,
                           learning_rate=self.config.learning_rate,
                           schedule_steps=self.config.steps,
                           model=self.config.model)

    def budget_left(self) -> int:
        return self.config.budget_evals - len(self.history)

    def done(self) -> bool:
        c = self.config
        if self.one_shot and self.generation >= 1:
            return True
        if self.budget_left() <= 0:
            return True
        if c.generations is not None and self.generation >= c.generations:
            return True
        return c.budget_minutes is not None and self.elapsed >= 60 * c.budget_minutes

    def step(self) -> list[Record]:
        """One generation: ask, train the unseen architectures, tell. Returns new records."""
        start = time.perf_counter()
        self.key, k_ask, k_tell = jax.random.split(self.key, 3)
        if self.one_shot:
            return self._one_shot(k_ask, start)
        archs, self.state = self.ask(k_ask, self.state)
        steps = (int(self.strategy.fidelity(self.state)) if self.strategy.fidelity
                 else self.config.steps)
        members = unstack(archs)
        hashes = [self.space.canonical_hash(a) for a in members]
        fresh: dict[str, Arch] = {}
        for h, arch in zip(hashes, members, strict=True):
            if (h, steps) not in self.cache and h not in fresh:
                fresh[h] = arch
        fresh = dict(list(fresh.items())[:max(self.budget_left(), 0)])
        new_records = self._train(fresh, steps, start) if fresh else []
        fitness = np.array([
            self.cache[(h, steps)].fitness(self.config.objective) if (h, steps) in self.cache
            else (math.inf,) * self.config.num_objectives
            for h in hashes], np.float32)
        if self.config.num_objectives == 1:
            fitness = fitness[:, 0]
        self.state, _ = self.tell(k_tell, self.state, archs, jnp.asarray(fitness))
        self.generation += 1
        self.elapsed += time.perf_counter() - start
        return new_records

    def _one_shot(self, key: jax.Array, start: float) -> list[Record]:
        from jaxnas.train.darts import DartsConfig, darts

        settings = DartsConfig(steps=self.config.steps * self.config.population,
                               batch_size=self.config.batch_size,
                               weight_lr=self.config.learning_rate,
                               model=self.config.model)
        arch = darts(key, self.space, self.data, settings).arch
        records = self._train({self.space.canonical_hash(arch): arch}, self.config.steps, start)
        self.generation += 1
        self.elapsed += time.perf_counter() - start
        return records

    def _train(self, fresh: dict[str, Arch], steps: int, start: float) -> list[Record]:
        hashes = list(fresh)
        archs = stack(list(fresh.values()))
        groups: dict[int, list[int]] = {}
        for i, h in enumerate(hashes):
            done = int(self.trained[h].step) if h in self.trained else 0
            groups.setdefault(done if done < steps else 0, []).append(i)
        val_loss = np.zeros(len(hashes), np.float32)
        val_acc = np.zeros(len(hashes), np.float32)
        for done, index in sorted(groups.items()):
            group = jax.tree_util.tree_map(lambda leaf, index=index: leaf[np.array(index)], archs)
            state = None
            if done:
                state = _stack_states([self.trained[hashes[i]] for i in index])
            result = train_population(
                _arch_keys(self.k_weights, [hashes[i] for i in index]), self.space, group,
                self.device_data, self.train_config(steps - done), state=state,
                batch_key=self.k_batches)
            val_loss[index], val_acc[index] = result.val_loss, result.val_acc
            if self.strategy.fidelity is not None:
                for j, i in enumerate(index):
                    self.trained[hashes[i]] = _take_state(result.state, j)
        params = np.asarray(self.model.num_params(archs))
        flops = np.asarray(self.model.flops(archs))
        seconds = (time.perf_counter() - start) / len(hashes)
        records = []
        for i, h in enumerate(hashes):
            record = Record(
                generation=self.generation, hash=h,
                arch=to_json(jax.tree_util.tree_map(lambda leaf, i=i: leaf[i], archs),
                             self.space.op_names),
                val_loss=float(val_loss[i]), val_acc=float(val_acc[i]),
                params=int(params[i]), flops=int(flops[i]), steps=steps,
                seconds=round(seconds, 4))
            self.cache[(h, steps)] = record
            self.history.append(record)
            records.append(record)
        return records

    def best(self) -> Record:
        top = max(r.steps for r in self.history)
        finished = [r for r in self.history if r.steps == top]
        weights = OBJECTIVE_WEIGHTS[:self.config.num_objectives]
        return min(finished, key=lambda r: (
            sum(w * f for w, f in zip(weights, r.fitness(self.config.objective), strict=True)),
            r.hash))


    def checkpoint_bytes(self, log_bytes: int) -> bytes:
        payload = {
            "version": CHECKPOINT_VERSION,
            "config": json.dumps(dataclasses.asdict(self.config)),
            "generation": self.generation,
            "elapsed": self.elapsed,
            "log_bytes": log_bytes,
            "key": np.asarray(jax.random.key_data(self.key)),
            "strategy": {str(i): np.asarray(leaf) for i, leaf in
                         enumerate(jax.tree_util.tree_leaves(_keys_to_data(self.state)))},
        }
        return serialization.msgpack_serialize(payload)

    def restore(self, blob: bytes) -> int:
        payload = serialization.msgpack_restore(blob)
        if payload.get("version") != CHECKPOINT_VERSION:
            raise SearchError("checkpoint has an unknown format version")
        self.generation = int(payload["generation"])
        self.elapsed = float(payload["elapsed"])
        self.key = jax.random.wrap_key_data(jnp.asarray(payload["key"]))
        self.state = _unflatten_like(self.state, payload["strategy"],
                                     fixed_shapes=self.strategy.info.jittable)
        return int(payload["log_bytes"])


def _is_key(leaf) -> bool:
    return jnp.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key)


def _keys_to_data(tree):
    return jax.tree_util.tree_map(
        lambda leaf: jax.random.key_data(leaf) if _is_key(leaf) else leaf, tree)


def _unflatten_like(like, stored: dict, fixed_shapes: bool):
    """Rebuilds a pytree shaped like ``like`` from its numbered, key-free leaves.

    Host-side strategies (not jittable) may hold arrays whose length grows during a
    search; their shapes are then not compared with the fresh state's.
    """
    leaves, treedef = jax.tree_util.tree_flatten(like)
    if len(stored) != len(leaves):
        raise SearchError(f"checkpoint holds {len(stored)} strategy arrays; this strategy "
                          f"has {len(leaves)}")
    restored = []
    for i, ref in enumerate(leaves):
        value = np.asarray(stored[str(i)])
        if _is_key(ref):
            restored.append(jax.random.wrap_key_data(jnp.asarray(value)))
            continue
        wrong_shape = fixed_shapes and value.shape != np.shape(ref)
        if wrong_shape or value.dtype != np.asarray(ref).dtype:
            raise SearchError("checkpoint strategy state does not match the strategy")
        restored.append(jnp.asarray(value) if fixed_shapes else value)
    return jax.tree_util.tree_unflatten(treedef, restored)


def _take_state(state, index: int):
    """One candidate's slice of a population TrainState (step stays shared)."""
    return state._replace(
        params=jax.tree_util.tree_map(lambda leaf: leaf[index], state.params),
        opt_state=jax.tree_util.tree_map(lambda leaf: leaf[index], state.opt_state),
        batch_key=state.batch_key[index], diverged=state.diverged[index])


def _stack_states(states):
    first = states[0]
    return first._replace(
        params=jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves),
                                      *[s.params for s in states]),
        opt_state=jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves),
                                         *[s.opt_state for s in states]),
        batch_key=jnp.stack([s.batch_key for s in states]),
        diverged=jnp.stack([s.diverged for s in states]))


class SearchInterrupted(Exception):
    """Ctrl-C: the search stopped after writing its checkpoint."""


_CHECKPOINT = Path("checkpoint") / "state.msgpack"
_LOCK = ".lock"


def search(space: str = SearchConfig.space, strategy: str = SearchConfig.strategy,
           data: str | tuple | data_lib.Dataset = SearchConfig.dataset,
           budget: int = SearchConfig.budget_evals, seed: int = 0,
           out: str | os.PathLike | None = None, *, resume: bool = False,
           progress: Callable[[dict], None] | None = None,
           compile_cache: str | os.PathLike | bool | None = None, **options) -> SearchResult:
    """Runs a whole search and returns its result.

    Args:
      space: registered space name.
      strategy: registered strategy name.
      data: "digits", "mnist1d", a path to an .npz file, an ``(x, y)`` tuple or a
        ``jaxnas.data.Dataset``.
      budget: unique evaluations.
      seed: the run's seed.
      out: run directory to create (None: keep everything in memory).
      resume: continue the run in ``out`` from its checkpoint; every other argument is
        then read from the checkpoint.
      progress: called after every generation with a dict of running figures.
      compile_cache: JAX's persistent compilation cache, so that the next search on
        this machine compiles nothing: a directory, True for the default
        (``~/.cache/jaxnas/xla``), False to leave it off; None reads
        ``$JAXNAS_COMPILE_CACHE`` (a directory or "off"), else the default.
      **options: other ``SearchConfig`` fields (population, steps, ...).

    Raises:
      SearchError, DataError, ArchError: bad input, one line, nothing written.
      SearchInterrupted: Ctrl-C; the checkpoint of the last generation is on disk.
    """
    out = None if out is None else Path(out)
    try:
        cache_lib.enable(compile_cache)
    except OSError as error:
        raise SearchError(f"cannot use the compilation cache: {error}; choose another "
                          "directory or turn it off (--compile-cache off)") from None
    if resume:
        if out is None:
            raise SearchError("resume needs the run directory")
        config, dataset = _read_config(out)
        if config.dataset == "arrays":
            if isinstance(data, str):
                raise SearchError(f"{out} was searched on in-memory data; resume it from Python "
                                  "with the same data: jaxnas.search(data=..., out=DIR, "
                                  "resume=True)")
            dataset = data
    else:
        dataset_name = data if isinstance(data, str) else "arrays"
        try:
            config = SearchConfig(space=space, strategy=strategy, dataset=dataset_name,
                                  budget_evals=budget, seed=seed, **options)
        except TypeError as error:
            raise SearchError(str(error)) from None
        dataset = data
        if out is not None and out.exists() and (not out.is_dir() or _in_use(out)):
            raise SearchError(_ALREADY_EXISTS.format(out=out))
    run = _Run(config, dataset, out)
    lock = None if out is None else _lock_run_directory(out, resume)
    try:
        return _drive(run, out, resume, progress)
    except OSError as error:
        if out is None or error.errno is None:
            raise
        raise SearchError(f"cannot write {out}: {error.strerror}; what is on disk is "
                          "consistent: fix that and continue with jaxnas search --resume "
                          f"{out}") from None
    finally:
        if lock is not None:
            lock.close()


def _drive(run: _Run, out: Path | None, resume: bool,
           progress: Callable[[dict], None] | None) -> SearchResult:
    """The loop of ``search``: generations until the budget is spent, then the result."""
    interrupted = []
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum, frame):
        if interrupted:  # a second Ctrl-C stops at once
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        interrupted.append(True)

    in_main = _in_main_thread()
    if in_main:
        signal.signal(signal.SIGINT, on_interrupt)
    log_file = None
    try:
        if out is not None:
            log_file = _open_run_directory(run, out, resume)
        while not run.done():
            records = run.step()
            if log_file is not None:
                for record in records:
                    log_file.write((json.dumps(dataclasses.asdict(record)) + "\n").encode())
                log_file.flush()
                os.fsync(log_file.fileno())
                _atomic_write(out / _CHECKPOINT, run.checkpoint_bytes(log_file.tell()))
            if progress is not None:
                progress(_progress(run))
            if interrupted:
                raise SearchInterrupted(
                    f"stopped after generation {run.generation}; continue with "
                    f"jaxnas search --resume {out}" if out else "stopped")
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
        if log_file is not None:
            log_file.close()
    if not run.history:
        raise SearchError("the budget allowed no evaluation")
    return _finish(run)


_ALREADY_EXISTS = "{out} already exists; pass --resume to continue it or choose another --out"


def _in_use(out: Path) -> bool:
    """Whether a directory holds anything but a lock (a new run must start empty)."""
    return any(path.name != _LOCK for path in out.iterdir())


def _lock_run_directory(out: Path, resume: bool):
    """Creates ``out`` if needed and locks it for this process (``out/.lock``, an
    advisory ``flock`` the OS releases when the process ends); returns the open lock.

    Raises SearchError, writing nothing else, when the directory cannot be created,
    another search holds it, or a new run would write into a used directory.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = open(out / _LOCK, "a+")  # noqa: SIM115 - held for the whole run
    except OSError as error:
        raise SearchError(f"cannot use {out} as the run directory: "
                          f"{error.strerror or error}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise SearchError(f"{out} is in use by another search (process {holder}); wait for "
                          "it to end or choose another --out") from None
    if not resume and _in_use(out):
        lock.close()
        raise SearchError(_ALREADY_EXISTS.format(out=out))
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def _open_run_directory(run: _Run, out: Path, resume: bool):
    """Creates (or restores) the run directory; returns the log opened for appending."""
    if resume:
        log_bytes = _restore(run, out)
    else:
        (out / "checkpoint").mkdir(exist_ok=True)
        log_bytes = 0
        _atomic_write(out / _CHECKPOINT, run.checkpoint_bytes(0))
        _atomic_write(out / "log.jsonl", b"")
    log_file = open(out / "log.jsonl", "r+b")  # noqa: SIM115 - the caller closes it
    log_file.truncate(log_bytes)
    log_file.seek(log_bytes)
    return log_file


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _progress(run: _Run) -> dict:
    best = run.best()
    c = run.config
    minutes_left = None if c.budget_minutes is None else max(
        0.0, c.budget_minutes - run.elapsed / 60)
    return {"generation": run.generation, "evaluations": len(run.history),
            "budget_evals": c.budget_evals, "evals_per_s": len(run.history) / max(run.elapsed,
                                                                                  1e-9),
            "best_val_loss": best.val_loss, "best_val_acc": best.val_acc,
            "elapsed_s": run.elapsed, "minutes_left": minutes_left}


def _read_config(out: Path) -> tuple[SearchConfig, str]:
    blob = _read_checkpoint(out)
    try:
        fields = json.loads(serialization.msgpack_restore(blob)["config"])
        config = SearchConfig(**fields)
    except Exception as error:  # any decoding problem means the checkpoint is unusable
        raise SearchError(f"{out / _CHECKPOINT} is corrupt ({type(error).__name__})") from None
    if (out / "result.json").exists():
        raise SearchError(f"{out} holds a finished search; see jaxnas report {out}")
    return config, config.dataset


def _read_checkpoint(out: Path) -> bytes:
    path = out / _CHECKPOINT
    if not path.is_file():
        raise SearchError(f"{out} is not a run directory (no {_CHECKPOINT})")
    return path.read_bytes()


def _restore(run: _Run, out: Path) -> int:
    try:
        log_bytes = run.restore(_read_checkpoint(out))
    except SearchError:
        raise
    except Exception as error:  # msgpack / structure mismatch: the file is damaged
        raise SearchError(f"{out / _CHECKPOINT} is corrupt ({type(error).__name__})") from None
    if not (out / "log.jsonl").is_file():
        raise SearchError(f"{out} is not a run directory (no log.jsonl)")
    log = (out / "log.jsonl").read_bytes()[:log_bytes]
    for line in log.decode().splitlines():
        record = Record(**json.loads(line))
        run.cache[(record.hash, record.steps)] = record
        run.history.append(record)
    return log_bytes


def _finish(run: _Run) -> SearchResult:
    best = run.best()
    arch = _arch_from_record(run.space, best)
    trainval = dataclasses.replace(run.data, x_train=run.data.x_trainval,
                                   y_train=run.data.y_trainval)
    final = TrainConfig(steps=run.config.final_steps,
                        batch_size=min(run.config.batch_size, len(trainval.y_train)),
                        optimizer=run.config.optimizer, learning_rate=run.config.learning_rate,
                        schedule="cosine", model=run.config.model)
    single = stack([arch])
    # One candidate: on several devices the others would train padding copies of it.
    result = train_population(_arch_keys(run.k_final, [best.hash]), run.space, single,
                              trainval, final, batch_key=run.k_batches,
                              devices=jax.devices()[:1])
    test_loss, test_acc = evaluate(run.space, single, result.params, run.data.x_test,
                                   run.data.y_test, run.data.num_classes, final)
    outcome = SearchResult(
        space=run.space, best_arch=arch, best=best, test_accuracy=float(test_acc[0]),
        test_loss=float(test_loss[0]), history=list(run.history), config=run.config,
        wall_seconds=run.elapsed, generations=run.generation, out=run.out)
    if run.out is not None:
        params = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf[0]), result.params)
        _write_outputs(run, outcome, params)
    return outcome


def _arch_from_record(space, record: Record) -> Arch:
    from jaxnas.arch import from_json

    return jax.tree_util.tree_map(np.asarray, from_json(record.arch, space.op_names))


def _write_outputs(run: _Run, outcome: SearchResult, params) -> None:
    out = run.out
    best_dir = out / "best"
    best_dir.mkdir(exist_ok=True)
    arch_json = {"space": run.space.name, **to_json(outcome.best_arch, run.space.op_names)}
    _atomic_write(best_dir / "arch.json", json.dumps(arch_json, indent=1).encode())
    _atomic_write(best_dir / "params.msgpack", serialization.to_bytes(params))
    model = {"space": run.space.name, "input_shape": list(run.data.input_shape),
             "num_classes": run.data.num_classes, "width": run.config.width,
             "cells": run.config.cells, "norm": run.config.norm,
             "mean": None if run.data.mean is None else run.data.mean.tolist(),
             "std": None if run.data.std is None else run.data.std.tolist()}
    _atomic_write(best_dir / "model.json", json.dumps(model).encode())
    _atomic_write(best_dir / "arch.svg", arch_svg(outcome.best_arch, run.space.op_names,
                                                  title=outcome.best.hash).encode())
    _atomic_write(best_dir / "arch.png", arch_png(outcome.best_arch, run.space.op_names))
    devices = jax.devices()
    from jaxnas import __version__

    result = {
        "best": {"hash": outcome.best.hash, "arch": outcome.best.arch,
                 "val_loss": outcome.best.val_loss, "val_acc": outcome.best.val_acc,
                 "params": outcome.best.params, "flops": outcome.best.flops},
        "val_loss": outcome.best.val_loss, "val_acc": outcome.best.val_acc,
        "test_accuracy": outcome.test_accuracy, "test_loss": outcome.test_loss,
        "config": dataclasses.asdict(run.config),
        "versions": {"jaxnas": __version__, "jax": jax.__version__},
        "device": {"kind": devices[0].device_kind, "platform": devices[0].platform,
                   "count": len(devices)},
        "wall_seconds": round(outcome.wall_seconds, 3), "generations": outcome.generations,
        "unique_evaluations": len(outcome.history),
        "importance": run_importance([dataclasses.asdict(r) for r in outcome.history],
                                     run.space.op_names, edge_labelled=run.space.edge_labelled),
    }
    _atomic_write(out / "result.json", json.dumps(result, indent=1).encode())
    write_plots(out, outcome.history)


def read_log(out: str | os.PathLike) -> list[Record]:
    """The evaluation records of a run directory."""
    path = Path(out) / "log.jsonl"
    if not path.is_file():
        raise SearchError(f"{out} is not a run directory (no log.jsonl)")
    return [Record(**json.loads(line)) for line in path.read_text().splitlines() if line]


def write_plots(out: Path, history: list[Record]) -> list[Path]:
    """Best-so-far loss against evaluations and time, accuracy against params (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    loss = np.array([r.val_loss if math.isfinite(r.val_loss) else np.nan for r in history])
    best = np.fmin.accumulate(np.where(np.isnan(loss), np.inf, loss))
    seconds = np.cumsum([r.seconds for r in history])
    written = []
    for name, x, label in (("best_vs_evaluations.png", np.arange(1, len(best) + 1),
                            "unique evaluations"),
                           ("best_vs_time.png", seconds, "search seconds")):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(x, best, drawstyle="steps-post")
        ax.set_xlabel(label)
        ax.set_ylabel("best validation loss so far")
        fig.tight_layout()
        fig.savefig(plots / name, dpi=100)
        plt.close(fig)
        written.append(plots / name)
    params = np.array([r.params for r in history], float)
    acc = np.array([r.val_acc for r in history])
    front = _pareto_front(params, acc)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter(params, acc, s=10, alpha=0.6, label="evaluated")
    ax.plot(params[front], acc[front], "r.-", drawstyle="steps-post", label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plots / "accuracy_vs_params.png", dpi=100)
    plt.close(fig)
    written.append(plots / "accuracy_vs_params.png")
    return written


def _pareto_front(cost: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Indices, by increasing cost, of points no other point beats in both."""
    order = np.lexsort((-gain, cost))
    front, best = [], -np.inf
    for i in order:
        if gain[i] > best:
            front.append(i)
            best = gain[i]
    return np.array(front, int)


class Predictor:
    """A trained architecture loaded from a run directory (``jaxnas.load``)."""

    def __init__(self, out: str | os.PathLike):
        best = Path(out) / "best"
        if not (best / "model.json").is_file():
            raise SearchError(f"{out} holds no trained model (no best/model.json)")
        meta = json.loads((best / "model.json").read_text())
        self.space = spaces_lib.get(meta["space"])
        from jaxnas.arch import from_json

        self.arch = from_json(json.loads((best / "arch.json").read_text()),
                              self.space.op_names)
        self.input_shape = tuple(meta["input_shape"])
        self.num_classes = int(meta["num_classes"])
        # Runs written before batch norm existed used the layer norm.
        self.model_config = ModelConfig(width=int(meta["width"]),
                                        num_cells=int(meta.get("cells", 1)),
                                        norm=meta.get("norm", "layer"))
        self.model = make_model(self.space, self.input_shape, self.num_classes,
                                self.model_config)
        template = self.model.init(jax.random.key(0))
        self.params = serialization.from_bytes(template, (best / "params.msgpack").read_bytes())
        self.mean = None if meta["mean"] is None else np.asarray(meta["mean"], np.float32)
        self.std = None if meta["std"] is None else np.asarray(meta["std"], np.float32)
        self._logits = jax.jit(lambda params, x: self.model.apply(params, self.arch, x))

    def logits(self, x: np.ndarray, normalised: bool = False) -> np.ndarray:
        """(B, num_classes) logits for raw inputs x (B, *input_shape)."""
        x = np.asarray(x, np.float32)
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"inputs must have shape (B, {', '.join(map(str, self.input_shape))})"
                             f"; got {x.shape}")
        if not normalised and self.mean is not None:
            x = (x - self.mean) / self.std
        return np.asarray(self._logits(self.params, x))

    def predict(self, x: np.ndarray, normalised: bool = False) -> np.ndarray:
        """(B,) predicted class ids."""
        return self.logits(x, normalised).argmax(-1)


def load(out: str | os.PathLike) -> Predictor:
    """The best trained model of a finished run directory."""
    return Predictor(out)


__all__ = ["OBJECTIVES", "Predictor", "Record", "SearchConfig", "SearchError",
           "SearchInterrupted", "SearchResult", "load", "read_log", "search", "write_plots"]
