"""Does searching the learning rate with the architecture pay? Three searches compared.

``python -m benchmarks.joint_hp --preset mnist1d`` runs, for each seed, at the same
budget of evaluations and training steps:

1. ``default``: architecture only, at the default learning rate (``--lr``'s default);
2. ``grid``: architecture only, one search per learning rate of a grid (3e-4, 1e-3,
   3e-3, 1e-2), the one whose best candidate has the lowest validation loss kept; its
   wall time is the whole grid's (the grid's cost counted);
3. ``joint``: architecture and learning rate together (``--search-hp
   learning_rate=3e-4:1e-2:log``, the grid's span), each candidate at its own.

Every search retrains its best on train + validation and tests it once; the choice
among the grid's searches uses validation loss only. It writes
``benchmarks/results/joint_hp_<name>.{json,md}``: test accuracy (mean and minimum over
seeds) and wall time per method, rewritten after every seed; ``--resume`` keeps the
seeds already measured and runs the rest. Untimed searches of one generation compile every
program first, so no method pays for compiling (the learning rate is traced: all three
train in the same programs).

Presets: ``mnist1d`` is the README's MNIST-1D ``conv`` command; ``digits-nb201`` is
NAS-Bench-201 cells on digits; ``tiny`` only checks that the script works (seconds of
training, meaningless numbers).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import machine

RESULTS = Path(__file__).resolve().parent / "results"
GRID = (3e-4, 1e-3, 3e-3, 1e-2)
METHODS = ("default", "grid", "joint")
PRESETS = {
    "mnist1d": dict(data="mnist1d", space="conv", cells=2, width=32, population=8,
                    budget=40, steps=600, batch_size=128, final_steps=3000),
    "digits-nb201": dict(data="digits", space="nasbench201", cells=1, width=16, population=8,
                         budget=40, steps=300, batch_size=64, final_steps=1000),
    "tiny": dict(data="digits", space="mlp", cells=1, width=8, population=4, budget=8,
                 steps=10, batch_size=32, final_steps=10),
}


def _search(settings: dict, seed: int, **extra) -> dict:
    """One search's figures: test accuracy, the winner's validation loss and learning
    rate, wall time."""
    import jaxnas

    start = time.perf_counter()
    result = jaxnas.search(space=settings["space"], data=settings["data"],
                           budget=settings["budget"], seed=seed,
                           population=settings["population"], steps=settings["steps"],
                           batch_size=settings["batch_size"], width=settings["width"],
                           cells=settings["cells"], final_steps=settings["final_steps"],
                           **extra)
    return {"test_accuracy": result.test_accuracy, "val_loss": result.best.val_loss,
            "learning_rate": result.hyperparameters["learning_rate"],
            "evaluations": len(result.history),
            "wall_s": round(time.perf_counter() - start, 2)}


def run_seed(settings: dict, seed: int, grid: tuple[float, ...], span: str) -> list[dict]:
    """The three methods' rows for one seed. The default learning rate, when it is a
    grid point, is that grid search itself (the searches are deterministic)."""
    from jaxnas.search import SearchConfig

    tried = [_search(settings, seed, learning_rate=lr) for lr in grid]
    default = next((run for run in tried if run["learning_rate"] == SearchConfig.learning_rate),
                   None) or _search(settings, seed, learning_rate=SearchConfig.learning_rate)
    chosen = min(tried, key=lambda run: run["val_loss"])
    rows = [{"method": "default", "seed": seed, **default}]
    rows.append({"method": "grid", "seed": seed, **chosen,
                 "wall_s": round(sum(run["wall_s"] for run in tried), 2),
                 "evaluations": sum(run["evaluations"] for run in tried),
                 "grid": [{"learning_rate": run["learning_rate"], "val_loss": run["val_loss"],
                           "test_accuracy": run["test_accuracy"]} for run in tried]})
    rows.append({"method": "joint", "seed": seed,
                 **_search(settings, seed, hyperparameters={"learning_rate": span})})
    return rows


def summarise(rows: list[dict]) -> dict:
    """Per method: test accuracy mean and minimum over seeds, mean wall time."""
    summary = {}
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        accuracy = np.array([r["test_accuracy"] for r in mine])
        summary[method] = {"seeds": len(mine), "test_accuracy_mean": float(accuracy.mean()),
                           "test_accuracy_min": float(accuracy.min()),
                           "wall_s_mean": float(np.mean([r["wall_s"] for r in mine])),
                           "evaluations_mean": float(np.mean([r["evaluations"] for r in mine]))}
    return summary


def markdown(name: str, record: dict) -> str:
    summary, rows = record["summary"], record["runs"]
    lines = [f"# Joint search of the learning rate: {name}", "",
             f"Machine: {record['machine']}. Settings: {json.dumps(record['settings'])}; "
             f"grid {record['grid']}; joint range {record['span']}; "
             f"`python -m benchmarks.joint_hp --preset {record['preset']}`.", "",
             "| method | seeds | test accuracy mean | minimum | wall time per seed (s) | "
             "evaluations per seed |", "|---|---|---|---|---|---|"]
    for method, s in summary.items():
        lines.append(f"| {method} | {s['seeds']} | {s['test_accuracy_mean']:.4f} | "
                     f"{s['test_accuracy_min']:.4f} | {s['wall_s_mean']:.1f} | "
                     f"{s['evaluations_mean']:.0f} |")
    lines += ["", "| method | seed | learning rate | val loss | test accuracy | wall (s) |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['seed']} | {r['learning_rate']:.3g} | "
                     f"{r['val_loss']:.4f} | {r['test_accuracy']:.4f} | {r['wall_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, default="mnist1d")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--name", help="results file stem (default: the preset)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--resume", action="store_true",
                        help="keep the seeds already in the results file and run the rest")
    args = parser.parse_args(argv)
    settings = PRESETS[args.preset]
    span = f"{GRID[0]}:{GRID[-1]}:log"
    name = args.name or args.preset
    path = args.out / f"joint_hp_{name}.json"
    record = {"preset": args.preset, "settings": settings, "grid": list(GRID), "span": span,
              "seeds": args.seeds, "machine": machine(), "runs": []}
    if args.resume and path.exists():
        done = json.loads(path.read_text())
        if any(done.get(key) != record[key] for key in ("preset", "settings", "grid", "span")):
            sys.exit(f"joint_hp: {path} was measured with other settings; "
                     "remove it or drop --resume")
        record["runs"], record["machine"] = done["runs"], done.get("machine", record["machine"])
    # A generation of each kind of search compiles every program (the final one too;
    # the joint genome's strategy programs) before anything is timed.
    warm_up = {**settings, "budget": settings["population"]}
    _search(warm_up, 10_000, learning_rate=GRID[0])
    _search(warm_up, 10_000, hyperparameters={"learning_rate": span})
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in range(args.seeds):
        if any(r["seed"] == seed for r in record["runs"]):
            continue
        rows = run_seed(settings, seed, GRID, span)
        record["runs"] += rows
        print(f"seed {seed}: " + ", ".join(f"{r['method']} {r['test_accuracy']:.4f} "
                                           f"({r['wall_s']:.0f} s)" for r in rows),
              file=sys.stderr, flush=True)
        # Written after every seed, so an interrupted measurement resumes (--resume).
        record["summary"] = summarise(record["runs"])
        text = markdown(name, record)
        for suffix, content in ((".json", json.dumps(record, indent=1) + "\n"), (".md", text)):
            temporary = path.with_suffix(suffix + ".tmp")
            temporary.write_text(content)
            temporary.replace(path.with_suffix(suffix))
    record["summary"] = summarise(record["runs"])
    print(markdown(name, record))


if __name__ == "__main__":
    main()
