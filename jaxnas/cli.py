"""The ``jaxnas`` command: a thin layer over the Python API.

Every user mistake ends with one line on stderr and exit code 2; no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from pathlib import Path

from jaxnas import spaces, strategies
from jaxnas.arch import ArchError, describe, from_json
from jaxnas.data import DataError
from jaxnas.search import SearchConfig
from jaxnas.search.config import flag_of


class UsageError(Exception):
    """A user mistake the CLI reports in one line (exit code 2)."""


def _space_count(args: argparse.Namespace) -> None:
    from jaxnas.spaces._count import count

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
    space = spaces.get(space_name, **obj.get("space_config", {}))
    arch = from_json(obj, space.op_names)
    space.validate(arch)
    return space, arch, space.op_names


def _space_show(args: argparse.Namespace) -> None:
    space, arch, op_names = read_arch_file(args.file)
    if space is None:
        print(f"architecture with {arch.num_nodes} padded nodes")
    else:
        print(f"{space.name} architecture, hash {space.canonical_hash(arch)}")
    print(describe(arch, op_names))


class _Progress:
    """One updating line on a terminal, one plain line per generation otherwise."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def __call__(self, p: dict) -> None:
        if self.quiet:
            return
        left = ("" if p["minutes_left"] is None
                else f" | {p['minutes_left']:.1f} min left")
        line = (f"gen {p['generation']:3d} | evals {p['evaluations']}/{p['budget_evals']} | "
                f"{p['evals_per_s']:.2f} evals/s | best val loss {p['best_val_loss']:.4f} "
                f"acc {p['best_val_acc']:.3f}{left}")
        if self.tty:
            print("\r" + line, end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty and not self.quiet:
            print(file=sys.stderr)


def _search(args: argparse.Namespace) -> None:
    from jaxnas.search import SearchError, search

    if args.resume is not None and args.out is not None:
        raise UsageError("give either --out (a new run) or --resume (an existing run)")
    settings = {name: getattr(args, name) for name in _config_fields()
                if getattr(args, name) is not None}
    options = _strategy_options(args.strategy_option or [])
    if args.resume is not None and (settings or options or args.initial):
        raise UsageError("--resume continues a run with its own settings; give no other options")
    server = None
    if args.port is not None and not args.serve:
        raise UsageError("--port is the port of --serve; give --serve too")
    if args.serve:
        if args.out is None and args.resume is None:
            raise UsageError("--serve needs a run directory: give --out or --resume")
        server = _start_server(Path(args.out or args.resume), "127.0.0.1",
                               8765 if args.port is None else args.port)
        print(f"watch the search at {_url(server)}", file=sys.stderr, flush=True)
    for name, argument in (("dataset", "data"), ("budget_evals", "budget")):
        if name in settings:
            settings[argument] = settings.pop(name)
    progress = _Progress(args.quiet)
    try:
        result = search(out=args.out or args.resume, resume=args.resume is not None,
                        progress=progress, compile_cache=args.compile_cache,
                        strategy_options=options, initial=args.initial or (), **settings)
    except SearchError as error:
        raise UsageError(str(error)) from None
    finally:
        progress.close()
        if server is not None:
            server.shutdown()
            server.server_close()
    print(result.summary())


def _strategy_options(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs as a dict; values are read as JSON (numbers, true/false,
    lists) where they parse, else kept as strings."""
    options = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key:
            raise UsageError(f"--strategy-option takes KEY=VALUE; got {pair!r}")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = {"True": True, "False": False}.get(text, text)
    return options


def _config_fields() -> dict[str, dataclasses.Field]:
    """The ``SearchConfig`` fields that are options of ``jaxnas search``, by name."""
    return {field.name: field for field in dataclasses.fields(SearchConfig)
            if field.name not in ("strategy_options", "initial")}


def _add_config_options(run: argparse.ArgumentParser) -> None:
    """An option per ``SearchConfig`` field, with its type, choices and help."""
    hints = typing.get_type_hints(SearchConfig)
    listed = {"space": spaces.names(), "strategy": strategies.names()}
    for name, field in _config_fields().items():
        kind = next(t for t in typing.get_args(hints[name]) or (hints[name],)
                    if t is not type(None))
        choices = field.metadata["choices"] or listed.get(name)
        kind = _positive_int if field.metadata["minimum"] == 1 else kind
        if kind is bool:
            run.add_argument(flag_of(field), dest=name, action="store_true", default=None,
                             help=field.metadata["help"])
            continue
        default = "" if field.default is None else f" (default {field.default})"
        run.add_argument(flag_of(field), dest=name, type=kind, choices=choices,
                         help=field.metadata["help"] + default)


def _bind(directory: Path, host: str, port: int):
    """The run page's server for ``directory``, bound but not serving yet."""
    from jaxnas.serve import make_server

    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535; got {port}")
    try:
        return make_server(directory, host, port)
    except OSError as error:
        raise UsageError(f"cannot serve on {host}:{port}: {error.strerror or error}") from None


def _start_server(directory: Path, host: str, port: int):
    """Binds the run page's server and serves it from a daemon thread."""
    import threading

    server = _bind(directory, host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _url(server) -> str:
    from jaxnas.serve import url_of

    return url_of(server)


def _serve(args: argparse.Namespace) -> None:
    from jaxnas.serve import RunDirectoryError, check_run_directory

    directory = Path(args.dir)
    try:
        check_run_directory(directory)
    except RunDirectoryError as error:
        raise UsageError(str(error)) from None
    server = _bind(directory, args.host, args.port)
    print(f"serving {directory} at {_url(server)} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _report(args: argparse.Namespace) -> None:
    from jaxnas.search import SearchError, read_log, write_plots
    from jaxnas.search.config import rank_stability

    try:
        records = read_log(args.dir)
    except SearchError as error:
        raise UsageError(str(error)) from None
    if not records:
        raise UsageError(f"{args.dir} has no evaluations yet")
    order = sorted(records, key=lambda r: (r.val_loss, r.hash))
    ranked = order[:args.top]
    repeated = any(r.repeat_val_loss for r in records)
    loss_title, acc_title = ("val_loss ± std", "val_acc ± std") if repeated else ("val_loss",
                                                                                   "val_acc")
    width = 17 if repeated else 8
    print(f"{'rank':>4}  {'hash':12}  {loss_title:>{width}}  {acc_title:>{width}}  "
          f"{'params':>9}  {'FLOPs':>11}  {'steps':>5}  architecture")
    for rank, r in enumerate(ranked, 1):
        nodes = [n for n in r.arch["nodes"][1:-1] if n != "pad"]
        summary = f"{len(nodes)} nodes, {len(r.arch['edges'])} edges: {', '.join(nodes)}"
        loss, acc = f"{r.val_loss:.4f}", f"{r.val_acc:.4f}"
        if r.repeat_val_loss:
            loss, acc = f"{loss} ± {r.val_loss_std:.4f}", f"{acc} ± {r.val_acc_std:.4f}"
        print(f"{rank:>4}  {r.hash[:12]}  {loss:>{width}}  {acc:>{width}}  {r.params:9,}  "
              f"{r.flops:11,}  {r.steps:5}  {summary}")
    if repeated:
        stability = rank_stability(records)
        repeats = len(next(r.repeat_val_loss for r in records if r.repeat_val_loss))
        if stability is None:
            print(f"{repeats} repeats per candidate; too few candidates to rank")
        else:
            mean, low, count = stability
            print(f"rank stability over {repeats} repeats: Kendall tau of the validation "
                  f"losses {mean:.3f} (mean over repeat pairs; lowest {low:.3f}), "
                  f"{count} candidates")
    result = Path(args.dir) / "result.json"
    if result.is_file():
        summary = json.loads(result.read_text())
        print(f"retrained best: test accuracy {summary['test_accuracy']:.4f}")
    for path in write_plots(Path(args.dir), records):
        print(f"plot: {path}")
    if args.draw:
        _draw_top(Path(args.dir), order[:args.draw])
    if args.importance:
        _print_importance(Path(args.dir), records, args.top)


def _run_space(directory: Path):
    from jaxnas.serve import RunReader

    config = RunReader(directory).config()
    if config is None:
        raise UsageError(f"{directory} names no search space (no result.json and no readable "
                         "checkpoint)")
    return spaces.get(config["space"])


def _draw_top(directory: Path, ranked: list) -> None:
    """Writes DIR/drawings/rankR-HASH.svg and .png for the given records, best first."""
    from jaxnas.drawing import arch_png, arch_svg

    space = _run_space(directory)
    drawings = directory / "drawings"
    drawings.mkdir(exist_ok=True)
    for rank, record in enumerate(ranked, 1):
        arch = from_json(record.arch, space.op_names)
        stem = drawings / f"rank{rank}-{record.hash[:12]}"
        stem.with_suffix(".svg").write_text(
            arch_svg(arch, space.op_names, title=f"rank {rank}: {record.hash}"))
        stem.with_suffix(".png").write_bytes(arch_png(arch, space.op_names))
        print(f"drawing: {stem}.svg (and .png)")


def _print_importance(directory: Path, records: list, top: int) -> None:
    """The importance table: per kind, the ``top`` features with the lowest effect."""
    from jaxnas.importance import KINDS, MIN_EVALUATIONS, run_importance

    space = _run_space(directory)
    importance = run_importance([dataclasses.asdict(r) for r in records], space.op_names,
                                edge_labelled=space.edge_labelled)
    if importance is None:
        raise UsageError(f"importance needs at least {MIN_EVALUATIONS} evaluations with a "
                         f"finite loss; {directory} has {len(records)}")
    print(f"\nimportance: ridge regressions of validation loss on {importance['evaluations']} "
          "evaluations; effect = change in validation loss per node (or edge) with the "
          "feature, negative is good; 90% bootstrap interval; share = evaluations with it")
    print(f"{'kind':8}  {'feature':44}  {'effect':>8}  {'90% interval':>20}  {'share':>5}")
    for kind in KINDS:
        features = [f for f in importance["features"] if f["kind"] == kind]
        for f in features[:top]:
            interval = f"[{f['low']:.4f}, {f['high']:.4f}]"
            print(f"{kind:8}  {f['name'][:44]:44}  {f['effect']:8.4f}  {interval:>20}  "
                  f"{f['frequency']:5.0%}")
    fits = ", ".join(f"{kind} {fit['r2']:.2f}" for kind, fit in importance["groups"].items())
    print(f"leave-one-out R^2 of each model (near 0 or below: the effects are noise): {fits}")


def _export(args: argparse.Namespace) -> None:
    from jaxnas.search import SearchError, load

    if args.torch is None and args.state_dict is None:
        raise UsageError("give --torch FILE (a torch.export program) and/or --state-dict FILE")
    try:
        predictor = load(args.dir)
    except SearchError as error:
        raise UsageError(str(error)) from None
    try:
        import torch

        from jaxnas import export
    except ImportError:
        raise UsageError("exporting to PyTorch needs torch (pip install torch)") from None
    model = (predictor.space, predictor.arch, predictor.params, predictor.input_shape,
             predictor.num_classes, predictor.model_config)
    if args.torch is not None:
        program = export.torch_program(*model, predictor.mean, predictor.std)
        _write_atomically(Path(args.torch), lambda buffer: torch.export.save(program, buffer))
        print(f"wrote a torch.export program to {args.torch}: "
              f"torch.export.load({args.torch!r}).module() maps raw inputs to logits")
    if args.state_dict is not None:
        state = export.state_dict(*model)
        _write_atomically(Path(args.state_dict), lambda buffer: torch.save(state, buffer))
        print(f"wrote {len(state)} tensors to {args.state_dict} "
              "(the state dict of jaxnas.export.seed_module)")


def _write_atomically(target: Path, save) -> None:
    """Writes what ``save(buffer)`` writes into a memory buffer to ``target``, whole or
    not at all."""
    import io

    from jaxnas.search.rundir import atomic_write

    buffer = io.BytesIO()
    save(buffer)
    atomic_write(target, buffer.getvalue())


def _bench(args: argparse.Namespace) -> None:
    import platform
    import time

    import jax

    from jaxnas import bench, strategies, tables

    if args.loop_seeds < 0:
        raise UsageError(f"--loop-seeds must be 0 or more; got {args.loop_seeds}")
    names = strategies.names() if args.strategy == "all" else args.strategy.split(",")
    unknown = [name for name in names if name not in strategies.names()]
    if unknown:
        raise UsageError(f"unknown strategy {unknown[0]!r}; choose all or some of "
                         f"{', '.join(strategies.names())}")
    options = {k: getattr(args, k) for k in ("dataset", "hp") if getattr(args, k) is not None}
    path = args.path
    if args.table == "jaxnas" and path is None:
        path = Path(__file__).resolve().parent.parent / "benchmarks/results/nb201_mnist1d.json"
    try:
        table = tables.get(args.table, path=path, **options)
    except TypeError as error:  # an option this table's loader does not take
        raise UsageError(f"table {args.table}: {error}") from None
    except tables.TableError as error:
        raise UsageError(str(error)) from None
    start = time.perf_counter()

    def progress(name, entry):
        if not args.quiet:
            final = entry["final_test_acc"]
            print(f"{name:10s} {entry['seeds']} seeds: test accuracy {final['mean']:.2f} "
                  f"± {final['std']:.2f}", file=sys.stderr, flush=True)

    report = bench.bench(table, names, seeds=args.seeds, budget=args.budget,
                         batch_size=args.batch, loop_seeds=args.loop_seeds,
                         host_seeds=args.host_seeds, seed=args.seed, progress=progress)
    machine = (f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} "
               f"CPU cores, jax {jax.__version__} on {jax.default_backend()}")
    report.update(command="jaxnas " + " ".join(args.argv), machine=machine,
                  total_s=time.perf_counter() - start)
    out = Path(args.out or f"bench_{table.name}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for suffix, text in ((".json", json.dumps(report, indent=1)),
                             (".md", bench.markdown(report, report["command"], machine))):
            target = out.with_name(out.name + suffix)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text + "\n")
            tmp.replace(target)
        plotted = bench.plot(report, out.with_name(out.name + ".png"))
    except OSError as error:
        raise UsageError(f"cannot write the report to {out}: {error.strerror or error}") from None
    print(f"wrote {out}.json, {out}.md" + (", .png" if plotted else " (no matplotlib: no plot)"))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


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

    space = commands.add_parser("space", help="inspect search spaces and architectures")
    space_commands = space.add_subparsers(dest="space_command", required=True)
    count = space_commands.add_parser(
        "count", help="count the valid and unique architectures of a space")
    count.add_argument("space", choices=spaces.names())
    count.add_argument("--max-nodes", type=int, default=None,
                       help="count architectures with at most this many nodes")
    count.add_argument("--json", action="store_true", help="print one JSON line")
    count.set_defaults(run=_space_count)
    show = space_commands.add_parser("show", help="print an architecture JSON file as text")
    show.add_argument("file", help="architecture JSON file (e.g. RUN/best/arch.json)")
    show.set_defaults(run=_space_show)

    default = SearchConfig()
    run = commands.add_parser(
        "search", help=f"run a search (default: {default.strategy} over the {default.space} "
        f"space on {default.dataset})",
        description="Search architectures, retrain the best on train+val and test it once.")
    _add_config_options(run)
    run.add_argument("--strategy-option", action="append", metavar="KEY=VALUE",
                     help="an option of the strategy's factory, e.g. tournament_size=3 "
                     "(repeatable; values are read as JSON where they parse)")
    run.add_argument("--initial", nargs="+", metavar="FILE",
                     help="architectures to evaluate first, from which the strategy starts: "
                     "files of architecture JSON (RUN/best/arch.json, a list, NAS-Bench-101 "
                     "{matrix, ops}) or of NAS-Bench-201 strings, one per line, or such "
                     "strings themselves")
    run.add_argument("--out", help="new run directory for the log, checkpoint, plots and model")
    run.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.add_argument("--serve", action="store_true",
                     help="serve the run's live page on 127.0.0.1 while the search runs")
    run.add_argument("--port", type=int, help="port of --serve (default 8765; 0: any free)")
    run.add_argument("--compile-cache", metavar="DIR|off",
                     help="JAX's persistent compilation cache (default: $JAXNAS_COMPILE_CACHE, "
                     "else ~/.cache/jaxnas/xla); 'off' turns it off")
    run.set_defaults(run=_search)

    report = commands.add_parser("report", help="top architectures of a run, and its plots")
    report.add_argument("dir")
    report.add_argument("--top", type=_positive_int, default=10,
                        help="rows of the table (and per kind of the importance table)")
    report.add_argument("--importance", action="store_true",
                        help="which ops, positions and edges go with a low validation loss")
    report.add_argument("--draw", type=_positive_int, metavar="K",
                        help="draw the top K architectures into DIR/drawings (SVG and PNG)")
    report.set_defaults(run=_report)

    serve = commands.add_parser(
        "serve", help="a live web page of a run (progress, curves, table, drawings, importance)")
    serve.add_argument("dir", help="run directory (finished or still running)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    serve.set_defaults(run=_serve)

    from jaxnas import tables

    bench = commands.add_parser(
        "bench", help="every strategy against a tabular benchmark, many seeds at once",
        description="Search a published table by lookup with each strategy, fused and "
        "vmapped over seeds; write regret curves as JSON, MD and PNG.")
    bench.add_argument("--table", required=True, metavar="NAME",
                       help=f"one of {', '.join(tables.names())}")
    bench.add_argument("--path", help="the table's file or directory (nats-tss, jaxnas; "
                       "nbgraph-* read the package unless given)")
    bench.add_argument("--dataset", help="nats-tss: cifar10-valid (default), cifar10, "
                       "cifar100 or ImageNet16-120")
    bench.add_argument("--hp", help="nats-tss: training schedule, 200 (default) or 12")
    bench.add_argument("--strategy", default="all",
                       help="all (default) or comma-separated strategy names")
    bench.add_argument("--seeds", type=_positive_int, default=1000)
    bench.add_argument("--budget", type=_positive_int, default=100,
                       help="evaluations per search (default 100)")
    bench.add_argument("--batch", type=_positive_int, default=10,
                       help="architectures per ask (default 10)")
    bench.add_argument("--loop-seeds", type=int, default=0, metavar="K",
                       help="also time each fused strategy as a Python loop over K seeds")
    bench.add_argument("--host-seeds", type=_positive_int, default=20,
                       help="seeds for host strategies (local), which loop in Python")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--out", metavar="PREFIX",
                       help="write PREFIX.json, .md and .png (default bench_TABLE)")
    bench.add_argument("--quiet", action="store_true")
    bench.set_defaults(run=_bench)

    export = commands.add_parser("export", help="export the best model of a run")
    export.add_argument("dir")
    export.add_argument("--torch", metavar="FILE",
                        help="write a self-contained torch.export program (torch.export.load, "
                        "no jaxnas needed): raw inputs to logits (e.g. best.pt2)")
    export.add_argument("--state-dict", metavar="FILE",
                        help="write the state dict of jaxnas.export.seed_module's network")
    export.set_defaults(run=_export)
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


if __name__ == "__main__":
    sys.exit(entry())
