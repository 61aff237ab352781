"""``jaxnas space count|show``: inspect search spaces and architecture files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jaxnas import spaces
from jaxnas.arch import describe, from_json
from jaxnas.cli.usage import UsageError
from jaxnas.search import unknown_space_hint


def add_parser(commands) -> None:
    space = commands.add_parser("space", help="inspect search spaces and architectures")
    space_commands = space.add_subparsers(dest="space_command", required=True)
    count = space_commands.add_parser(
        "count", help="count the valid and unique architectures of a space")
    count.add_argument("space", choices=spaces.names())
    count.add_argument("--max-nodes", type=int, default=None,
                       help="count architectures with at most this many nodes")
    count.add_argument("--json", action="store_true", help="print one JSON line")
    count.set_defaults(run=_count)
    show = space_commands.add_parser("show", help="print an architecture JSON file as text")
    show.add_argument("file", help="architecture JSON file (e.g. RUN/best/arch.json)")
    show.set_defaults(run=_show)


def _count(args: argparse.Namespace) -> None:
    # jaxnas.spaces does not export ``count`` yet (the public-names half of issue 23).
    from jaxnas.spaces import count

    space = spaces.get(args.space)
    if args.max_nodes is not None and not 2 <= args.max_nodes <= space.max_nodes:
        raise UsageError(f"--max-nodes must be between 2 and {space.max_nodes} for {space.name}")
    valid, unique = count(space, args.max_nodes)
    if args.json:
        print(json.dumps({"space": space.name, "valid": valid, "unique": unique}))
    else:
        nodes = args.max_nodes or space.max_nodes
        print(f"{space.name} (at most {nodes} nodes, {space.max_edges} edges, "
              f"{space.num_ops} ops): {valid:,} valid architectures, {unique:,} unique")


def read_arch_file(path: str):
    """Reads an architecture JSON file (as written by ``jaxnas search``).

    Returns:
      (space or None when the file names none, the Arch, its op names).
    """
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        obj = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(obj, dict) or "nodes" not in obj:
        raise UsageError(f"{path}: not an architecture file (expected keys 'nodes', 'edges')")
    space_name = obj.get("space")
    if space_name is None:
        reserved = {"input", "output", "pad"}
        names = tuple(dict.fromkeys(n for n in obj["nodes"] if n not in reserved))
        return None, from_json(obj, names), names
    if space_name not in spaces.names():
        raise UsageError(f"{path}: {unknown_space_hint(space_name)}")
    space = spaces.get(space_name, **obj.get("space_config", {}))
    arch = from_json(obj, space.op_names)
    space.validate(arch)
    return space, arch, space.op_names


def _show(args: argparse.Namespace) -> None:
    space, arch, op_names = read_arch_file(args.file)
    if space is None:
        print(f"architecture with {arch.num_nodes} padded nodes")
    else:
        print(f"{space.name} architecture, hash {space.canonical_hash(arch)}")
    print(describe(arch, op_names))
