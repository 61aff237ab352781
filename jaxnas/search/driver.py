"""The search loop: ``search(...)`` runs generations until a budget is spent, then
retrains the best architecture on train + validation and tests it once.

Every generation is logged and checkpointed atomically in the run directory, so a
search stopped by Ctrl-C (or anything else) continues with ``resume=True``.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Callable, Sequence

import jax
import numpy as np

from jaxnas import compile_cache as cache_lib
from jaxnas import data as data_lib
from jaxnas import spaces as spaces_lib
from jaxnas import strategies as strategies_lib
from jaxnas.arch import Arch, stack
from jaxnas.search.config import (
    Record,
    SearchConfig,
    SearchError,
    SearchInterrupted,
    SearchResult,
    SettingError,
    unknown_space_hint,
)
from jaxnas.search.hyper import canonical
from jaxnas.search.initial import read_initial
from jaxnas.search.outputs import best_files, result_summary
from jaxnas.search.run import Run, arch_keys
from jaxnas.search.rundir import RunDir, already_exists
from jaxnas.search.tracking import MLflowTracker, TensorBoardTracker, open_tracker
from jaxnas.train import TrainConfig, evaluate, train_population

Factory = Callable[..., strategies_lib.Strategy]


def search(space: str | spaces_lib.Space = SearchConfig.space,
           strategy: str | Factory = SearchConfig.strategy,
           data: str | os.PathLike | tuple | data_lib.Dataset = SearchConfig.dataset,
           budget: int = SearchConfig.budget_evals, seed: int = SearchConfig.seed,
           out: str | os.PathLike | None = None, *, resume: bool = False,
           strategy_options: dict | None = None,
           progress: Callable[[dict], None] | None = None,
           compile_cache: str | os.PathLike | bool | None = None, initial: Sequence = (),
           track: tuple[str, str | os.PathLike] | None = None, **options) -> SearchResult:
    """Runs a whole search and returns its result.

    Args:
      space: a registered space name (``jaxnas.spaces.register``) or a ``Space``.
      strategy: a registered strategy name (``jaxnas.strategies.register``) or a
        strategy factory ``factory(space, **context, **options) -> Strategy``.
      data: "digits", "mnist1d", a registered dataset (``jaxnas.data.register``), a
        path to an .npz file, an ``(x, y)`` tuple or a ``jaxnas.data.Dataset``.
      budget: unique evaluations.
      seed: the run's seed.
      out: run directory to create (None: keep everything in memory).
      resume: continue the run in ``out`` from its checkpoint; every other setting is
        then read from the checkpoint (pass the same objects again for a space, a
        strategy or data given as objects).
      strategy_options: keyword arguments of the strategy's factory, e.g.
        ``{"tournament_size": 3}``; an unknown one is refused with the valid ones listed.
      progress: called after every generation with a dict of running figures.
      compile_cache: JAX's persistent compilation cache, so that the next search on
        this machine compiles nothing: a directory, True for the default
        (``~/.cache/jaxnas/xla``), False to leave it off; None reads
        ``$JAXNAS_COMPILE_CACHE`` (a directory or "off"), else the default.
      initial: architectures to evaluate first, in order, from which the strategy
        starts: files, NAS-Bench-201 strings, architecture JSON objects, ``Arch``
        objects or NAS-Bench-101 ``(matrix, ops)`` pairs (``jaxnas.search.initial``).
      track: ``("tensorboard", DIR)`` logs every evaluated candidate and the progress
        into the TensorBoard log directory DIR, ``("mlflow", DIR)`` into an MLflow store
        in DIR (``jaxnas.search.tracking``); they need the ``track`` and ``mlflow``
        extras. None tracks nothing. Resuming with the same DIR appends.
      **options: other ``SearchConfig`` fields (population, steps, ...); a
        ``batch_size`` larger than the training split is refused;
        ``hyperparameters={"learning_rate": "1e-4:3e-2:log"}`` is a joint search
        (``SearchConfig.hyperparameters``, ``jaxnas.search.hyper``).

    Raises:
      SearchError, DataError, ArchError: bad input, one line, nothing written
        (``SettingError`` names the keyword; ``RunDirectoryError`` the damaged file of
        the run directory to resume).
      SearchInterrupted: Ctrl-C; the checkpoint of the last generation is on disk.
    """
    rundir = None if out is None else RunDir(out)
    if isinstance(data, os.PathLike):
        data = os.fspath(data)
    space_object = None if isinstance(space, str) else space
    factory = None if isinstance(strategy, str) else strategy
    _enable_cache(compile_cache)
    if resume:
        config, dataset = _resumed_config(rundir, data)
    else:
        config = _new_config(space_object.name if space_object else space,
                             _factory_name(factory) if factory else strategy, data, budget,
                             seed, strategy_options, options)
        dataset = data
        _check_new(rundir)
    config.check()
    _check_names(config, space_object, factory, resume)
    if not resume:
        config = dataclasses.replace(config, initial=read_initial(
            initial, space_object or spaces_lib.get(config.space)))
    tracker = None if track is None else open_tracker(
        *track, config, (space_object or spaces_lib.get(config.space)).op_names)
    loaded = _load_data(dataset, config.seed)
    if not resume:
        _check_batch_size(config, loaded)
    weights = rundir.weights() if rundir is not None and config.inherit else None
    run = Run(config, loaded, None if rundir is None else rundir.path, space_object, factory,
              weights=weights)
    if rundir is not None:
        rundir.lock(resume)
    try:
        return _drive(run, rundir, resume, progress, tracker)
    except OSError as error:
        if out is None or error.errno is None:
            raise
        raise SearchError(f"cannot write {out}: {error.strerror}; what is on disk is "
                          "consistent: fix that and continue with jaxnas search --resume "
                          f"{out}") from None
    finally:
        if rundir is not None:
            rundir.close()
        if tracker is not None:
            tracker.close()


def _enable_cache(compile_cache: str | os.PathLike | bool | None) -> None:
    try:
        cache_lib.enable(compile_cache)
    except OSError as error:
        raise SearchError(f"cannot use the compilation cache: {error}; choose another "
                          "directory or turn it off (--compile-cache off)") from None


def _check_new(rundir: RunDir | None) -> None:
    """A new run's directory must not exist yet, or be empty."""
    if rundir is not None and rundir.path.exists() and (
            not rundir.path.is_dir() or rundir.in_use()):
        raise SearchError(already_exists(rundir.path))


def _resumed_config(rundir: RunDir | None, data) -> tuple[SearchConfig, object]:
    """The configuration of the run to resume, and the data to load for it."""
    if rundir is None:
        raise SearchError("resume needs the run directory")
    config = rundir.unfinished_config()
    if config.dataset != "arrays":
        return config, config.dataset
    if isinstance(data, str):
        raise SearchError(f"{rundir} was searched on in-memory data; resume it from Python "
                          "with the same data: jaxnas.search(data=..., out=DIR, resume=True)")
    return config, data


def _new_config(space: str, strategy: str, data, budget: int, seed: int,
                strategy_options: dict | None, options: dict) -> SearchConfig:
    if options.get("hyperparameters"):
        try:
            options = {**options, "hyperparameters": canonical(options["hyperparameters"])}
        except ValueError as error:
            raise SettingError("hyperparameters", f"{{name}}: {error}") from None
    try:
        return SearchConfig(space=space, strategy=strategy,
                            dataset=data if isinstance(data, str) else "arrays",
                            budget_evals=budget, seed=seed,
                            strategy_options=dict(strategy_options or {}), **options)
    except TypeError as error:
        raise SearchError(str(error)) from None


def _check_batch_size(config: SearchConfig, data: data_lib.Dataset) -> None:
    """A batch larger than the training split is refused (it could only be cut down)."""
    examples = len(data.y_train)
    if config.batch_size > examples:
        raise SettingError("batch_size", f"{{name}} {config.batch_size} is larger than the "
                           f"training split ({examples} examples); choose at most {examples}")


def _factory_name(factory: Factory) -> str:
    return getattr(factory, "__name__", type(factory).__name__)


def _check_names(config: SearchConfig, space: spaces_lib.Space | None,
                 factory: Factory | None, resume: bool) -> None:
    """Raises SearchError for a space or strategy that is neither registered nor given, or
    given under another name than the run's."""
    if space is None and config.space not in spaces_lib.names():
        if resume:
            raise SearchError(unknown_space_hint(config.space))
        raise SearchError(f"unknown space {config.space!r}; "
                          f"choose one of {', '.join(spaces_lib.names())}")
    if space is not None and space.name != config.space:
        raise SearchError(f"the run searched the space {config.space!r}; got {space.name!r}")
    if factory is None and config.strategy not in strategies_lib.names():
        if resume:
            raise SearchError(f"the run used the strategy {config.strategy!r}, which is not "
                              "registered here; import the module that registers it (jaxnas "
                              "--import MODULE ..., or import it in Python first)")
        raise SearchError(f"unknown strategy {config.strategy!r}; "
                          f"choose one of {', '.join(strategies_lib.names())}")
    if factory is not None and _factory_name(factory) != config.strategy:
        raise SearchError(f"the run used the strategy {config.strategy!r}; got "
                          f"{_factory_name(factory)!r}")


def _load_data(dataset: str | tuple | data_lib.Dataset, seed: int) -> data_lib.Dataset:
    if isinstance(dataset, data_lib.Dataset):
        return dataset
    if isinstance(dataset, tuple):
        return data_lib.from_arrays(*dataset, seed=seed)
    return data_lib.load(dataset, seed=seed)


def _drive(run: Run, rundir: RunDir | None, resume: bool,
           progress: Callable[[dict], None] | None,
           tracker: TensorBoardTracker | MLflowTracker | None) -> SearchResult:
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
    try:
        if rundir is not None and resume:
            run.restore(rundir.reopen(run.snapshot(), fixed_shapes=run.strategy.info.jittable))
        elif rundir is not None:
            rundir.create(run.config, run.snapshot())
        if tracker is not None:  # a resumed run's records that were not tracked yet
            tracker.update(run.history)
        while not run.done():
            records = run.step()
            if rundir is not None:
                rundir.commit(records, run.snapshot(), run.config)
            if tracker is not None:
                tracker.update(run.history)
            if progress is not None:
                progress(_progress(run))
            if interrupted:
                raise SearchInterrupted(
                    f"stopped after generation {run.generation}; continue with "
                    f"jaxnas search --resume {rundir}" if rundir else "stopped")
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    if not run.history:
        raise SearchError("the budget allowed no evaluation")
    result = _finish(run, rundir)
    if tracker is not None:
        tracker.finish(result)
    return result


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _progress(run: Run) -> dict:
    best = run.best()
    c = run.config
    minutes_left = None if c.budget_minutes is None else max(
        0.0, c.budget_minutes - run.elapsed / 60)
    return {"generation": run.generation, "evaluations": len(run.history),
            "budget_evals": c.budget_evals, "evals_per_s": len(run.history) / max(run.elapsed,
                                                                                  1e-9),
            "best_val_loss": best.val_loss, "best_val_acc": best.val_acc,
            "elapsed_s": run.elapsed, "minutes_left": minutes_left}


def _finish(run: Run, rundir: RunDir | None) -> SearchResult:
    best = run.best()
    arch = _arch_from_record(run.space, best)
    trainval = dataclasses.replace(run.data, x_train=run.data.x_trainval,
                                   y_train=run.data.y_trainval)
    # The winner's own training numbers in a joint search, else the run's.
    numbers = {"learning_rate": run.config.learning_rate, **(best.hyperparameters or {})}
    final = TrainConfig(steps=run.config.final_steps,
                        batch_size=min(run.config.batch_size, len(trainval.y_train)),
                        optimizer=run.config.optimizer, schedule="cosine",
                        model=run.config.model, program=run.config.program, **numbers)
    single = stack([arch])
    # One candidate: on several devices the others would train padding copies of it.
    result = train_population(arch_keys(run.k_final, [best.hash]), run.space, single,
                              trainval, final, batch_key=run.k_batches,
                              devices=jax.devices()[:1])
    test_loss, test_acc = evaluate(run.space, single, result.params, run.data.x_test,
                                   run.data.y_test, run.data.num_classes, final)
    outcome = SearchResult(
        space=run.space, best_arch=arch, best=best, test_accuracy=float(test_acc[0]),
        test_loss=float(test_loss[0]), history=list(run.history), config=run.config,
        wall_seconds=run.elapsed, generations=run.generation, out=run.out,
        hyperparameters={name: float(value)
                         for name, value in final.hyperparams()._asdict().items()
                         if name != "momentum" or final.optimizer == "sgd"})
    if rundir is not None:
        params = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf[0]), result.params)
        rundir.write_best(best_files(outcome, run.data, params))
        rundir.write_result(result_summary(outcome), outcome.history)
    return outcome


def _arch_from_record(space, record: Record) -> Arch:
    from jaxnas.arch import from_json

    return jax.tree_util.tree_map(np.asarray, from_json(record.arch, space.op_names))
