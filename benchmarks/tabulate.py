"""A tabular benchmark built by jaxnas: every unique NAS-Bench-201 cell on MNIST-1D.

``python -m benchmarks.tabulate`` trains each of the 6,466 unique cells of the
``nasbench201`` space (15,625 cells; NATS-Bench's rule merges those that compute the
same function) with 1-D ops (``nor_conv_3x3`` is a k=3 convolution over the
sequence, ``avg_pool_3x3`` a k=3 average pool) on MNIST-1D, at one short budget, and
stores a compact table::

    benchmarks/results/nb201_mnist1d.json
      meta:    settings, machine, versions, wall seconds
      columns: row, hash, arch, val_acc, val_loss, test_acc, params, flops, val_acc_low
               (validation accuracy after the first --low-steps steps of the same run:
               a lower fidelity for successive halving and Hyperband)
      rows:    one per unique cell (row = its number in first-appearance order of the
               enumeration; all 6,466, or a --sample of them)
      index:   15,625 row numbers, cell i of the enumeration -> its unique row

Cell i of the enumeration has the six edge ops ``ops[1:7]`` whose base-5 digits,
first edge most significant, spell i (``benchmarks.quality`` looks cells up by that
index, jittably). Progress is appended to ``<out>.partial.jsonl`` after every
chunk, so an interrupted run continues where it stopped (same settings only).
Every candidate's initial weights come from its unique row number, so the table
does not depend on the chunk size or on where a run was resumed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _settings(args) -> dict:
    return {"dataset": "mnist1d", "space": "nasbench201", "steps": args.steps,
            "low_steps": args.low_steps,
            "batch_size": args.batch_size, "learning_rate": args.lr, "width": args.width,
            "cells": args.cells, "stem_kernel": args.stem_kernel, "norm": args.norm,
            "schedule": "cosine",
            "optimizer": "adam",
            "program": args.program, "seed": args.seed, "sample": args.sample}


def unique_cells():
    """(all 15,625 cells in enumeration order, unique row of each, first cell of each row)."""
    import numpy as np

    from jaxnas import spaces
    from jaxnas.arch import Arch

    space = spaces.get("nasbench201")
    cells = space.enumerate().to_numpy()
    rows: dict[str, int] = {}
    index = np.empty(len(cells.ops), np.int64)
    first = []
    for i in range(len(cells.ops)):
        digest = space.canonical_hash(Arch(adj=cells.adj[i], ops=cells.ops[i]))
        if digest not in rows:
            rows[digest] = len(first)
            first.append(i)
        index[i] = rows[digest]
    return space, cells, index, np.asarray(first), list(rows)


def _read_partial(path: Path, settings: dict) -> dict[int, list]:
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    if not lines or json.loads(lines[0]) != settings:
        raise SystemExit(f"{path} holds a run with other settings; remove it or use the "
                         "same options")
    done = {}
    for line in lines[1:]:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill: its chunk runs again
            continue
        done[row[0]] = row[1:]
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tabulate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--low-steps", type=int, default=None,
                        help="steps of the low fidelity (default steps // 2)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--cells", type=int, default=1)
    parser.add_argument("--stem-kernel", type=int, default=3,
                        help="kernel of the stem convolution (the layer-norm table of the "
                             "previous release used 39; with batch norm 3 learns far better: "
                             "median validation accuracy 0.84 against 0.66 at 300 steps)")
    parser.add_argument("--norm", choices=("batch", "layer"), default="batch",
                        help="normalisation of the conv ops (ModelConfig.norm)")
    parser.add_argument("--program", default="auto",
                        choices=("auto", "cpu", "accelerator", "select"),
                        help="TrainConfig.program (default: the trainer's choice)")
    parser.add_argument("--chunk", type=int, default=256, help="cells per training call")
    parser.add_argument("--sample", type=int, default=None,
                        help="train only N unique cells drawn at random with --seed "
                             "(a partial table)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "nb201_mnist1d.json")
    args = parser.parse_args(argv)
    if args.low_steps is None:
        args.low_steps = max(args.steps // 2, 1)
    if not 1 <= args.low_steps < args.steps:
        parser.error("--low-steps must be at least 1 and below --steps")
    for name in ("steps", "batch_size", "width", "cells", "stem_kernel", "chunk"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.stem_kernel % 2 == 0:
        parser.error("--stem-kernel must be odd ('same' padding)")
    if args.sample is not None and not 1 <= args.sample <= 6466:
        parser.error("--sample must be between 1 and 6466")

    from jaxnas.cli import use_a_device_per_core

    use_a_device_per_core()  # as the jaxnas command does, before JAX starts
    import jax
    import numpy as np

    from jaxnas import compile_cache
    from jaxnas import data as data_lib
    from jaxnas.arch import Arch, nb201_to_str
    from jaxnas.nn import ModelConfig, compute_nodes, make_model
    from jaxnas.train import TrainConfig, evaluate, put_data, train_population

    compile_cache.enable()
    settings = _settings(args)
    partial = args.out.with_suffix(".partial.jsonl")
    space, cells, index, first, hashes = unique_cells()
    selected = np.arange(len(first))
    if args.sample is not None:
        draw = np.random.default_rng(args.seed).choice(len(first), args.sample, replace=False)
        selected = np.sort(draw)
    total = len(selected)
    done = _read_partial(partial, settings)
    dataset = data_lib.load("mnist1d", seed=args.seed)
    device_data = put_data(dataset)
    # Two fidelities from one run: validated after low_steps, then continued to steps.
    config_low = TrainConfig(steps=args.low_steps, batch_size=args.batch_size,
                             learning_rate=args.lr, schedule="cosine",
                             schedule_steps=args.steps, program=args.program,
                             model=ModelConfig(width=args.width, num_cells=args.cells,
                                               stem_kernel=args.stem_kernel, norm=args.norm))
    config = dataclasses.replace(config_low, steps=args.steps - args.low_steps)
    model = make_model(space, dataset.input_shape, dataset.num_classes, config.model)
    root = jax.random.key(args.seed)
    init_root, batch_key = jax.random.split(root)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not partial.exists():
        partial.write_text(json.dumps(settings) + "\n")
    todo = np.asarray([r for r in selected if r not in done], np.int32)
    if len(todo):
        # Sorted by compute nodes, each chunk comes from one bucket: few compiled sizes.
        heads = Arch(adj=cells.adj[first[todo]], ops=cells.ops[first[todo]])
        counts = np.asarray(jax.vmap(lambda a: compute_nodes(model.layout, a))(heads))
        todo = todo[np.argsort(counts, kind="stable")]
    start = time.perf_counter()
    print(f"{total} unique cells, {len(done)} done, {len(todo)} to train", flush=True)
    for offset in range(0, len(todo), args.chunk):
        rows = todo[offset:offset + args.chunk]
        archs = Arch(adj=cells.adj[first[rows]], ops=cells.ops[first[rows]])
        keys = jax.vmap(jax.random.fold_in, (None, 0))(init_root, rows)
        low = train_population(keys, space, archs, device_data, config_low,
                               batch_key=batch_key)
        result = train_population(keys, space, archs, device_data, config, state=low.state)
        test_loss, test_acc = evaluate(space, archs, result.params, dataset.x_test,
                                       dataset.y_test, dataset.num_classes, config)
        params = np.asarray(model.num_params(archs))
        flops = np.asarray(model.flops(archs))
        with open(partial, "a") as file:
            for j, row in enumerate(rows.tolist()):
                values = [row, float(result.val_acc[j]), float(result.val_loss[j]),
                          float(test_acc[j]), int(params[j]), int(flops[j]),
                          float(low.val_acc[j])]
                done[row] = values[1:]
                file.write(json.dumps(values) + "\n")
        elapsed = time.perf_counter() - start
        trained = offset + len(rows)
        print(f"{len(done)}/{total} cells, {trained / elapsed:.2f} cells/s, "
              f"median val acc {np.median(result.val_acc):.3f}", flush=True)
    seconds = time.perf_counter() - start
    table_rows = []
    for row in selected.tolist():
        val_acc, val_loss, test_acc, params, flops, low_acc = done[row]
        arch = Arch(adj=cells.adj[first[row]], ops=cells.ops[first[row]])
        table_rows.append([row, hashes[row], nb201_to_str(arch),
                           round(val_acc, 5), round(val_loss, 5), round(test_acc, 5), params,
                           flops, round(low_acc, 5)])
    device = jax.devices()[0]
    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    meta = dict(settings, unique_cells=len(first), rows=total, complete=total == len(first),
                seconds_this_run=round(seconds, 1), cpu=cpu, cores=os.cpu_count(),
                device_kind=device.device_kind, devices=len(jax.devices()),
                jax=jax.__version__, python=platform.python_version())
    table = {"meta": meta,
             "columns": ["row", "hash", "arch", "val_acc", "val_loss", "test_acc", "params",
                         "flops", "val_acc_low"],
             "rows": table_rows,
             "index": index.tolist() if total == len(first) else None}
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(table, separators=(",", ":")) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, {total} rows) in "
          f"{seconds:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
