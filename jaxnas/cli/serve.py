"""``jaxnas serve``: the live page of a run directory (also ``jaxnas search --serve``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxnas.cli.usage import UsageError


def add_parser(commands) -> None:
    serve = commands.add_parser(
        "serve", help="a live web page of a run (progress, curves, table, drawings, importance)")
    serve.add_argument("dir", help="run directory (finished or still running)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    serve.set_defaults(run=_serve)


def bind(directory: Path, host: str, port: int):
    """The run page's server for ``directory``, bound but not serving yet."""
    from jaxnas.serve import make_server

    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535; got {port}")
    try:
        return make_server(directory, host, port)
    except OSError as error:
        raise UsageError(f"cannot serve on {host}:{port}: {error.strerror or error}") from None


def start_server(directory: Path, host: str, port: int):
    """Binds the run page's server and serves it from a daemon thread."""
    import threading

    server = bind(directory, host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def url_of(server) -> str:
    from jaxnas.serve import url_of

    return url_of(server)


def _serve(args: argparse.Namespace) -> None:
    from jaxnas.search import RunDir, SearchError

    directory = Path(args.dir)
    try:
        RunDir(directory).check()
    except SearchError as error:
        raise UsageError(str(error)) from None
    server = bind(directory, args.host, args.port)
    print(f"serving {directory} at {url_of(server)} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
