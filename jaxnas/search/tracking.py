"""Experiment tracking: a search's candidates and progress for TensorBoard or MLflow.

``jaxnas search --track tensorboard DIR`` (``search(track=("tensorboard", DIR))``)
writes, from the evaluation records alone:

- ``DIR/candidates/NNNNN-HASH8/``: one TensorBoard run per evaluated candidate (the
  log's line number and the architecture's hash), holding its HParams "session start"
  (the architecture summary: op counts, nodes, edges, params, FLOPs, training steps,
  generation) and its metrics as scalars at its training step (``val_loss``,
  ``val_acc``, ``seconds``; with repeats also ``val_loss_std``, ``val_acc_std``), so
  that the HParams dashboard's table, parallel coordinates and scatter views list one
  trial per candidate;
- ``DIR/search/``: the search's progress as scalars, a point per generation that
  evaluated something: ``progress/best_val_loss``, ``progress/best_val_acc`` (the
  record that the search would retrain), ``progress/evaluations`` and
  ``progress/evals_per_s`` (the generation's evaluations over its training seconds);
- ``DIR/search.json`` and a text summary ``config`` in the run ``.``: the search's
  configuration;
- once the search ends, ``result/test_accuracy`` and ``result/test_loss`` in
  ``DIR/search/`` (the retrained winner's, at its last generation).

Every file is derived from the records, so tracking changes no result, and a
resumed search (or a later ``--track`` of the same run) writes exactly what is
missing: candidate runs are written whole (``atomic_write``), and the progress
points already on disk are read back with TensorBoard's own event loader.

TensorBoard's protocol buffers and summary functions need no TensorFlow:
``summary_v2.hparams_pb``, ``scalar_pb`` and ``text_pb`` of its hparams, scalar and
text plugins build the summaries, and ``RecordWriter`` frames them into event
files. The ``track`` extra installs ``tensorboard``.

``--track mlflow DIR`` writes the same into an MLflow store, ``sqlite:///DIR/mlflow.db``
(MLflow's local store; its plain-file store is in maintenance mode and refused by
MLflow 3 unless asked for), that many searches can share: in the experiment
``jaxnas/SPACE``, one run per search (tagged ``jaxnas.search``, a hash of its
configuration: ``--resume`` finds it), its configuration as params and as the
artifact ``search.json``, its progress as metrics ``progress/NAME`` at step =
generation and, once it ends, ``test_accuracy`` and ``test_loss``; under it one nested
run per candidate (named as in TensorBoard), the architecture summary as params and
the metrics at its training step. A candidate run is finished only once everything is
logged; a resumed search deletes the unfinished ones (a killed process's) and writes
what is missing. The ``mlflow`` extra installs ``mlflow-skinny``, SQLAlchemy and
Alembic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import socket
import time
from collections import Counter
from pathlib import Path

from jaxnas.search.config import (
    Record,
    SearchConfig,
    SearchError,
    SearchResult,
    best_record,
)
from jaxnas.search.files import atomic_write

KINDS = ("tensorboard", "mlflow")
_NOT_OPS = ("input", "output", "pad")
_PROGRESS = ("best_val_loss", "best_val_acc", "evaluations", "evals_per_s")


def candidate_run(index: int, record: Record) -> str:
    """The run (subdirectory) of the candidate on line ``index + 1`` of the log."""
    return f"candidates/{index + 1:05d}-{record.hash[:8]}"


def arch_summary(record: Record, op_names: tuple[str, ...]) -> dict[str, float]:
    """The HParams of one candidate: ``ops/NAME`` (its nodes of each op of the space),
    ``nodes`` (op nodes), ``edges``, ``params``, ``flops``, ``steps``, ``generation``;
    in a joint search also ``hp/NAME``, the training numbers it was trained with."""
    counts = Counter(op for op in record.arch["nodes"] if op not in _NOT_OPS)
    summary = {f"ops/{name}": counts.get(name, 0) for name in op_names}
    summary.update(nodes=sum(counts.values()), edges=len(record.arch["edges"]),
                   params=record.params, flops=record.flops, steps=record.steps,
                   generation=record.generation)
    summary.update({f"hp/{name}": value
                    for name, value in sorted((record.hyperparameters or {}).items())})
    return summary


def candidate_metrics(record: Record) -> dict[str, float]:
    """The scalars of one candidate's run, by tag."""
    metrics = {"val_loss": record.val_loss, "val_acc": record.val_acc,
               "seconds": record.seconds}
    if record.val_loss_std is not None:
        metrics.update(val_loss_std=record.val_loss_std, val_acc_std=record.val_acc_std)
    return metrics


def progress_point(history: list[Record], generation: int,
                   objective: str) -> dict[str, float]:
    """The progress scalars of one generation (``progress/NAME`` without the prefix)."""
    seen = [record for record in history if record.generation <= generation]
    now = [record for record in seen if record.generation == generation]
    best = best_record(seen, objective)
    seconds = sum(record.seconds for record in now)
    return {"best_val_loss": best.val_loss, "best_val_acc": best.val_acc,
            "evaluations": float(len(seen)), "evals_per_s": len(now) / max(seconds, 1e-4)}


class _Tracker:
    """What both trackers share: writing whatever of the records is not written yet.

    A tracker sets ``config`` and implements ``_open`` (ready the store once; fill
    ``_generations_written`` with the progress points already there),
    ``_has_candidate``, ``_write_candidate``, ``_write_points`` ({generation: point})
    and ``_write_result`` (step, {name: value}).
    """

    config: SearchConfig
    _candidates_done = 0  # the log's first lines whose candidates are written
    _generations_written: set[int] | None = None  # None: not opened yet

    def update(self, history: list[Record]) -> None:
        """Writes whatever of ``history`` (the whole evaluation log) is not written yet."""
        if self._generations_written is None:
            self._open()
        for index in range(self._candidates_done, len(history)):
            if not self._has_candidate(index, history[index]):
                self._write_candidate(index, history[index])
            self._candidates_done = index + 1
        missing = sorted({record.generation for record in history} - self._generations_written)
        if missing:
            self._write_points({generation: progress_point(history, generation,
                                                           self.config.objective)
                                for generation in missing})
            self._generations_written.update(missing)

    def finish(self, result: SearchResult) -> None:
        """Adds the retrained winner's test figures (at the last generation)."""
        self.update(result.history)
        self._write_result(max(record.generation for record in result.history),
                           {"test_accuracy": result.test_accuracy,
                            "test_loss": result.test_loss})


class TensorBoardTracker(_Tracker):
    """Writes a search's records into a TensorBoard log directory (module docstring).

    Args:
      directory: the log directory: new, empty, or one this search tracked before.
      config: the search's settings.
      op_names: the space's op names.

    Raises:
      SearchError: ``tensorboard`` is not installed, or ``directory`` holds something else.
    """

    def __init__(self, directory: str | os.PathLike, config: SearchConfig,
                 op_names: tuple[str, ...]):
        try:
            from tensorboard.compat.proto import event_pb2
            from tensorboard.plugins.hparams import summary_v2
            from tensorboard.plugins.scalar import summary_v2 as scalar_summary
            from tensorboard.plugins.text import summary_v2 as text_summary
            from tensorboard.summary.writer.record_writer import RecordWriter
        except ImportError:
            raise SearchError("--track tensorboard needs TensorBoard: pip install "
                              "'jaxnas[track]'") from None
        self._event, self._hparams = event_pb2.Event, summary_v2.hparams_pb
        self._scalar, self._text = scalar_summary.scalar_pb, text_summary.text_pb
        self._record_writer = RecordWriter
        self.path = Path(directory)
        self.config = config
        self.op_names = tuple(op_names)
        self._config_text = json.dumps(_config_json(config), indent=1, sort_keys=True)
        self._check_directory()
        self._progress_file = None

    def _check_directory(self) -> None:
        marker = self.path / "search.json"
        if self.path.exists() and not self.path.is_dir():
            raise SearchError(f"cannot track into {self.path}: it is not a directory")
        if marker.exists():
            try:
                tracked = json.loads(marker.read_text())
            except (OSError, ValueError) as error:
                raise SearchError(f"cannot read {marker}: {error}") from None
            if tracked != json.loads(self._config_text):
                raise SearchError(f"{self.path} tracks another search (its search.json "
                                  "differs); choose another --track directory")
        elif self.path.is_dir() and any(self.path.iterdir()):
            raise SearchError(f"{self.path} is not empty and tracks no jaxnas search; "
                              "choose a new --track directory")

    def _open(self) -> None:
        if not (self.path / "search.json").exists():
            self._write_config()
        run = self.path / "search"
        self._generations_written = _generations_on_disk(run)
        run.mkdir(parents=True, exist_ok=True)
        self._progress_file = open(run / _event_file_name(), "ab")  # noqa: SIM115
        self._progress_file.write(self._events([]))

    def _has_candidate(self, index: int, record: Record) -> bool:
        return _has_events(self.path / candidate_run(index, record))

    def _write_points(self, points: dict[int, dict[str, float]]) -> None:
        """The progress points, a scalar per name at step = generation."""
        self._append([(generation, self._scalar(f"progress/{name}", point[name]))
                      for generation, point in points.items() for name in _PROGRESS])

    def _write_result(self, step: int, metrics: dict[str, float]) -> None:
        self._append([(step, self._scalar(f"result/{name}", value))
                      for name, value in metrics.items()])

    def _append(self, summaries: list) -> None:
        self._progress_file.write(self._events(summaries, version=False))
        self._progress_file.flush()
        os.fsync(self._progress_file.fileno())

    def close(self) -> None:
        if self._progress_file is not None:
            self._progress_file.close()
            self._progress_file = None

    def _write_config(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        text = self._text("config", "```\n" + self._config_text + "\n```")
        atomic_write(self.path / _event_file_name(), self._events([(0, text)]))
        atomic_write(self.path / "search.json", self._config_text.encode())

    def _write_candidate(self, index: int, record: Record) -> None:
        run = self.path / candidate_run(index, record)
        run.mkdir(parents=True, exist_ok=True)
        for stale in run.glob(".*.tmp"):  # left by a process killed while writing here
            stale.unlink()
        summaries = [(0, self._hparams(arch_summary(record, self.op_names),
                                       trial_id=candidate_run(index, record)))]
        summaries += [(record.steps, self._scalar(tag, value))
                      for tag, value in candidate_metrics(record).items()]
        atomic_write(run / _event_file_name(), self._events(summaries))

    def _events(self, summaries: list, *, version: bool = True) -> bytes:
        """Event records (TFRecord framing) of ``(step, Summary)`` pairs, after the file
        version record that starts every event file when ``version``."""
        buffer = io.BytesIO()
        writer = self._record_writer(buffer)
        now = time.time()
        if version:
            writer.write(self._event(wall_time=now, file_version="brain.Event:2")
                         .SerializeToString())
        for step, summary in summaries:
            writer.write(self._event(wall_time=now, step=step, summary=summary)
                         .SerializeToString())
        return buffer.getvalue()


class MLflowTracker(_Tracker):
    """Writes a search's records into an MLflow store in a directory (module docstring).

    Args:
      directory: the store's directory: new, empty, or one that holds an MLflow store.
      config: the search's settings.
      op_names: the space's op names.

    Raises:
      SearchError: MLflow is not installed, or ``directory`` holds something else.
    """

    def __init__(self, directory: str | os.PathLike, config: SearchConfig,
                 op_names: tuple[str, ...]):
        try:
            import alembic  # noqa: F401  (MLflow's SQL store needs both)
            import sqlalchemy  # noqa: F401
            from mlflow import MlflowClient
            from mlflow.entities import Metric, Param
        except ImportError:
            raise SearchError("--track mlflow needs MLflow: pip install 'jaxnas[mlflow]'"
                              ) from None
        self._metric, self._param = Metric, Param
        self.path = Path(directory).resolve()
        if self.path.exists() and not self.path.is_dir():
            raise SearchError(f"cannot track into {self.path}: it is not a directory")
        if (self.path.is_dir() and any(self.path.iterdir())
                and not (self.path / _MLFLOW_STORE).is_file()):
            raise SearchError(f"{self.path} is not empty and holds no MLflow store "
                              f"({_MLFLOW_STORE}); choose a new --track directory")
        self._client_class = MlflowClient
        self.config = config
        self.op_names = tuple(op_names)
        self._config = _config_json(config)
        self._identity = hashlib.sha256(json.dumps(self._config, sort_keys=True)
                                        .encode()).hexdigest()[:16]
        self._client = None
        self._run_id = self._experiment_id = None
        self._lines_done: set[int] = set()

    def _has_candidate(self, index: int, record: Record) -> bool:
        return index + 1 in self._lines_done

    def _write_points(self, points: dict[int, dict[str, float]]) -> None:
        for generation, point in points.items():
            self._client.log_batch(self._run_id, metrics=[
                self._metric(f"progress/{name}", float(point[name]), _now_ms(), generation)
                for name in _PROGRESS])

    def _write_result(self, step: int, metrics: dict[str, float]) -> None:
        """Logs the test figures and ends the search's run."""
        self._client.log_batch(self._run_id, metrics=[
            self._metric(name, float(value), _now_ms(), step) for name, value in metrics.items()])
        self._client.set_terminated(self._run_id, "FINISHED")

    def close(self) -> None:
        """Ends the search's run as KILLED if it did not finish (``--resume`` reopens it)."""
        if self._run_id is not None and self._client.get_run(
                self._run_id).info.status == "RUNNING":
            self._client.set_terminated(self._run_id, "KILLED")

    def _open(self) -> None:
        """Finds or makes the experiment and the search's run, and reads what is logged."""
        import logging

        for name in ("mlflow", "alembic"):  # the store's set-up chatter
            logging.getLogger(name).setLevel(logging.WARNING)
        self.path.mkdir(parents=True, exist_ok=True)
        self._client = client = self._client_class(
            tracking_uri=f"sqlite:///{self.path / _MLFLOW_STORE}")
        name = f"jaxnas/{self.config.space}"
        experiment = client.get_experiment_by_name(name)
        self._experiment_id = (experiment.experiment_id if experiment is not None else
                               client.create_experiment(name, artifact_location=(
                                   self.path / "artifacts" / name).as_uri()))
        found = self._runs(f"tags.`jaxnas.search` = '{self._identity}'")
        if found:
            self._run_id = found[0].info.run_id
            client.update_run(self._run_id, status="RUNNING")
        else:
            self._run_id = client.create_run(
                self._experiment_id, run_name=f"search {self._identity[:8]}",
                tags={"jaxnas.search": self._identity}).info.run_id
        # Logging an equal param again is allowed: a run killed while this was being
        # written gets it whole.
        params = {key: value if isinstance(value, str | int | float | bool) or value is None
                  else json.dumps(value, sort_keys=True) for key, value in self._config.items()}
        self._log_params(self._run_id, params)
        client.log_dict(self._run_id, self._config, "search.json")
        for run in self._runs(f"tags.`mlflow.parentRunId` = '{self._run_id}'"):
            if run.info.status == "FINISHED":
                self._lines_done.add(int(run.data.tags["jaxnas.line"]))
            else:  # a candidate whose process was killed while it was being logged
                client.delete_run(run.info.run_id)
        self._generations_written = {metric.step for metric in client.get_metric_history(
            self._run_id, f"progress/{_PROGRESS[-1]}")}

    def _runs(self, query: str) -> list:
        runs, token = [], None
        while True:
            page = self._client.search_runs([self._experiment_id], query, max_results=1000,
                                            page_token=token)
            runs += page
            token = page.token
            if not token:
                return runs

    def _write_candidate(self, index: int, record: Record) -> None:
        run = self._client.create_run(
            self._experiment_id, run_name=candidate_run(index, record),
            tags={"mlflow.parentRunId": self._run_id, "jaxnas.line": str(index + 1),
                  "jaxnas.hash": record.hash}).info.run_id
        self._log_params(run, arch_summary(record, self.op_names))
        self._client.log_batch(run, metrics=[
            self._metric(tag, float(value), _now_ms(), record.steps)
            for tag, value in candidate_metrics(record).items()])
        self._client.set_terminated(run, "FINISHED")

    def _log_params(self, run: str, params: dict) -> None:
        items = [self._param(key, str(value)) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow's limit per batch
            self._client.log_batch(run, params=items[start:start + 100])


_MLFLOW_STORE = "mlflow.db"


def open_tracker(kind: str, directory: str | os.PathLike, config: SearchConfig,
                 op_names: tuple[str, ...]) -> TensorBoardTracker | MLflowTracker:
    """The tracker of ``kind`` (one of ``KINDS``) writing into ``directory``."""
    if kind not in KINDS:
        raise SearchError(f"cannot track with {kind!r}; choose one of {', '.join(KINDS)}")
    tracker = TensorBoardTracker if kind == "tensorboard" else MLflowTracker
    return tracker(directory, config, op_names)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _has_events(run: Path) -> bool:
    """Whether the run directory holds a whole event file (``atomic_write`` names its
    temporary file with a leading dot)."""
    return run.is_dir() and any("tfevents" in path.name and not path.name.startswith(".")
                                for path in run.iterdir())


def _generations_on_disk(run: Path) -> set[int]:
    """The generations whose progress points the run's event files hold."""
    if not run.is_dir():
        return set()
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    done = set()
    for path in sorted(run.iterdir()):
        if "tfevents" not in path.name or path.name.startswith("."):
            continue
        for event in EventFileLoader(str(path)).Load():
            if any(value.tag == f"progress/{_PROGRESS[-1]}" for value in event.summary.value):
                done.add(event.step)
    return done


def _event_file_name() -> str:
    return (f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}."
            f"{os.getpid()}.jaxnas")


def _config_json(config: SearchConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))
