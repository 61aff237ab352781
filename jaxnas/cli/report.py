"""``jaxnas report``: the top architectures of a run (and their training numbers in a
joint search), its plots, drawings and the importance of ops, positions, edges and
searched training numbers."""

from __future__ import annotations

import argparse
import dataclasses

from jaxnas.arch import from_json
from jaxnas.cli.usage import UsageError, positive_int
from jaxnas.search import Record, RunDir, SearchError, describe_hyperparameters, rank_stability


def add_parser(commands) -> None:
    report = commands.add_parser("report", help="top architectures of a run, and its plots")
    report.add_argument("dir")
    report.add_argument("--top", type=positive_int, default=10,
                        help="rows of the table (and per kind of the importance table)")
    report.add_argument("--importance", action="store_true",
                        help="which ops, positions and edges go with a low validation loss")
    report.add_argument("--draw", type=positive_int, metavar="K",
                        help="draw the top K architectures into DIR/drawings (SVG and PNG)")
    report.set_defaults(run=_report)


def _report(args: argparse.Namespace) -> None:
    rundir = RunDir(args.dir)
    try:
        rundir.check()
        records = rundir.records()
        result = rundir.result()
        space = rundir.space() if args.draw or args.importance else None
    except SearchError as error:
        raise UsageError(str(error)) from None
    if not records:
        raise UsageError(f"{args.dir} has no evaluations yet")
    order = sorted(records, key=lambda r: (r.val_loss, r.hash))
    _print_table(records, order[:args.top])
    if result is not None:
        trained = result.get("hyperparameters")
        print(f"retrained best: test accuracy {result['test_accuracy']:.4f}"
              + (f", trained with {describe_hyperparameters(trained)}" if trained else ""))
    for path in rundir.write_plots(records):
        print(f"plot: {path}")
    if args.draw:
        _draw_top(rundir, space, order[:args.draw])
    if args.importance:
        _print_importance(rundir, space, records, args.top)


def _print_table(records: list[Record], ranked: list[Record]) -> None:
    repeated = any(r.repeat_val_loss for r in records)
    loss_title, acc_title = ("val_loss ± std", "val_acc ± std") if repeated else ("val_loss",
                                                                                   "val_acc")
    width = 17 if repeated else 8
    joint = any(r.hyperparameters for r in records)
    print(f"{'rank':>4}  {'hash':12}  {loss_title:>{width}}  {acc_title:>{width}}  "
          f"{'params':>9}  {'FLOPs':>11}  {'steps':>5}  "
          + ("training numbers; " if joint else "") + "architecture")
    for rank, r in enumerate(ranked, 1):
        nodes = [n for n in r.arch["nodes"][1:-1] if n != "pad"]
        summary = f"{len(nodes)} nodes, {len(r.arch['edges'])} edges: {', '.join(nodes)}"
        loss, acc = f"{r.val_loss:.4f}", f"{r.val_acc:.4f}"
        if r.repeat_val_loss:
            loss, acc = f"{loss} ± {r.val_loss_std:.4f}", f"{acc} ± {r.val_acc_std:.4f}"
        if joint:
            summary = f"{describe_hyperparameters(r.hyperparameters or {})}; {summary}"
        print(f"{rank:>4}  {r.hash[:12]}  {loss:>{width}}  {acc:>{width}}  {r.params:9,}  "
              f"{r.flops:11,}  {r.steps:5}  {summary}")
    if not repeated:
        return
    stability = rank_stability(records)
    repeats = len(next(r.repeat_val_loss for r in records if r.repeat_val_loss))
    if stability is None:
        print(f"{repeats} repeats per candidate; too few candidates to rank")
    else:
        mean, low, count = stability
        print(f"rank stability over {repeats} repeats: Kendall tau of the validation "
              f"losses {mean:.3f} (mean over repeat pairs; lowest {low:.3f}), "
              f"{count} candidates")


def _draw_top(rundir: RunDir, space, ranked: list[Record]) -> None:
    """Writes DIR/drawings/rankR-HASH.svg and .png for the given records, best first."""
    from jaxnas.drawing import arch_png, arch_svg

    drawings = rundir.drawings()
    for rank, record in enumerate(ranked, 1):
        arch = from_json(record.arch, space.op_names)
        stem = drawings / f"rank{rank}-{record.hash[:12]}"
        stem.with_suffix(".svg").write_text(
            arch_svg(arch, space.op_names, title=f"rank {rank}: {record.hash}"))
        stem.with_suffix(".png").write_bytes(arch_png(arch, space.op_names))
        print(f"drawing: {stem}.svg (and .png)")


def _print_importance(rundir: RunDir, space, records: list[Record], top: int) -> None:
    """The importance table: per kind, the ``top`` features with the lowest effect."""
    from jaxnas.importance import KINDS, MIN_EVALUATIONS, run_importance

    importance = run_importance([dataclasses.asdict(r) for r in records], space.op_names,
                                edge_labelled=space.edge_labelled)
    if importance is None:
        raise UsageError(f"importance needs at least {MIN_EVALUATIONS} evaluations with a "
                         f"finite loss; {rundir} has {len(records)}")
    print(f"\nimportance: ridge regressions of validation loss on {importance['evaluations']} "
          "evaluations; effect = change in validation loss per node (or edge) with the "
          "feature, or per standard deviation of a training number; negative is good; 90% "
          "bootstrap interval; share = evaluations with it")
    print(f"{'kind':14}  {'feature':44}  {'effect':>8}  {'90% interval':>20}  {'share':>5}")
    for kind in KINDS:
        features = [f for f in importance["features"] if f["kind"] == kind]
        for f in features[:top]:
            interval = f"[{f['low']:.4f}, {f['high']:.4f}]"
            print(f"{kind:14}  {f['name'][:44]:44}  {f['effect']:8.4f}  {interval:>20}  "
                  f"{f['frequency']:5.0%}")
    fits = ", ".join(f"{kind} {fit['r2']:.2f}" for kind, fit in importance["groups"].items())
    print(f"leave-one-out R^2 of each model (near 0 or below: the effects are noise): {fits}")
