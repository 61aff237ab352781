"""The ``jaxnas`` command: a thin layer over the Python API, a module per command
(``space``, ``search``, ``report``, ``serve``, ``bench``, ``export``).

Every user mistake ends with one line on stderr and exit code 2; no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from jaxnas.arch import ArchError
from jaxnas.cli import bench, export, report, search, serve, space
from jaxnas.cli.usage import UsageError
from jaxnas.data import DataError

COMMANDS = (space, search, report, serve, bench, export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxnas",
        description="Neural architecture search in JAX: whole populations trained as one program.",
    )
    parser.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                        help="import MODULE first (repeatable): a module of yours that "
                        "registers spaces, strategies or datasets (jaxnas.spaces.register, "
                        "jaxnas.strategies.register, jaxnas.data.register)")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def _import_plugins(argv: list[str] | None) -> None:
    """Imports the ``--import`` modules, which register spaces, strategies or datasets,
    before the parser lists the registered names."""
    import importlib

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--import", dest="imports", action="append", default=[])
    known, _ = pre.parse_known_args(argv)
    if known.imports and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as ``python -m``: modules of this directory
    for module in known.imports:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise UsageError(f"--import {module}: {error}") from None


def main(argv: list[str] | None = None) -> int:
    try:
        _import_plugins(argv)
    except UsageError as error:
        print(f"jaxnas: error: {error}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args.run(args)
    except (UsageError, ArchError, DataError) as error:
        print(f"jaxnas: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        from jaxnas.search import SearchInterrupted

        if isinstance(error, SearchInterrupted):
            print(f"jaxnas: {error}", file=sys.stderr)
            return 130
        raise
    return 0


def host_devices_flag(flags: str, cores: int) -> str:
    """XLA_FLAGS with one XLA CPU device per core, unless the user chose a count.

    On a CPU the trainer runs each device's candidates one at a time, so a device per
    core trains that many at once (NB201 cells: 1.5x with two; docs/scaling.md). Other
    platforms ignore the flag.
    """
    if "xla_force_host_platform_device_count" in flags or cores < 2:
        return flags
    return f"{flags} --xla_force_host_platform_device_count={cores}".strip()


def use_a_device_per_core() -> None:
    """Sets ``XLA_FLAGS`` (``host_devices_flag``) for this process; call before JAX starts."""
    os.environ["XLA_FLAGS"] = host_devices_flag(os.environ.get("XLA_FLAGS", ""),
                                                len(os.sched_getaffinity(0)))


def entry() -> int:
    """The console script: the CPU devices are set before JAX starts, then ``main``."""
    use_a_device_per_core()
    return main()


__all__ = ["UsageError", "build_parser", "entry", "host_devices_flag", "main",
           "use_a_device_per_core"]
