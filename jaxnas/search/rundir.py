"""The run directory: lock, atomic writes, log, checkpoint encoding and the outputs.

Layout: ``log.jsonl`` (one JSON line per evaluation), ``checkpoint/state.msgpack``
(what ``--resume`` continues from), ``result.json``, ``best/`` (the retrained
model), ``plots/`` and, with weight inheritance, ``weights/HASH.msgpack`` (each
evaluated candidate's trained parameters, the parents of later children). Every
file is written whole or not at all.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from jaxnas.drawing import arch_png, arch_svg
from jaxnas.importance import run_importance
from jaxnas.search.config import Record, SearchConfig, SearchError
from jaxnas.search.plots import write_plots

CHECKPOINT = Path("checkpoint") / "state.msgpack"
WEIGHTS = Path("weights")
CHECKPOINT_VERSION = 1
LOCK = ".lock"
ALREADY_EXISTS = "{out} already exists; pass --resume to continue it or choose another --out"


def atomic_write(path: Path, payload: bytes) -> None:
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


def in_use(out: Path) -> bool:
    """Whether a directory holds anything but a lock (a new run must start empty)."""
    return any(path.name != LOCK for path in out.iterdir())


def lock_run_directory(out: Path, resume: bool):
    """Creates ``out`` if needed and locks it for this process (``out/.lock``, an
    advisory ``flock`` the OS releases when the process ends); returns the open lock.

    Raises SearchError, writing nothing else, when the directory cannot be created,
    another search holds it, or a new run would write into a used directory.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = open(out / LOCK, "a+")  # noqa: SIM115 - held for the whole run
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
    if not resume and in_use(out):
        lock.close()
        raise SearchError(ALREADY_EXISTS.format(out=out))
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def open_run_directory(run, out: Path, resume: bool):
    """Creates (or restores ``run`` from) the run directory; returns the log opened for
    appending."""
    if resume:
        log_bytes = _restore(run, out)
    else:
        (out / "checkpoint").mkdir(exist_ok=True)
        if run.config.inherit:
            (out / WEIGHTS).mkdir(exist_ok=True)
        log_bytes = 0
        atomic_write(out / CHECKPOINT, checkpoint_bytes(run, 0))
        atomic_write(out / "log.jsonl", b"")
    log_file = open(out / "log.jsonl", "r+b")  # noqa: SIM115 - the caller closes it
    log_file.truncate(log_bytes)
    log_file.seek(log_bytes)
    return log_file


def append_records(log_file, records: list[Record]) -> None:
    """Appends evaluation records to the open log and syncs it to disk."""
    for record in records:
        log_file.write((json.dumps(record.to_json()) + "\n").encode())
    log_file.flush()
    os.fsync(log_file.fileno())


def checkpoint_bytes(run, log_bytes: int) -> bytes:
    """The checkpoint of ``run`` after ``log_bytes`` bytes of its log."""
    payload = {
        "version": CHECKPOINT_VERSION,
        "config": json.dumps(dataclasses.asdict(run.config)),
        "generation": run.generation,
        "elapsed": run.elapsed,
        "log_bytes": log_bytes,
        "key": np.asarray(jax.random.key_data(run.key)),
        "strategy": {str(i): np.asarray(leaf) for i, leaf in
                     enumerate(jax.tree_util.tree_leaves(_keys_to_data(run.state)))},
    }
    return serialization.msgpack_serialize(payload)


def params_bytes(params) -> bytes:
    """A parameter pytree (dicts and lists of arrays) as msgpack, leaves in tree order."""
    leaves = jax.tree_util.tree_leaves(params)
    return serialization.msgpack_serialize({str(i): np.asarray(v) for i, v in enumerate(leaves)})


def read_params(path: Path, like):
    """The pytree ``params_bytes`` wrote, shaped like ``like`` (leading axes may differ)."""
    stored = serialization.msgpack_restore(path.read_bytes())
    leaves, treedef = jax.tree_util.tree_flatten(like)
    return jax.tree_util.tree_unflatten(treedef, [stored[str(i)] for i in range(len(leaves))])


def read_config(out: Path) -> SearchConfig:
    """The configuration of the unfinished run in ``out``."""
    blob = _read_checkpoint(out)
    try:
        fields = json.loads(serialization.msgpack_restore(blob)["config"])
        config = SearchConfig(**fields)
    except Exception as error:  # any decoding problem means the checkpoint is unusable
        raise SearchError(f"{out / CHECKPOINT} is corrupt ({type(error).__name__})") from None
    if (out / "result.json").exists():
        raise SearchError(f"{out} holds a finished search; see jaxnas report {out}")
    return config


def read_log(out: str | os.PathLike) -> list[Record]:
    """The evaluation records of a run directory."""
    path = Path(out) / "log.jsonl"
    if not path.is_file():
        raise SearchError(f"{out} is not a run directory (no log.jsonl)")
    return [Record(**json.loads(line)) for line in path.read_text().splitlines() if line]


def _read_checkpoint(out: Path) -> bytes:
    path = out / CHECKPOINT
    if not path.is_file():
        raise SearchError(f"{out} is not a run directory (no {CHECKPOINT})")
    return path.read_bytes()


def _restore(run, out: Path) -> int:
    """Restores ``run``'s counters, key, strategy state and evaluation cache."""
    try:
        payload = serialization.msgpack_restore(_read_checkpoint(out))
        if payload.get("version") != CHECKPOINT_VERSION:
            raise SearchError("checkpoint has an unknown format version")
        run.generation = int(payload["generation"])
        run.elapsed = float(payload["elapsed"])
        run.key = jax.random.wrap_key_data(jnp.asarray(payload["key"]))
        run.state = _unflatten_like(run.state, payload["strategy"],
                                    fixed_shapes=run.strategy.info.jittable)
        log_bytes = int(payload["log_bytes"])
    except SearchError:
        raise
    except Exception as error:  # msgpack / structure mismatch: the file is damaged
        raise SearchError(f"{out / CHECKPOINT} is corrupt ({type(error).__name__})") from None
    if not (out / "log.jsonl").is_file():
        raise SearchError(f"{out} is not a run directory (no log.jsonl)")
    log = (out / "log.jsonl").read_bytes()[:log_bytes]
    for line in log.decode().splitlines():
        record = Record(**json.loads(line))
        run.cache[(record.hash, record.steps)] = record
        run.history.append(record)
    return log_bytes


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


def write_outputs(run, outcome, params) -> None:
    """Writes ``best/`` (architecture, parameters, model description, drawings),
    ``result.json`` and the plots of a finished search."""
    from jaxnas import __version__
    from jaxnas.arch import to_json

    out = run.out
    best_dir = out / "best"
    best_dir.mkdir(exist_ok=True)
    arch_json = {"space": run.space.name, **to_json(outcome.best_arch, run.space.op_names)}
    atomic_write(best_dir / "arch.json", json.dumps(arch_json, indent=1).encode())
    atomic_write(best_dir / "params.msgpack", serialization.to_bytes(params))
    model = {"space": run.space.name, "input_shape": list(run.data.input_shape),
             "num_classes": run.data.num_classes, "width": run.config.width,
             "cells": run.config.cells, "norm": run.config.norm,
             "mean": None if run.data.mean is None else run.data.mean.tolist(),
             "std": None if run.data.std is None else run.data.std.tolist()}
    atomic_write(best_dir / "model.json", json.dumps(model).encode())
    atomic_write(best_dir / "arch.svg", arch_svg(outcome.best_arch, run.space.op_names,
                                                 title=outcome.best.hash).encode())
    atomic_write(best_dir / "arch.png", arch_png(outcome.best_arch, run.space.op_names))
    devices = jax.devices()
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
    atomic_write(out / "result.json", json.dumps(result, indent=1).encode())
    write_plots(out, outcome.history)
