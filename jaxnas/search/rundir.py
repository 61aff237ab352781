"""The run directory and its one owner, ``RunDir``.

Layout: ``log.jsonl`` (one JSON line per evaluation), ``checkpoint/state.msgpack``
(what ``--resume`` continues from: the configuration, counters, key, the strategy
state by field path and the log's length; ``jaxnas.search.checkpoint``),
``result.json``, ``best/`` (the retrained model), ``plots/``, ``drawings/``
(``jaxnas report --draw``), ``.lock`` and, with weight inheritance,
``weights/HASH.msgpack`` (each evaluated candidate's trained parameters). Every
file is written whole or not at all; a damaged one is reported in one line naming
it (``RunDirectoryError``), before anything is written.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import chex
from flax import serialization

from jaxnas import spaces as spaces_lib
from jaxnas.search import checkpoint as checkpoint_lib
from jaxnas.search.checkpoint import Header, Snapshot
from jaxnas.search.config import (
    Record,
    RunDirectoryError,
    SearchConfig,
    SearchError,
    unknown_space_hint,
)
from jaxnas.search.files import WeightStore, atomic_write, hold_lock, lock_holder_alive
from jaxnas.search.logfile import LogReader, append_records
from jaxnas.search.plots import plot_history

LOG = "log.jsonl"
RESULT = "result.json"
CHECKPOINT = Path("checkpoint") / "state.msgpack"
LOCK = ".lock"
BEST = "best"
WEIGHTS = "weights"
DRAWINGS = "drawings"
PLOTS = "plots"
BEST_FILES = {"arch": "arch.json", "model": "model.json", "params": "params.msgpack",
              "svg": "arch.svg", "png": "arch.png"}


class RunDir:
    """A run directory: the only code that knows its file names and formats.

    Args:
      path: the directory (it need not exist yet).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = None
        self._log_file = None

    def __str__(self) -> str:
        return str(self.path)

    def _file(self, name: str | Path) -> Path:
        return self.path / name

    def _error(self, name: str | Path, what: str) -> RunDirectoryError:
        return RunDirectoryError(f"{self._file(name)} {what}")

    def in_use(self) -> bool:
        """Whether the directory holds anything but a lock (a new run must start empty)."""
        return any(path.name != LOCK for path in self.path.iterdir())

    def started(self) -> bool:
        """Whether the directory holds a run (a log or a checkpoint)."""
        return self._file(LOG).is_file() or self._file(CHECKPOINT).is_file()

    def require(self) -> None:
        """Raises RunDirectoryError unless the directory holds a run (``started``)."""
        if not self.path.is_dir():
            raise RunDirectoryError(f"{self.path}: no such directory")
        if not self.started():
            raise RunDirectoryError(f"{self.path} is not a run directory (no {LOG}, no "
                                    f"{CHECKPOINT})")

    def finished(self) -> bool:
        return self._file(RESULT).is_file()

    def status(self) -> str:
        """finished, running (the process holding the lock is alive), stopped or starting."""
        if self.finished():
            return "finished"
        if lock_holder_alive(self._file(LOCK)):
            return "running"
        return "stopped" if self._file(LOG).is_file() else "starting"

    def stamp(self) -> tuple:
        """Changes whenever the log, the checkpoint or the result is written."""
        return tuple(p.stat().st_mtime_ns if p.is_file() else None
                     for p in (self._file(LOG), self._file(RESULT), self._file(CHECKPOINT)))

    def check(self) -> None:
        """Reads every file a command relies on; raises RunDirectoryError for the first
        damaged one (the log, the checkpoint and its configuration, the result, the
        model in best/)."""
        self.require()
        self.records()
        self.result()
        if self._file(Path(BEST) / BEST_FILES["model"]).is_file():
            self.model()

    def header(self) -> Header | None:
        """The checkpoint's fields (None without a checkpoint)."""
        path = self._file(CHECKPOINT)
        if not path.is_file():
            return None
        try:
            return checkpoint_lib.decode_header(path.read_bytes())
        except ValueError as error:
            raise self._error(CHECKPOINT, str(error)) from None

    def result(self) -> dict | None:
        """result.json of a finished run (None before the run finished)."""
        path = self._file(RESULT)
        if not path.is_file():
            return None
        try:
            result = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise self._error(RESULT, f"is not valid JSON ({error})") from None
        missing = [k for k in ("best", "config", "test_accuracy") if not isinstance(result, dict)
                   or k not in result]
        if missing:
            raise self._error(RESULT, f"is damaged (no {missing[0]!r})")
        try:
            SearchConfig(**result["config"]).check()
        except (TypeError, SearchError) as error:
            raise self._error(RESULT, f"holds a damaged configuration ({error})") from None
        return result

    def config(self) -> SearchConfig:
        """The search's settings: result.json's, else the checkpoint's."""
        result = self.result()
        if result is not None:
            return SearchConfig(**result["config"])
        header = self.header()
        if header is None:
            self.require()
            raise RunDirectoryError(f"{self.path} names no configuration (no {RESULT}, no "
                                    f"{CHECKPOINT})")
        return header.config

    def unfinished_config(self) -> SearchConfig:
        """The configuration of the unfinished run to resume (after ``check``)."""
        self.require()
        if self.finished():
            raise RunDirectoryError(f"{self.path} holds a finished search; see jaxnas report "
                                    f"{self.path}")
        self.check()
        header = self.header()
        if header is None:
            raise RunDirectoryError(f"{self.path} is not a run directory (no {CHECKPOINT})")
        return header.config

    def space(self) -> spaces_lib.Space:
        """The registered space the run searched."""
        name = self.config().space
        if name not in spaces_lib.names():
            raise SearchError(unknown_space_hint(name))
        return spaces_lib.get(name)

    def records(self) -> list[Record]:
        """The evaluation records of the log, checked against the checkpoint.

        Lines past the checkpoint's length are records of a generation the search
        logged but did not checkpoint; an unfinished last line there (a search stopped
        or still writing) is left out.
        """
        header = self.header()
        if not self._file(LOG).is_file():
            self.require()
            if header is not None and header.log_bytes:
                raise self._error(LOG, f"is missing; the checkpoint says it held "
                                  f"{header.log_bytes} bytes")
            return []
        tail_from = 0 if self.status() == "running" else (
            math.inf if header is None else header.log_bytes)
        return self._log_reader(header).records(tail_from=tail_from)

    def _log_reader(self, header: Header | None) -> LogReader:
        blob = self._file(LOG).read_bytes()
        if header is not None and len(blob) < header.log_bytes:
            raise self._error(LOG, f"holds {len(blob)} bytes but the checkpoint says "
                              f"{header.log_bytes}: the log was cut short (restore it from a "
                              "copy, or start a new run)")
        return LogReader(blob, str(self._file(LOG)), RunDirectoryError)

    def model(self) -> tuple[dict, dict, bytes]:
        """best/'s model description, architecture JSON and parameter bytes."""
        best = Path(BEST)
        if not self._file(best / BEST_FILES["model"]).is_file():
            self.require()
            raise RunDirectoryError(f"{self.path} holds no trained model (no "
                                    f"{best / BEST_FILES['model']})")
        meta = self._json(best / BEST_FILES["model"], ("space", "input_shape", "num_classes",
                                                       "width", "mean", "std"))
        arch = self._json(best / BEST_FILES["arch"], ("nodes", "edges"))
        params = self._file(best / BEST_FILES["params"])
        if not params.is_file():
            raise self._error(best / BEST_FILES["params"], "is missing")
        return meta, arch, params.read_bytes()

    def best_params(self, blob: bytes, like) -> Any:
        """best/'s parameters, shaped like ``like``."""
        try:
            params = serialization.from_bytes(like, blob)
            # from_bytes restores by structure alone: chex names a leaf of another shape.
            chex.assert_trees_all_equal_shapes(params, like)
            return params
        except AssertionError as error:  # "... differ in leaves 'head/bias': shapes: ..."
            raise self._error(Path(BEST) / BEST_FILES["params"], "does not fit the model: "
                              f"parameter {str(error).partition('leaves ')[2]}") from None
        except Exception as error:  # msgpack and structure errors alike
            raise self._error(Path(BEST) / BEST_FILES["params"],
                              f"is damaged ({_one_line(error)})") from None

    def _json(self, name: Path, keys: tuple[str, ...]) -> dict:
        path = self._file(name)
        if not path.is_file():
            raise self._error(name, "is missing")
        try:
            value = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise self._error(name, f"is not valid JSON ({error})") from None
        missing = [k for k in keys if not isinstance(value, dict) or k not in value]
        if missing:
            raise self._error(name, f"is damaged (no {missing[0]!r})")
        return value

    def lock(self, resume: bool) -> None:
        """Creates the directory if needed and locks it for this process (``.lock``, an
        advisory ``flock`` the OS releases when the process ends).

        Raises SearchError, writing nothing else, when the directory cannot be created,
        another search holds it, or a new run would write into a used directory.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = hold_lock(self._file(LOCK))
        except BlockingIOError as busy:
            raise SearchError(f"{self.path} is in use by another search (process "
                              f"{busy.holder}); wait for it to end or choose another --out"
                              ) from None
        except OSError as error:
            raise SearchError(f"cannot use {self.path} as the run directory: "
                              f"{error.strerror or error}") from None
        if not resume and self.in_use():
            lock.close()
            raise SearchError(already_exists(self.path))
        self._lock = lock

    def create(self, config: SearchConfig, snapshot: Snapshot) -> None:
        """Starts a new run: an empty log and the first checkpoint."""
        self._file(CHECKPOINT).parent.mkdir(exist_ok=True)
        if config.inherit:
            self._file(WEIGHTS).mkdir(exist_ok=True)
        atomic_write(self._file(CHECKPOINT), checkpoint_lib.encode(snapshot, config, 0))
        atomic_write(self._file(LOG), b"")
        self._log_file = open(self._file(LOG), "r+b")  # noqa: SIM115 - closed by close()

    def reopen(self, like: Snapshot, fixed_shapes: bool) -> Snapshot:
        """The snapshot to continue from, its strategy state shaped like ``like``'s; then
        drops what the log holds past the checkpoint (a generation logged but not
        checkpointed) and opens the log for appending.

        Raises RunDirectoryError, changing no file, for a damaged checkpoint or log.
        """
        header = self.header()
        if header is None:
            raise RunDirectoryError(f"{self.path} is not a run directory (no {CHECKPOINT})")
        try:
            snapshot = checkpoint_lib.decode_snapshot(header, like, fixed_shapes)
        except checkpoint_lib.CheckpointMismatch as error:
            raise self._error(CHECKPOINT, f"does not fit this strategy's state: {error}"
                              ) from None
        if not self._file(LOG).is_file():
            raise self._error(LOG, "is missing")
        history = self._log_reader(header).records(until=header.log_bytes)
        self._log_file = open(self._file(LOG), "r+b")  # noqa: SIM115 - closed by close()
        self._log_file.truncate(header.log_bytes)
        self._log_file.seek(header.log_bytes)
        return Snapshot(generation=snapshot.generation, elapsed=snapshot.elapsed,
                        key=snapshot.key, strategy=snapshot.strategy, history=tuple(history))

    def commit(self, records: list[Record], snapshot: Snapshot, config: SearchConfig) -> None:
        """Appends a generation's records to the log, then checkpoints ``snapshot``."""
        append_records(self._log_file, records)
        atomic_write(self._file(CHECKPOINT),
                     checkpoint_lib.encode(snapshot, config, self._log_file.tell()))

    def close(self) -> None:
        """Closes the log and releases the lock."""
        for handle in (self._log_file, self._lock):
            if handle is not None:
                handle.close()
        self._log_file = self._lock = None

    def weights(self) -> WeightStore:
        """The trained parameters of evaluated candidates (weight inheritance)."""
        return WeightStore(self._file(WEIGHTS), suffix=".msgpack")

    def write_best(self, files: dict[str, bytes]) -> None:
        """Writes best/: ``files`` maps each of ``BEST_FILES``' roles to its bytes."""
        best = self._file(BEST)
        best.mkdir(exist_ok=True)
        for role, payload in files.items():
            atomic_write(best / BEST_FILES[role], payload)

    def write_result(self, result: dict, history: list[Record]) -> list[Path]:
        """Writes result.json, then the plots; returns the plots' paths."""
        atomic_write(self._file(RESULT), json.dumps(result, indent=1).encode())
        return self.write_plots(history)

    def write_plots(self, history: list[Record]) -> list[Path]:
        """(Re)draws plots/ from ``history``; returns the plots' paths."""
        return plot_history(self._file(PLOTS), history)

    def drawings(self) -> Path:
        """The directory of ``jaxnas report --draw``'s drawings (created)."""
        self._file(DRAWINGS).mkdir(exist_ok=True)
        return self._file(DRAWINGS)


def already_exists(path: Path) -> str:
    return f"{path} already exists; pass --resume to continue it or choose another --out"


def write_plots(out: str | os.PathLike, history: list[Record]) -> list[Path]:
    """Draws the plots of ``history`` into the run directory ``out``."""
    return RunDir(out).write_plots(history)


def read_log(out: str | os.PathLike) -> list[Record]:
    """The evaluation records of a run directory (``RunDir(out).records()``)."""
    return RunDir(out).records()


def _one_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
