"""``jaxnas serve DIR``: a live, read-only web page over a run directory.

A top layer like the CLI: it reads the run directory through ``RunDir`` on every
request and writes nothing anywhere. The page (``jaxnas/web``: HTML, CSS and
JavaScript, no other asset) polls ``/api/run`` and redraws when the log grows;
``/api/arch/HASH.svg`` draws one evaluated architecture. Only GET and HEAD are
answered; every other method gets 405.
"""

from __future__ import annotations

import dataclasses
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
from jaxnas.search import (
    Record,
    RunDir,
    RunDirectoryError,
    SearchConfig,
    describe_hyperparameters,
)

ASSETS = {"/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}


def check_run_directory(directory: Path) -> None:
    """Raises RunDirectoryError unless ``directory`` holds a run whose files all read."""
    RunDir(directory).check()


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _row(index: int, record: Record, objective: str) -> dict:
    """A row of the page's table."""
    nodes = [n for n in record.arch["nodes"][1:-1] if n != "pad"]
    edges = len(record.arch["edges"])
    return {"index": index, "hash": record.hash, "generation": record.generation,
            "fitness": _finite(record.weighted_fitness(objective)),
            "val_loss": _finite(record.val_loss), "val_acc": _finite(record.val_acc),
            "params": record.params, "flops": record.flops, "steps": record.steps,
            "seconds": record.seconds,
            "training": describe_hyperparameters(record.hyperparameters or {}),
            "summary": f"{len(nodes)} node{'s' * (len(nodes) != 1)}, {edges} "
                       f"edge{'s' * (edges != 1)}: {', '.join(nodes)}"}


class RunReader:
    """Reads a run directory into the page's JSON; caches what the files have not
    changed. A file found damaged while serving keeps the last good page, with the
    error's line in ``error``."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.rundir = RunDir(directory)
        self._lock = threading.Lock()
        self._cached_key: tuple | None = None
        self._cached: dict = self._page(None, None, None, [])
        self._error: str | None = None

    def config(self) -> SearchConfig | None:
        """The search's settings: result.json's, else the checkpoint's, else None."""
        result = self.rundir.result()
        if result is not None:
            return SearchConfig(**result["config"])
        header = self.rundir.header()
        return None if header is None else header.config

    def space(self, config: SearchConfig | None) -> spaces_lib.Space | None:
        """The run's space; None when unknown or not registered here (the page shows
        the log without drawings)."""
        if config is None or config.space not in spaces_lib.names():
            return None
        return spaces_lib.get(config.space)

    def run(self) -> dict:
        """The JSON of ``/api/run``."""
        key = self.rundir.stamp()
        status = self.rundir.status()
        with self._lock:
            if key != self._cached_key:
                try:
                    self._cached, self._error = self._build(), None
                    self._cached_key = key
                except RunDirectoryError as error:
                    self._error = str(error)
            return {**self._cached, "status": status, "error": self._error}

    def _build(self) -> dict:
        if not self.rundir.started():  # a search about to start writing it
            return self._page(None, None, None, [])
        return self._page(self.rundir.header(), self.rundir.result(), self.config(),
                          self.rundir.records())

    def _page(self, header, result: dict | None, config: SearchConfig | None,
              records: list[Record]) -> dict:
        space = self.space(config)
        objective = config.objective if config else "loss"
        importance = None
        if space is not None:
            importance = run_importance([dataclasses.asdict(r) for r in records],
                                        space.op_names, edge_labelled=space.edge_labelled)
        progress = {"evaluations": len(records),
                    "generation": header.generation if header else None,
                    "elapsed_s": header.elapsed if header else None,
                    "budget_evals": config.budget_evals if config else None,
                    "budget_minutes": config.budget_minutes if config else None}
        return {"directory": str(self.directory),
                "config": None if config is None else dataclasses.asdict(config),
                "progress": progress,
                "evaluations": [_row(i, r, objective) for i, r in enumerate(records)],
                "importance": importance,
                "result": None if result is None else {
                    key: result.get(key) for key in ("best", "test_accuracy", "test_loss",
                                                     "wall_seconds", "generations",
                                                     "hyperparameters")},
                "op_names": list(space.op_names) if space is not None else []}

    def arch_svg(self, arch_hash: str) -> str | None:
        """The drawing of the evaluated architecture with this hash; None if unknown."""
        try:
            space = self.space(self.config())
            records = self.rundir.records() if space is not None else []
        except RunDirectoryError:
            return None
        for record in records:
            if record.hash == arch_hash:
                arch = from_json(record.arch, space.op_names)
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
