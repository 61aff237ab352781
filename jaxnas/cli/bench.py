"""``jaxnas bench``: every strategy against a tabular benchmark, many seeds at once."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from jaxnas.cli.usage import UsageError, positive_int
from jaxnas.search import atomic_write


def add_parser(commands) -> None:
    from jaxnas import tables

    bench = commands.add_parser(
        "bench", help="every strategy against a tabular benchmark, many seeds at once",
        description="Search a published table by lookup with each strategy, fused and "
        "vmapped over seeds; write regret curves as JSON, MD and PNG.")
    bench.add_argument("--table", required=True, metavar="NAME",
                       help=f"one of {', '.join(tables.names())}")
    bench.add_argument("--path", help="the table's file or directory (nats-tss; jaxnas reads "
                       "the table that ships in the package unless given; nbgraph-* read "
                       "their package unless given)")
    bench.add_argument("--dataset", help="nats-tss: cifar10-valid (default), cifar10, "
                       "cifar100 or ImageNet16-120")
    bench.add_argument("--hp", help="nats-tss: training schedule, 200 (default) or 12")
    bench.add_argument("--strategy", default="all",
                       help="all (default) or comma-separated strategy names")
    bench.add_argument("--seeds", type=positive_int, default=1000)
    bench.add_argument("--budget", type=positive_int, default=100,
                       help="evaluations per search (default 100)")
    bench.add_argument("--batch", type=positive_int, default=10,
                       help="architectures per ask (default 10)")
    bench.add_argument("--loop-seeds", type=int, default=0, metavar="K",
                       help="also time each fused strategy as a Python loop over K seeds")
    bench.add_argument("--host-seeds", type=positive_int, default=20,
                       help="seeds for host strategies (local), which loop in Python")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--out", metavar="PREFIX",
                       help="write PREFIX.json, .md and .png (default bench_TABLE)")
    bench.add_argument("--quiet", action="store_true")
    bench.set_defaults(run=_bench)


def _table(args: argparse.Namespace):
    from jaxnas import bench, tables

    options = {k: getattr(args, k) for k in ("dataset", "hp") if getattr(args, k) is not None}
    with contextlib.ExitStack() as stack:
        path = args.path
        if args.table == "jaxnas" and path is None:
            path = stack.enter_context(bench.default_table_file())
        try:
            return tables.get(args.table, path=path, **options)
        except TypeError as error:  # an option this table's loader does not take
            raise UsageError(f"table {args.table}: {error}") from None
        except tables.TableError as error:
            raise UsageError(str(error)) from None


def _bench(args: argparse.Namespace) -> None:
    import platform
    import time

    import jax

    from jaxnas import bench, strategies

    if args.loop_seeds < 0:
        raise UsageError(f"--loop-seeds must be 0 or more; got {args.loop_seeds}")
    names = strategies.names() if args.strategy == "all" else args.strategy.split(",")
    unknown = [name for name in names if name not in strategies.names()]
    if unknown:
        raise UsageError(f"unknown strategy {unknown[0]!r}; choose all or some of "
                         f"{', '.join(strategies.names())}")
    table = _table(args)
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
            atomic_write(out.with_name(out.name + suffix), (text + "\n").encode())
        plotted = bench.plot(report, out.with_name(out.name + ".png"))
    except OSError as error:
        raise UsageError(f"cannot write the report to {out}: {error.strerror or error}") from None
    print(f"wrote {out}.json, {out}.md" + (", .png" if plotted else " (no matplotlib: no plot)"))
