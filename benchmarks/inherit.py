"""Weight inheritance against training from scratch: whole searches, several seeds.

For one workload (dataset, space, model and search settings), every seed runs
regularised evolution four ways: from scratch and with ``--inherit``, each at the
full training steps per candidate and at half of them. Per run it records the best
validation accuracy the search saw, the test accuracy of its best architecture
retrained from scratch on train + validation (the quality of the architecture
found, untouched by inherited weights), the regret (the best retrained test
accuracy of all runs of the workload minus this run's) and the wall time.

    python -m benchmarks.inherit --workload digits-mlp --seeds 0 1 2 3 4
    python -m benchmarks.inherit --workload mnist1d-conv --seeds 0 1 2

writes ``benchmarks/results/inherit_<workload>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks import machine

RESULTS = Path(__file__).resolve().parent / "results"

WORKLOADS = {
    "digits-mlp": dict(data="digits", space="mlp", population=16, budget=96, steps=200,
                       batch_size=64, width=32, final_steps=1000,
                       strategy_options={"population_size": 20}),
    "mnist1d-conv": dict(data="mnist1d", space="conv", population=8, budget=48, steps=200,
                         batch_size=64, width=16, final_steps=1000, norm="batch",
                         strategy_options={"population_size": 16}),
}


def run_one(workload: dict, seed: int, steps: int, inherit: bool) -> dict:
    import jaxnas

    settings = dict(workload, steps=steps)
    start = time.perf_counter()
    result = jaxnas.search(strategy="evolution", seed=seed, inherit=inherit, **settings)
    wall = time.perf_counter() - start
    inherited = sum(r.parent is not None for r in result.history)
    return {"seed": seed, "steps": steps, "inherit": inherit,
            "best_val_acc": max(r.val_acc for r in result.history),
            "chosen_val_acc": result.best.val_acc, "test_accuracy": result.test_accuracy,
            "evaluations": len(result.history), "inherited": inherited,
            "search_seconds": result.wall_seconds, "wall_seconds": wall}


def summarise(runs: list[dict]) -> list[dict]:
    """Per (inherit, steps): mean and minimum over seeds, regret against the best run."""
    best_test = max(r["test_accuracy"] for r in runs)
    rows = []
    for inherit in (False, True):
        for steps in sorted({r["steps"] for r in runs}, reverse=True):
            group = [r for r in runs if r["inherit"] == inherit and r["steps"] == steps]
            if not group:
                continue
            val = np.array([r["best_val_acc"] for r in group])
            test = np.array([r["test_accuracy"] for r in group])
            rows.append({
                "arm": "inherit" if inherit else "scratch", "steps": steps,
                "seeds": len(group), "best_val_acc_mean": float(val.mean()),
                "best_val_acc_min": float(val.min()), "test_mean": float(test.mean()),
                "test_min": float(test.min()),
                "regret_mean": float((best_test - test).mean()),
                "regret_max": float((best_test - test).max()),
                "inherited_fraction": float(np.mean([r["inherited"] / r["evaluations"]
                                                     for r in group])),
                "search_seconds_mean": float(np.mean([r["search_seconds"] for r in group]))})
    return rows


def markdown(report: dict) -> str:
    w = report["workload"]
    lines = [
        f"# Weight inheritance: {report['name']}",
        "",
        f"Machine: {report['machine']}. Made by `{report['command']}`.",
        "",
        f"Regularised evolution (population of {w['strategy_options']['population_size']}, "
        f"{w['population']} children per generation), {w['budget']} unique evaluations, "
        f"{w['space']} on {w['data']}, width {w['width']}, adam at the default learning "
        f"rate, minibatches of {w['batch_size']}; the best architecture retrained "
        f"{w['final_steps']} steps from scratch on train + validation and tested once. "
        f"Seeds {', '.join(map(str, report['seeds']))}.",
        "",
        "'best val acc' is the best validation accuracy the search saw (with inheritance "
        "a child's includes what its ancestors trained); 'test' is the retrained best "
        "architecture's test accuracy, which inheritance cannot inflate; regret is the "
        "best test accuracy of all runs below minus the run's. Mean and minimum (regret: "
        "maximum) over the seeds:",
        "",
        "| arm | steps per candidate | best val acc mean (min) | test mean (min) | "
        "regret mean (max) | inherited | search s (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["summary"]:
        lines.append(
            f"| {row['arm']} | {row['steps']} | {row['best_val_acc_mean']:.4f} "
            f"({row['best_val_acc_min']:.4f}) | {row['test_mean']:.4f} ({row['test_min']:.4f}) "
            f"| {100 * row['regret_mean']:.2f} ({100 * row['regret_max']:.2f}) points | "
            f"{100 * row['inherited_fraction']:.0f}% | {row['search_seconds_mean']:.0f} |")
    lines += ["", "Every run:", "", "| seed | arm | steps | best val acc | test | search s |",
              "|---|---|---|---|---|---|"]
    for r in report["runs"]:
        lines.append(f"| {r['seed']} | {'inherit' if r['inherit'] else 'scratch'} | "
                     f"{r['steps']} | {r['best_val_acc']:.4f} | {r['test_accuracy']:.4f} | "
                     f"{r['search_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inherit",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, help="output prefix (default "
                        "benchmarks/results/inherit_<workload>)")
    args = parser.parse_args(argv)
    workload = WORKLOADS[args.workload]
    out = args.out or RESULTS / f"inherit_{args.workload}"
    runs = []
    for seed in args.seeds:
        for steps in (workload["steps"], workload["steps"] // 2):
            for inherit in (False, True):
                runs.append(run_one(workload, seed, steps, inherit))
                r = runs[-1]
                print(f"seed {seed} steps {steps} {'inherit' if inherit else 'scratch'}: "
                      f"best val acc {r['best_val_acc']:.4f}, test {r['test_accuracy']:.4f}, "
                      f"{r['search_seconds']:.0f} s", flush=True)
    command = (f"python -m benchmarks.inherit --workload {args.workload} --seeds "
               f"{' '.join(map(str, args.seeds))}")
    report = {"name": args.workload, "workload": workload, "seeds": args.seeds,
              "machine": machine(), "command": command, "runs": runs,
              "summary": summarise(runs)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(report) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
