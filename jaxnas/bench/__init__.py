"""``jaxnas bench``: every strategy against a table, many seeds at once (a top layer).

Like ``jaxnas.search`` this module is a driver: it reads the clock and writes
the report files; the lookups and strategies it runs are pure. A jittable
strategy runs all seeds as one program: the whole search is a ``lax.scan``
(``strategies.make_fused``) vmapped over seeds. A host strategy (``local``)
runs seed after seed in a Python loop. Every asked architecture costs one
evaluation (a fused search has no cache, so repeats are paid for); on a table
with fidelities an evaluation at ``steps`` costs ``steps / max_fidelity``.

The default table of ``--table jaxnas`` (``benchmarks/results/nb201_mnist1d.json``,
made by ``benchmarks.tabulate``) ships in this package gzip-compressed
(``nb201_mnist1d.json.gz``), so an installed wheel runs it without a checkout.
"""

from __future__ import annotations

import contextlib
import gzip
import inspect
import math
import os
import tempfile
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas import strategies
from jaxnas.tables import Table

# Seeds vmapped together in one step of a ``lax.map`` over the seeds (default: all of
# them at once). BANANAS retrains a 5-MLP ensemble after every batch; vmapped over
# 1000 seeds its activations (1000 x 5 x 100 rows x 32 floats, 64 MB each) overflow
# the CPU caches and the fused run was slower than the Python loop. 20 seeds at a
# time keep them in cache and give the same trajectories as the loop, bit for bit
# (vmapped over all 1000 seeds they differ from it by rounding).
SEED_CHUNKS = {"bananas": 20}
DEFAULT_TABLE = "nb201_mnist1d.json.gz"


@contextlib.contextmanager
def default_table_file() -> Iterator[Path]:
    """The path of the packaged jaxnas table (NAS-Bench-201 cells on MNIST-1D),
    decompressed into a temporary file that lives until the block ends."""
    blob = resources.files(__name__).joinpath(DEFAULT_TABLE).read_bytes()
    with tempfile.TemporaryDirectory(prefix="jaxnas-table-") as directory:
        path = Path(directory) / DEFAULT_TABLE.removesuffix(".gz")
        path.write_bytes(gzip.decompress(blob))
        yield path


def needs(name: str) -> list[str]:
    """The required settings of strategy ``name`` that a table cannot give (a model, data,
    a training-free score): its factory's parameters without a default, but the space
    and the batch size."""
    parameters = inspect.signature(strategies.factory(name)).parameters.values()
    return [p.name for p in parameters if p.default is p.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name not in ("space", "batch_size")]


def strategy_configs(table: Table, batch_size: int, budget: int) -> dict[str, dict]:
    """The settings each strategy runs with against ``table``."""
    fidelities = table.fidelities
    if len(fidelities) >= 3:
        halving = dict(eta=3, rungs=3, max_steps=fidelities[-1])
    elif len(fidelities) == 2:
        halving = dict(eta=max(2, fidelities[1] // fidelities[0]), rungs=2,
                       max_steps=fidelities[1])
    else:  # no fidelities: every lookup is a full evaluation
        halving = dict(eta=3, rungs=3, max_steps=27)
    capacity = batch_size * math.ceil(budget / batch_size)
    return {
        "random": {},
        "evolution": dict(population_size=20, tournament_size=5),
        "local": {},
        "reinforce": {},
        "bananas": dict(capacity=capacity, train_steps=50),
        "halving": halving,
        "hyperband": halving,
    }


def generations(config: dict, multi_fidelity: bool, table: Table, budget: int,
                batch_size: int) -> int:
    """Enough generations to spend ``budget`` evaluations even at the lowest fidelity."""
    rounds = math.ceil(budget / batch_size)
    if multi_fidelity and table.fidelities:
        rounds *= config["eta"] ** (config["rungs"] - 1)
    return rounds


def _fused_rows(strategy, table: Table, steps: int, chunk: int | None = None):
    """jit(vmap over seeds) of a whole search returning (rows (G, B), fidelity (G,));
    with ``chunk``, a ``lax.map`` over the seeds vmapping ``chunk`` at a time."""
    run = strategies.make_fused(strategy, table.evaluate, steps)

    def one_seed(key):
        k_init, k_run = jax.random.split(key)
        _, history = run(k_run, strategy.init(k_init))
        fidelity = history.fidelity if history.fidelity is not None else jnp.zeros(steps)
        return table.rows(history.archs), fidelity

    if chunk is None:
        return jax.jit(jax.vmap(one_seed))
    return jax.jit(lambda keys: jax.lax.map(one_seed, keys, batch_size=chunk))


def _loop_rows(strategy, table: Table, steps: int, keys) -> tuple[np.ndarray, np.ndarray]:
    """The same search seed after seed in a Python loop (``run_stepwise``, with ``init``,
    ``ask``, ``tell`` and the lookup jitted: the fastest a host loop gets)."""
    evaluate = jax.jit(table.evaluate)
    init = jax.jit(strategy.init) if strategy.info.jittable else strategy.init
    rows, fidelity = [], []
    for key in keys:
        # run_stepwise splits the key the same way: same trajectory as the fused run.
        state = init(jax.random.split(key)[0])
        _, history = strategies.run_stepwise(key, strategy, evaluate, steps, state=state)
        rows.append(np.asarray(table.rows(history.archs)))
        fidelity.append(np.zeros(steps) if history.fidelity is None else history.fidelity)
    return np.stack(rows), np.stack(fidelity)


def regret_curves(table: Table, rows: np.ndarray, fidelity: np.ndarray, batch_size: int,
                  budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Test regret (percentage points) after n = 1..budget evaluations, per seed.

    The pick after n evaluations is the best-validation architecture among those
    evaluated at the top fidelity within a cost of n. Returns (S, budget) regret
    (NaN before a first pick) and (S,) test accuracy (%) of the pick after ``budget``.
    """
    seeds = rows.shape[0]
    rows = rows.reshape(seeds, -1)
    if table.fidelities:
        steps = np.repeat(np.asarray(fidelity, np.float64), batch_size, axis=1)
        steps = np.where(steps > 0, steps, table.max_fidelity)  # single-fidelity strategies
        cost, eligible = steps / table.max_fidelity, steps >= table.max_fidelity
    else:
        cost, eligible = np.ones(rows.shape), np.ones(rows.shape, bool)
    val = np.asarray(table.val_acc)[np.maximum(rows, 0)]
    score = np.where(eligible & (rows >= 0), val, -np.inf)
    running = np.maximum.accumulate(score, axis=1)
    previous = np.concatenate([np.full((seeds, 1), -np.inf), running[:, :-1]], axis=1)
    order = np.arange(rows.shape[1])
    best_at = np.maximum.accumulate(np.where(score > previous, order, -1), axis=1)
    best_row = np.where(best_at >= 0, np.take_along_axis(rows, np.maximum(best_at, 0), 1), -1)
    spent = np.cumsum(cost, axis=1)
    picks = np.full((seeds, budget), -1)
    for n in range(1, budget + 1):
        last = (spent <= n + 1e-9).sum(1) - 1
        picks[:, n - 1] = np.where(last >= 0, best_row[np.arange(seeds), np.maximum(last, 0)], -1)
    test = np.where(picks >= 0, np.asarray(table.test_acc)[np.maximum(picks, 0)], np.nan)
    return 100 * (np.max(table.test_acc) - test), 100 * test[:, -1]


def _summary(values: np.ndarray) -> dict:
    picked = values[np.isfinite(values)]
    if not len(picked):
        return {"runs": 0}
    return {"mean": float(picked.mean()), "std": float(picked.std()),
            "median": float(np.median(picked)), "q25": float(np.percentile(picked, 25)),
            "q75": float(np.percentile(picked, 75)), "runs": int(len(picked))}


def bench(table: Table, names: list[str], *, seeds: int, budget: int, batch_size: int = 10,
          loop_seeds: int = 0, host_seeds: int = 20, seed: int = 0, progress=None) -> dict:
    """Runs each strategy for ``seeds`` seeds against ``table``; returns the report dict.

    ``loop_seeds`` > 0 also times each jittable strategy run seed after seed in a
    Python loop on that many seeds (after one warm-up seed), scaled to ``seeds``.
    Host strategies run ``min(seeds, host_seeds)`` seeds.
    """
    configs = strategy_configs(table, batch_size, budget)
    keys = jax.random.split(jax.random.key(seed), seeds)
    results, skipped = {}, {}
    for name in names:
        missing = needs(name)
        if missing:
            skipped[name] = (f"needs {', '.join(missing)}, which a table does not give "
                             "(it searches by training models on data)")
            continue
        config = configs.get(name, {})
        strategy = strategies.get(name, table.space, batch_size=batch_size, **config)
        steps = generations(config, strategy.info.multi_fidelity, table, budget, batch_size)
        entry = {"jittable": strategy.info.jittable, "generations": steps, "config": config}
        if strategy.info.jittable:
            chunk = SEED_CHUNKS.get(name, seeds)
            chunk = chunk if chunk < seeds else None
            if chunk:
                entry["seed_chunk"] = chunk
            start = time.perf_counter()
            run = _fused_rows(strategy, table, steps, chunk).lower(keys).compile()
            entry["compile_s"] = time.perf_counter() - start
            start = time.perf_counter()
            rows, fidelity = jax.block_until_ready(run(keys))
            entry["fused_s"] = time.perf_counter() - start
            entry["seeds"] = seeds
            if loop_seeds:
                _loop_rows(strategy, table, steps, keys[:1])  # compiles init, ask and tell
                timed = keys[:loop_seeds]
                start = time.perf_counter()
                _loop_rows(strategy, table, steps, timed)
                per_seed = (time.perf_counter() - start) / len(timed)
                entry.update(loop_seeds=len(timed), loop_s_per_seed=per_seed,
                             loop_s_scaled=per_seed * seeds,
                             speedup=per_seed * seeds / entry["fused_s"])
        else:
            count = min(seeds, host_seeds)
            start = time.perf_counter()
            rows, fidelity = _loop_rows(strategy, table, steps, keys[:count])
            entry.update(loop_s=time.perf_counter() - start, seeds=count)
        regret, final_test = regret_curves(table, np.asarray(rows), np.asarray(fidelity),
                                           batch_size, budget)
        entry["regret"] = [_summary(regret[:, n]) for n in range(budget)]
        entry["final_test_acc"] = _summary(final_test)
        results[name] = entry
        if progress is not None:
            progress(name, entry)
    return {"table": {"name": table.name, "rows": table.size, **table.meta,
                      "best_test_acc": float(jnp.max(table.test_acc)),
                      "fidelities": list(table.fidelities[:1] + table.fidelities[-1:])},
            "budget": budget, "batch_size": batch_size, "seeds": seeds,
            "results": results, "skipped": skipped}


def checkpoints(budget: int) -> list[int]:
    marks = [n for n in (10, 20, 50, 100, 200, 500, 1000) if n < budget]
    return marks + [budget]


def markdown(report: dict, command: str, machine: str) -> str:
    """The report as a Markdown page: regret table and timings."""
    budget, marks = report["budget"], checkpoints(report["budget"])
    table = report["table"]
    lines = [f"# {table['name']}: every strategy, {report['seeds']} seeds", "",
             f"`{command}`", "", f"Machine: {machine}.", "",
             f"Table: {table['rows']} rows from {table['source']} ({table['dataset']}); best "
             f"test accuracy {100 * table['best_test_acc']:.2f}%. Batches of "
             f"{report['batch_size']}; every asked architecture costs one evaluation "
             "(repeats included).", "",
             "Test regret in percentage points (best test accuracy in the table minus the "
             "test accuracy of the best-validation architecture found), mean (25%-75%):", "",
             "| strategy | seeds | " + " | ".join(f"n={n}" for n in marks)
             + f" | test acc at {budget} (mean ± std) |",
             "|---|---|" + "---|" * (len(marks) + 1)]
    for name, entry in report["results"].items():
        cells = []
        for n in marks:
            s = entry["regret"][n - 1]
            cells.append("-" if not s["runs"] else
                         f"{s['mean']:.2f} ({s['q25']:.2f}-{s['q75']:.2f})")
        final = entry["final_test_acc"]
        acc = "-" if not final["runs"] else f"{final['mean']:.2f} ± {final['std']:.2f}"
        lines.append(f"| {name} | {entry['seeds']} | " + " | ".join(cells) + f" | {acc} |")
    lines += ["", "Wall time (seconds):", "",
              "| strategy | how | seeds | run | compile | Python loop over seeds, scaled "
              "| speed-up |", "|---|---|---|---|---|---|---|"]
    for name, entry in report["results"].items():
        if entry["jittable"]:
            loop = (f"{entry['loop_s_scaled']:.1f} ({entry['loop_s_per_seed'] * 1e3:.0f} ms "
                    f"x {entry['seeds']}, timed on {entry['loop_seeds']})"
                    if "loop_s_scaled" in entry else "-")
            speed = "-" if "speedup" not in entry else (
                f"{entry['speedup']:.0f}x" if entry["speedup"] >= 10 else
                f"{entry['speedup']:.1f}x")
            how = ("fused, vmapped" if "seed_chunk" not in entry else
                   f"fused, vmapped {entry['seed_chunk']} seeds at a time")
            lines.append(f"| {name} | {how} | {entry['seeds']} | {entry['fused_s']:.2f} "
                         f"| {entry['compile_s']:.2f} | {loop} | {speed} |")
        else:
            lines.append(f"| {name} | Python loop (host strategy) | {entry['seeds']} | "
                         f"{entry['loop_s']:.2f} | - | - | - |")
    for name, reason in report["skipped"].items():
        lines.append(f"\n{name}: not run; it {reason}.")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> bool:
    """Regret curves (mean and 25-75% band) as a PNG; False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    n = np.arange(1, report["budget"] + 1)
    for name, entry in report["results"].items():
        ok = np.array([s["runs"] > 0 for s in entry["regret"]])
        get = lambda key, curve=entry["regret"]: np.array([s.get(key, np.nan) for s in curve])
        ax.plot(n[ok], get("mean")[ok], label=name)
        ax.fill_between(n[ok], get("q25")[ok], get("q75")[ok], alpha=0.12)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("test regret (percentage points)")
    ax.set_xscale("log")
    ax.set_title(f"{report['table']['name']}, {report['seeds']} seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return True
