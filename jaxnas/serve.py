"""``jaxnas serve DIR``: a live, read-only web page over a run directory.

A top layer like the CLI: it reads the run directory (log.jsonl, the checkpoint,
result.json, the lock's process id) on every request and writes nothing anywhere.
The page (``jaxnas/web``: HTML, CSS and JavaScript, no other asset) polls
``/api/run`` and redraws when the log grows; ``/api/arch/HASH.svg`` draws one
evaluated architecture. Only GET and HEAD are answered; every other method gets 405.
"""

from __future__ import annotations

import http.server
import json
import math
import os
import threading
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlsplit

from jaxnas import spaces as spaces_lib
from jaxnas.arch import from_json
from jaxnas.drawing import arch_svg
from jaxnas.importance import run_importance
from jaxnas.search import OBJECTIVE_WEIGHTS, Record

ASSETS = {"/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}
_CHECKPOINT = Path("checkpoint") / "state.msgpack"


class RunDirectoryError(Exception):
    """The directory is not a run directory; the message is one line."""


def check_run_directory(directory: Path) -> None:
    """Raises RunDirectoryError unless ``directory`` holds a run (a log or a checkpoint)."""
    if not directory.is_dir():
        raise RunDirectoryError(f"{directory}: no such directory")
    if not (directory / "log.jsonl").is_file() and not (directory / _CHECKPOINT).is_file():
        raise RunDirectoryError(f"{directory} is not a run directory (no log.jsonl, no "
                                f"{_CHECKPOINT})")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class RunReader:
    """Reads a run directory into the page's JSON; caches what the log has not changed."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._lock = threading.Lock()
        self._cached_key: tuple | None = None
        self._cached: dict = {}

    def _checkpoint(self) -> dict:
        """The checkpoint's fields (empty when it is missing or being replaced)."""
        path = self.directory / _CHECKPOINT
        if not path.is_file():
            return {}
        from flax import serialization

        try:
            return serialization.msgpack_restore(path.read_bytes())
        except Exception:  # damaged or half-read: the page shows the log alone
            return {}

    def config(self, result: dict | None = None, checkpoint: dict | None = None) -> dict | None:
        """The search's settings: result.json's, else the checkpoint's, else None.

        ``result`` and ``checkpoint`` are those files' contents when already read.
        """
        result = self._result() if result is None else result
        if result is not None:
            return result["config"]
        checkpoint = self._checkpoint() if checkpoint is None else checkpoint
        return json.loads(checkpoint["config"]) if "config" in checkpoint else None

    def _result(self) -> dict | None:
        path = self.directory / "result.json"
        try:
            return json.loads(path.read_text()) if path.is_file() else None
        except json.JSONDecodeError:
            return None

    def records(self) -> list[dict]:
        """The complete lines of log.jsonl (a line being written is left for later)."""
        path = self.directory / "log.jsonl"
        if not path.is_file():
            return []
        text = path.read_text()
        return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines() if line]

    def status(self) -> str:
        """finished, running (the process holding the lock is alive), stopped or starting."""
        if (self.directory / "result.json").is_file():
            return "finished"
        lock = self.directory / ".lock"
        try:
            pid = int(lock.read_text().strip())
            os.kill(pid, 0)
            return "running"
        except PermissionError:  # alive, owned by another user
            return "running"
        except (OSError, ValueError):
            pass
        return "stopped" if (self.directory / "log.jsonl").is_file() else "starting"

    def space(self, config: dict | None) -> spaces_lib.Space | None:
        return None if config is None else spaces_lib.get(config["space"])

    def run(self) -> dict:
        """The JSON of ``/api/run``."""
        log = self.directory / "log.jsonl"
        result_file = self.directory / "result.json"
        key = tuple(p.stat().st_mtime_ns if p.is_file() else None
                    for p in (log, result_file, self.directory / _CHECKPOINT))
        status = self.status()
        with self._lock:
            if key != self._cached_key:
                self._cached = self._build()
                self._cached_key = key
            return {**self._cached, "status": status}

    def _build(self) -> dict:
        checkpoint = self._checkpoint()
        result = self._result()
        config = self.config(result, checkpoint)
        space = self.space(config)
        records = self.records()
        objective = config["objective"] if config else "loss"
        weights = OBJECTIVE_WEIGHTS[:1 if objective == "loss" else 2]
        rows = []
        for index, record in enumerate(records):
            fitness = Record(**record).fitness(objective)
            nodes = [n for n in record["arch"]["nodes"][1:-1] if n != "pad"]
            edges = len(record["arch"]["edges"])
            rows.append({"index": index, "hash": record["hash"],
                         "generation": record["generation"],
                         "fitness": _finite(sum(w * f for w, f in zip(weights, fitness,
                                                                       strict=True))),
                         "val_loss": _finite(record["val_loss"]),
                         "val_acc": _finite(record["val_acc"]), "params": record["params"],
                         "flops": record["flops"], "steps": record["steps"],
                         "seconds": record["seconds"],
                         "summary": f"{len(nodes)} node{'s' * (len(nodes) != 1)}, {edges} "
                                    f"edge{'s' * (edges != 1)}: {', '.join(nodes)}"})
        importance = None
        if space is not None:
            importance = run_importance(records, space.op_names,
                                        edge_labelled=space.edge_labelled)
        progress = {"evaluations": len(records),
                    "generation": int(checkpoint["generation"]) if checkpoint else None,
                    "elapsed_s": float(checkpoint["elapsed"]) if checkpoint else None,
                    "budget_evals": config["budget_evals"] if config else None,
                    "budget_minutes": config["budget_minutes"] if config else None}
        return {"directory": str(self.directory), "config": config, "progress": progress,
                "evaluations": rows, "importance": importance,
                "result": None if result is None else {
                    key: result.get(key) for key in ("best", "test_accuracy", "test_loss",
                                                     "wall_seconds", "generations")},
                "op_names": list(space.op_names) if space is not None else []}

    def arch_svg(self, arch_hash: str) -> str | None:
        """The drawing of the evaluated architecture with this hash; None if unknown."""
        space = self.space(self.config())
        if space is None:
            return None
        for record in self.records():
            if record["hash"] == arch_hash:
                arch = from_json(record["arch"], space.op_names)
                return arch_svg(arch, space.op_names, title=f"{space.name} {arch_hash[:12]}")
        return None


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "jaxnas"
    reader: RunReader

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        """The page polls every few seconds; logging each request would bury the output."""

    def _send(self, status: int, body: bytes, content_type: str, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if status == 405:
            self.send_header("Allow", "GET, HEAD")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _get(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        if path in ASSETS:
            name, content_type = ASSETS[path]
            body = resources.files("jaxnas").joinpath("web", name).read_bytes()
            return self._send(200, body, content_type, head)
        if path == "/api/run":
            body = json.dumps(self.reader.run(), allow_nan=False).encode()
            return self._send(200, body, "application/json", head)
        if path.startswith("/api/arch/") and path.endswith(".svg"):
            svg = self.reader.arch_svg(path[len("/api/arch/"):-len(".svg")])
            if svg is not None:
                return self._send(200, svg.encode(), "image/svg+xml", head)
        self._send(404, b"not found\n", "text/plain; charset=utf-8", head)

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._get(head=False)

    def do_HEAD(self):  # noqa: N802
        self._get(head=True)

    def _refuse(self):
        self._send(405, b"read-only: only GET and HEAD\n", "text/plain; charset=utf-8")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815


def make_server(directory: str | os.PathLike, host: str = "127.0.0.1",
                port: int = 8765) -> http.server.ThreadingHTTPServer:
    """A threaded HTTP server for the page of ``directory`` (not started).

    Port 0 picks a free port; ``server.server_address`` holds the bound one.

    Raises:
      OSError: the address cannot be bound (e.g. the port is in use).
    """
    handler = type("RunHandler", (_Handler,), {"reader": RunReader(Path(directory))})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def url_of(server: http.server.ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"


__all__ = ["ASSETS", "RunDirectoryError", "RunReader", "check_run_directory", "make_server",
           "url_of"]
