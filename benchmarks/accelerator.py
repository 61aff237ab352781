"""The accelerator program's accounting, memory and compile count, measured on any machine.

Three parts, each writing ``benchmarks/results/accelerator_<part>.{json,md}``:

* ``flops``: useful / executed matmul FLOPs of the accelerator program (the same plan
  ``train_population`` runs, ``jaxnas.train.program_cost``) against the padded select
  program, P=1024 random cells of ``nasbench201``, ``conv`` and ``nasbench101`` (and
  the dense ``dag`` cell), widths 16 and 32, digits and MNIST-1D shapes, with chunks
  of at most 16 and of the trainer's own largest (a 1 / (4 * templates) share);
* ``memory``: the chunk memory estimate (XLA's memory analysis of a compiled step)
  against the peak resident memory measured while chunks train (a fresh process that
  loads its programs from a compilation cache, sampled every millisecond), and the
  chunk an 80 GB device gets for NAS-Bench-201 cells on CIFAR-shaped inputs;
* ``programs``: the training programs a 1,000-evaluation ``nasbench201`` search
  compiles with ``--program accelerator``.

    python -m benchmarks.accelerator flops memory programs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks import machine

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = {"digits": (8, 8, 1), "mnist1d": (40, 1)}


def _write(name: str, report: dict, markdown: list[str]) -> None:
    RESULTS.mkdir(exist_ok=True)
    for suffix, text in (("json", json.dumps(report, indent=1) + "\n"),
                         ("md", "\n".join(markdown) + "\n")):
        path = RESULTS / f"accelerator_{name}.{suffix}"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    print("\n".join(markdown), flush=True)


def flops() -> None:
    import jax
    import numpy as np

    from jaxnas import spaces
    from jaxnas.data import Dataset
    from jaxnas.nn import ModelConfig, make_model
    from jaxnas.train import TrainConfig, program_cost

    rows = []
    for space_name in ("nasbench201", "conv", "nasbench101", "dag"):
        space = spaces.get(space_name)
        archs = space.sample(jax.random.key(0), 1024)
        for dataset, shape in SHAPES.items():
            x = np.zeros((64,) + shape, np.float32)
            y = (np.arange(64) % 10).astype(np.int32)
            data = Dataset(name=dataset, x_train=x, y_train=y, x_val=x, y_val=y, x_test=x,
                           y_test=y, num_classes=10, input_shape=shape)
            for width in (16, 32):
                model = make_model(space, shape, 10, ModelConfig(width=width))
                row = {"space": space_name, "dataset": dataset, "width": width,
                       "select": float(np.asarray(model.flops(archs)).sum()
                                        / (1024 * model.executed_flops))}
                for name, chunk in (("chunk_16", 16), ("trainer", None)):
                    config = TrainConfig(model=ModelConfig(width=width), program="accelerator",
                                         chunk_size=chunk)
                    cost = program_cost(space, archs, data, config, devices=jax.devices()[:1])
                    row[name] = float(cost.useful.sum() / cost.executed.sum())
                    row[f"{name}_chunk"] = cost.layout.chunk
                rows.append(row)
                print(row, flush=True)
    lines = ["# Accelerator program: useful / executed matmul FLOPs", "",
             f"Machine: {machine()} (host-side accounting: `jaxnas.train.program_cost`, "
             "the plan `train_population` runs). P=1024 cells drawn with key 0; "
             f"{TrainConfig().templates} templates (the default); forward matmul FLOPs of "
             "stem, nodes and classifier, padding rows included.", "",
             "| space | data | width | select program | accelerator, chunks of 16 | "
             "accelerator, the trainer's own chunks (size) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['space']} | {r['dataset']} | {r['width']} | {r['select']:.2f} | "
              f"{r['chunk_16']:.2f} | {r['trainer']:.2f} ({r['trainer_chunk']}) |"
              for r in rows]
    _write("flops", {"machine": machine(), "rows": rows}, lines)


def _memory_worker(space_name: str, shape: tuple[int, ...], chunk: int, program: str,
                   cache: str) -> dict:
    """In a fresh process: the estimate, and the peak rise of the resident size while one
    chunk trains. Run twice: the first run compiles into the ``cache`` directory, the
    second loads the programs from it, so no compilation and no warm allocator hides the
    peak."""
    import jax
    import numpy as np

    from jaxnas import compile_cache, spaces
    from jaxnas.data import Dataset
    from jaxnas.nn import ModelConfig, make_model
    from jaxnas.train import TrainConfig, chunk_memory, put_data, train_population

    compile_cache.enable(cache)
    space = spaces.get(space_name)
    config = TrainConfig(steps=5, batch_size=64, model=ModelConfig(width=16), program=program,
                         chunk_size=chunk, keep_state=False, templates=2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512,) + shape).astype(np.float32)
    y = rng.integers(0, 10, 512).astype(np.int32)
    data = put_data(Dataset(name="random", x_train=x, y_train=y, x_val=x[:64], y_val=y[:64],
                            x_test=x[:64], y_test=y[:64], num_classes=10, input_shape=shape))
    per_candidate, fixed = chunk_memory(make_model(space, shape, 10, config.model), config,
                                        program)
    # One chunk per device: a population of one chunk (the chunk size is given, so the
    # accelerator program keeps it; its templates' extra chunks stay empty and run nothing).
    archs = space.sample(jax.random.key(1), chunk)

    def resident() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    before, peak, running = resident(), [0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], resident())
            time.sleep(0.001)

    thread = threading.Thread(target=sample)
    thread.start()
    train_population(jax.random.key(2), space, archs, data, config)
    running[0] = False
    thread.join()
    return {"space": space_name, "shape": list(shape), "chunk": chunk, "program": program,
            "estimate_mib": (fixed + chunk * per_candidate) / 2**20,
            "measured_mib": (peak[0] - before) / 2**20,
            "per_candidate_mib": per_candidate / 2**20}


def memory() -> None:
    import tempfile

    import jax

    from jaxnas import spaces
    from jaxnas.nn import ModelConfig, make_model
    from jaxnas.train import TrainConfig, chunk_memory, chunk_size_for

    rows = []
    for space_name, shape, chunk in (("nasbench201", (8, 8, 1), 32),
                                     ("nasbench201", (32, 32, 3), 8)):
        for program in ("select", "accelerator"):
            with tempfile.TemporaryDirectory() as cache:
                for _ in range(2):  # compile into the cache, then measure from it
                    out = subprocess.run(
                        [sys.executable, "-m", "benchmarks.accelerator", "--memory-worker",
                         json.dumps([space_name, shape, chunk, program, cache])],
                        capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["ratio"] = row["estimate_mib"] / max(row["measured_mib"], 1e-9)
            rows.append(row)
            print(row, flush=True)
    space = spaces.get("nasbench201")
    config = TrainConfig(batch_size=64, model=ModelConfig(width=16), program="accelerator",
                         memory_budget_mb=int(0.8 * 80e9 / 2**20))
    chunk_80gb = chunk_size_for(space, config, (32, 32, 3), 10, "accelerator",
                                jax.devices()[0])
    per_candidate, fixed = chunk_memory(make_model(space, (32, 32, 3), 10, config.model),
                                        config, "accelerator")
    lines = ["# Accelerator program: chunk memory, estimated and measured", "",
             f"Machine: {machine()}. Estimate: XLA's memory analysis of one compiled "
             "training step and one evaluation batch in the program's own form (the padded "
             "select program; the accelerator program's full template), fixed + chunk x "
             "per candidate. Measured: the peak rise of the resident "
             "size while a population trains 5 steps (width 16, batch 64, 2 templates), "
             "sampled every millisecond in a fresh process that loads its programs from the "
             "compilation cache a first process filled.", "",
             "| space | input | program | chunk | estimate MiB | measured MiB | "
             "estimate / measured |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['space']} | {'x'.join(map(str, r['shape']))} | {r['program']} | "
              f"{r['chunk']} | {r['estimate_mib']:.0f} | {r['measured_mib']:.0f} | "
              f"{r['ratio']:.2f} |" for r in rows]
    lines += ["", f"NAS-Bench-201 cells, width 16, batch 64, 32x32x3 inputs: "
              f"{per_candidate / 2**20:.0f} MiB per candidate, {fixed / 2**20:.0f} MiB fixed; "
              f"a chunk budget of 0.8 x 80 GB gives chunks of {chunk_80gb}."]
    _write("memory", {"machine": machine(), "rows": rows, "chunk_80gb": chunk_80gb,
                      "per_candidate_mib_32x32x3": per_candidate / 2**20}, lines)


def programs() -> None:
    import tempfile

    import jaxnas
    from jaxnas.train import training_programs_built

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        jaxnas.search(space="nasbench201", data="digits", budget=1000, steps=2,
                      batch_size=16, width=4, final_steps=2, program="accelerator",
                      out=str(Path(out) / "run"), compile_cache=False)
    built = training_programs_built()
    seconds = time.perf_counter() - start
    lines = ["# Accelerator program: training programs compiled in a search", "",
             f"Machine: {machine()}. `jaxnas.search(space='nasbench201', budget_evals=1000, "
             "program='accelerator', steps=2, batch_size=16, width=4, final_steps=2)`, "
             "evolution with populations of 16 (fewer when a generation repeats architectures), "
             f"and the final retraining: {built} training programs built, {seconds:.0f} s."]
    _write("programs", {"machine": machine(), "training_programs": built,
                        "seconds": seconds}, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="*", help="flops, memory, programs (default: all)")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        space_name, shape, chunk, program, cache = json.loads(args.memory_worker)
        print(json.dumps(_memory_worker(space_name, tuple(shape), chunk, program, cache)))
        return 0
    parts = {"flops": flops, "memory": memory, "programs": programs}
    unknown = set(args.parts) - set(parts)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(parts)}")
    for part in args.parts or parts:
        parts[part]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
