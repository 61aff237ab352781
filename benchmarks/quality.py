"""Search quality on jaxnas's own tabular benchmark (``benchmarks.tabulate``).

``python -m benchmarks.quality`` runs every strategy for 20 seeds against the table
by lookup and writes ``benchmarks/results/quality_nb201_mnist1d.{json,md,png}``:

* regret curves: after n evaluations (n = 10..150), the test error of the cell
  with the best validation error found so far, minus the best test error in the
  table; mean, median and the 25-75% spread over seeds. Multi-fidelity strategies
  (successive halving, Hyperband; eta 2, two rungs) train their first rung for the
  table's low fidelity (validation after half the steps, the table's
  ``val_acc_low``), which costs half a full evaluation (a survivor's continued
  training is counted in full: conservative); only top-rung evaluations are picked.
* zero-cost proxies: Spearman rank correlation of each proxy (at initialisation,
  one minibatch of 64 training examples) with the table's validation accuracy,
  over every unique cell.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = 20
BATCH = 10
BUDGET = 150  # evaluations; NAS-Bench-101's comparison point in the BANANAS paper
CHECKPOINTS = (10, 20, 30, 50, 75, 100, 150)
# NAS-Bench-101, 150 queries, mean test error (BANANAS paper, White et al. 2021).
LITERATURE = {"random": 6.34, "evolution": 6.11, "local": 5.93, "bananas": 5.92}


class Table:
    """The table's numbers for all 15,625 cells (by enumeration index)."""

    def __init__(self, path: Path):
        import numpy as np

        table = json.loads(path.read_text())
        columns = {name: i for i, name in enumerate(table["columns"])}
        rows = table["rows"]
        self.meta = table["meta"]
        self.complete = bool(self.meta.get("complete"))

        def column(name):
            return np.asarray([row[columns[name]] for row in rows], np.float32)

        self.unique_val_acc = column("val_acc")
        self.unique_cells = [row[columns["arch"]] for row in rows]
        if self.complete:  # by enumeration index, for lookups
            index = np.asarray(table["index"])
            self.val_err = 1.0 - column("val_acc")[index]
            self.val_err_low = 1.0 - column("val_acc_low")[index]
            self.test_err = 1.0 - column("test_acc")[index]

    def model_config(self):
        """The networks the table trained (tables before --stem-kernel used 3, before
        --norm the layer norm)."""
        from jaxnas.nn import ModelConfig

        return ModelConfig(width=self.meta["width"], num_cells=self.meta["cells"],
                           stem_kernel=self.meta.get("stem_kernel", 3),
                           norm=self.meta.get("norm", "layer"))


def cell_index(archs):
    """Enumeration index of nasbench201 cells, any leading axes (jittable): the six
    edge ops are the base-5 digits, the first edge most significant."""
    import jax.numpy as jnp

    digits = jnp.asarray(archs.ops)[..., 1:7].astype(jnp.int32)
    return digits @ (5 ** jnp.arange(5, -1, -1, dtype=jnp.int32))


def _strategies(space, score_fn, steps: int):
    from jaxnas import strategies

    single = {
        "random": dict(batch_size=BATCH),
        "evolution": dict(batch_size=BATCH, population_size=20, tournament_size=5),
        "local": dict(batch_size=BATCH),
        "reinforce": dict(batch_size=BATCH),
        "bananas": dict(batch_size=BATCH, capacity=160, train_steps=50),
        "zero_cost": dict(batch_size=BATCH, pool_size=100, score_fn=score_fn),
        # Rungs of steps // 2 and steps: the table's two fidelities.
        "halving": dict(batch_size=BATCH, eta=2, rungs=2, max_steps=steps),
        "hyperband": dict(batch_size=BATCH, eta=2, rungs=2, max_steps=steps),
    }
    return {name: strategies.get(name, space, **config) for name, config in single.items()}


def _histories(strategy, evaluate, generations: int):
    """Per-seed History, stacked on a leading seed axis (numpy)."""
    import jax
    import numpy as np

    from jaxnas import strategies

    keys = jax.random.split(jax.random.key(2026), SEEDS)
    if strategy.info.jittable:
        def run(key):
            k_init, k_run = jax.random.split(key)
            return strategies.make_fused(strategy, evaluate, generations)(
                k_run, strategy.init(k_init))[1]

        return jax.tree.map(np.asarray, jax.jit(jax.vmap(run))(keys))
    runs = [strategies.run_stepwise(key, strategy, jax.jit(evaluate), generations)[1]
            for key in keys]
    return jax.tree.map(lambda *leaves: np.stack(leaves), *runs)


def regret_curve(table: Table, history, top_steps: int | None) -> dict:
    """Regret at CHECKPOINTS evaluations for every seed."""
    import numpy as np

    index = np.asarray(cell_index(history.archs))  # (S, G, B)
    seeds = index.shape[0]
    index = index.reshape(seeds, -1)
    if top_steps is None:
        cost = np.ones(index.shape[1])[None].repeat(seeds, 0)
        eligible = np.ones_like(index, bool)
    else:
        steps = np.asarray(history.fidelity).reshape(seeds, -1, 1)
        steps = np.broadcast_to(steps, (seeds, steps.shape[1], BATCH)).reshape(seeds, -1)
        cost, eligible = steps / top_steps, steps >= top_steps
    spent = np.cumsum(cost, axis=1)
    best = float(table.test_err.min())
    curves = {}
    for n in CHECKPOINTS:
        regrets = []
        for s in range(seeds):
            seen = (spent[s] <= n + 1e-9) & eligible[s]
            if not seen.any():
                regrets.append(np.nan)
                continue
            cells = index[s][seen]
            pick = cells[np.argmin(table.val_err[cells])]
            regrets.append(float(table.test_err[pick]) - best)
        curves[n] = regrets
    return curves


def proxy_correlations(table: Table, chunk: int = 256) -> dict[str, float]:
    """Spearman rank correlation of each proxy with validation accuracy (unique cells)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxnas import data as data_lib
    from jaxnas import spaces
    from jaxnas.arch import nb201_from_str, stack
    from jaxnas.nn import make_model
    from jaxnas.nn.proxies import PROXIES, compute_proxies

    space = spaces.get("nasbench201")
    dataset = data_lib.load("mnist1d", seed=table.meta["seed"])
    model = make_model(space, dataset.input_shape, dataset.num_classes, table.model_config())
    x = jnp.asarray(dataset.x_train[:64])
    y = jnp.asarray(dataset.y_train[:64])
    archs = stack([nb201_from_str(cell) for cell in table.unique_cells])
    run = jax.jit(lambda key, a: compute_proxies(key, model, a, x, y))
    scores: dict[str, list] = {name: [] for name in PROXIES}
    for start in range(0, len(archs.ops), chunk):
        part = jax.tree.map(lambda a, s=start: a[s:s + chunk], archs)
        size = part.ops.shape[0]
        if size < chunk:  # one compiled shape: pad with copies of the first cell
            part = jax.tree.map(lambda a, n=size: np.concatenate(
                [a, np.repeat(a[:1], chunk - n, 0)]), part)
        out = run(jax.random.key(start), part)
        for name in PROXIES:
            scores[name].append(np.asarray(out[name])[:size])
    return {name: _spearman(np.concatenate(values), table.unique_val_acc)
            for name, values in scores.items()}


def _spearman(a, b) -> float:
    import numpy as np

    def ranks(v):
        v = np.where(np.isfinite(v), v, -np.inf)
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        # average ranks over ties
        values, inverse = np.unique(v, return_inverse=True)
        sums = np.bincount(inverse, weights=r)
        counts = np.bincount(inverse)
        return (sums / counts)[inverse]

    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=RESULTS / "nb201_mnist1d.json")
    parser.add_argument("--out", type=Path, default=RESULTS / "quality_nb201_mnist1d")
    parser.add_argument("--proxies-only", action="store_true",
                        help="only the proxy correlations (works on a --sample table)")
    args = parser.parse_args(argv)
    if not args.table.exists():
        raise SystemExit(f"{args.table} does not exist; build it with python -m "
                         "benchmarks.tabulate")
    import jax.numpy as jnp

    from jaxnas import data as data_lib
    from jaxnas import spaces
    from jaxnas.nn.proxies import make_score_fn

    table = Table(args.table)
    if args.proxies_only:
        proxies = proxy_correlations(table)
        report = {"table": table.meta, "proxy_spearman": proxies}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        _write(args.out.with_suffix(".json"), json.dumps(report, indent=1))
        _write(args.out.with_suffix(".md"), _proxy_markdown(report))
        print(_proxy_markdown(report))
        return
    if not table.complete:
        raise SystemExit(f"{args.table} is a partial table: regret curves need every cell "
                         "(run python -m benchmarks.tabulate to the end, or --proxies-only)")
    steps = table.meta["steps"]
    if table.meta["low_steps"] != steps // 2:
        raise SystemExit(f"{args.table}: the multi-fidelity runs need the low fidelity at half "
                         f"the steps ({steps // 2}); this table has {table.meta['low_steps']}")
    space = spaces.get("nasbench201")
    val_err, val_err_low = jnp.asarray(table.val_err), jnp.asarray(table.val_err_low)

    def evaluate(key, archs):
        del key
        return val_err[cell_index(archs)]

    def evaluate_fidelity(key, archs, trained):
        del key
        index = cell_index(archs)
        return jnp.where(trained >= steps, val_err[index], val_err_low[index])

    proxies = proxy_correlations(table)
    best_proxy = max(proxies, key=lambda name: proxies[name])
    mnist1d = data_lib.load("mnist1d", seed=table.meta["seed"])
    score_fn = make_score_fn(space, mnist1d, proxy=best_proxy,
                             model_config=table.model_config())
    results = {}
    for name, strategy in _strategies(space, score_fn, steps).items():
        if strategy.info.multi_fidelity:
            # A generation costs at least half a batch: enough to spend BUDGET evaluations.
            history = _histories(strategy, evaluate_fidelity, generations=2 * BUDGET // BATCH)
            curves = regret_curve(table, history, top_steps=steps)
        else:
            history = _histories(strategy, evaluate, generations=BUDGET // BATCH)
            curves = regret_curve(table, history, top_steps=None)
        results[name] = {str(n): _summary(v) for n, v in curves.items()}
        final = results[name][str(BUDGET)]
        if final["runs"]:
            print(f"{name:10s} regret at {BUDGET}: mean {100 * final['mean']:.2f} "
                  f"median {100 * final['median']:.2f} points", flush=True)
    report = {"table": table.meta, "seeds": SEEDS, "batch": BATCH, "budget": BUDGET,
              "best_test_error": float(table.test_err.min()), "regret": results,
              "proxy_spearman": proxies, "zero_cost_proxy": best_proxy,
              "literature_nb101_test_error_at_150": LITERATURE}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _write(args.out.with_suffix(".json"), json.dumps(report, indent=1))
    _write(args.out.with_suffix(".md"), _markdown(report))
    _plot(report, args.out.with_suffix(".png"))
    print(f"wrote {args.out}.{{json,md,png}}", file=sys.stderr)


def _summary(regrets: list[float]) -> dict:
    """Mean, median and quartiles over the seeds that have picked a cell by then
    (multi-fidelity runs pick nothing before their first top-rung evaluation)."""
    import numpy as np

    picked = np.asarray([r for r in regrets if np.isfinite(r)])
    if not len(picked):
        return {"mean": None, "median": None, "q25": None, "q75": None, "runs": 0}
    return {"mean": float(picked.mean()), "median": float(np.median(picked)),
            "q25": float(np.percentile(picked, 25)), "q75": float(np.percentile(picked, 75)),
            "runs": len(picked)}


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def _describe(meta: dict) -> str:
    sample = (f" (a random sample of {meta['rows']}, seed {meta['seed']})"
              if meta.get("sample") else "")
    return (f"{meta['unique_cells']} unique cells{sample}, {meta['steps']} adam steps "
            f"(cosine), batch {meta['batch_size']}, width {meta['width']}, {meta['cells']} "
            f"cell(s), stem kernel {meta.get('stem_kernel', 3)}; the run that completed it "
            f"(tabulate resumes) took {meta['seconds_this_run']:.0f} s on {meta['cpu']} "
            f"({meta['devices']} jax devices).")


def _markdown(report: dict) -> str:
    lines = [
        "# Search quality on the jaxnas NAS-Bench-201 / MNIST-1D table",
        "",
        f"Table: {_describe(report['table'])} Best test error in the table: "
        f"{100 * report['best_test_error']:.2f}%.",
        "",
        f"Regret (test error of the best-validation cell found, minus the table's best, "
        f"in percentage points), {report['seeds']} seeds, batches of {report['batch']}:",
        "",
        "| strategy | " + " | ".join(f"n={n}" for n in CHECKPOINTS) + " |",
        "|---|" + "---|" * len(CHECKPOINTS),
    ]
    for name, curve in report["regret"].items():
        cells = ["-" if curve[str(n)]["runs"] == 0 else
                 f"{100 * curve[str(n)]['mean']:.2f} ({100 * curve[str(n)]['q25']:.2f}-"
                 f"{100 * curve[str(n)]['q75']:.2f})" for n in CHECKPOINTS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Mean (25%-75% over seeds). Literature, NAS-Bench-101 at 150 queries (test "
              "error, BANANAS paper): " + ", ".join(
                  f"{k} {v}%" for k, v in report["literature_nb101_test_error_at_150"].items()),
              "", f"Zero-cost proxies, Spearman rank correlation with validation accuracy "
              f"over all {report['table']['unique_cells']} unique cells (zero_cost above uses "
              f"`{report['zero_cost_proxy']}`):", ""]
    return "\n".join(lines + _proxy_table(report["proxy_spearman"]))


def _proxy_table(proxies: dict[str, float]) -> list[str]:
    return ["| proxy | Spearman |", "|---|---|"] + [
        f"| {name} | {value:.3f} |" for name, value in proxies.items()]


def _proxy_markdown(report: dict) -> str:
    lines = [
        "# Zero-cost proxies on the jaxnas NAS-Bench-201 / MNIST-1D table",
        "",
        f"{_describe(report['table'])} Spearman rank correlation of each proxy (at "
        "initialisation, one minibatch of 64 training examples) with validation accuracy:",
        ""]
    return "\n".join(lines + _proxy_table(report["proxy_spearman"]))


def _plot(report: dict, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in report["regret"].items():
        points = [n for n in CHECKPOINTS if curve[str(n)]["runs"]]
        mean = [100 * curve[str(n)]["mean"] for n in points]
        low = [100 * curve[str(n)]["q25"] for n in points]
        high = [100 * curve[str(n)]["q75"] for n in points]
        ax.plot(points, mean, marker="o", label=name)
        ax.fill_between(points, low, high, alpha=0.12)
    ax.set_xlabel("evaluations (full-training equivalents)")
    ax.set_ylabel("test regret (percentage points)")
    ax.set_xscale("log")
    ax.set_title("NAS-Bench-201 cells on MNIST-1D, jaxnas table")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
