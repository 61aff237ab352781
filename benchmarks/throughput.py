"""Population-training throughput: jaxnas against three PyTorch ways of doing the same work.

Every contender trains the same P architectures (drawn with a fixed seed) for the same
S adam steps of batch B on the same data (``--dataset digits`` or ``mnist1d``), and
each runs in its own process:

* ``seed``: the seed-style loop, one ``SeedModule`` per candidate trained one after
  another (``benchmarks.twin.train_seed_style``) in one process with ``--seed-threads``,
  on ``--torch-device`` (a GPU user's loop runs there, one model at a time);
* ``multiproc``: the same loop spread over ``--procs`` one-thread processes started
  together behind a barrier;
* ``vmap``: PyTorch's own batching of many models, ``torch.func.stack_module_state`` +
  ``functional_call`` under ``torch.func.vmap`` over a padded twin of the dense cell;
* ``jaxnas``: ``make_train`` on every local device (``--xla_force_host_platform_device_count``
  set to the core count on CPU); the first call (compile + run) and a second call on
  another population of the same size are timed apart;
* ``select`` and ``reference`` (jaxnas against its own earlier programs): the padded
  select program of today's jaxnas on the same chunks, and the select program as the
  accelerator issue measured it, ``REFERENCE_COMMIT``'s own jaxnas extracted from the
  repository's history.

The seed-style contenders train one candidate at a time, so their rate does not depend
on P: they train the first ``--seed-max`` candidates and report candidates/s from those.
The harness imports neither jax nor torch; it spawns a worker per contender and per P,
collects their JSON, and writes ``<name>.json``, ``<name>.md`` and ``<name>.png``.

    python -m benchmarks.throughput --population 8 32 128 --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONTENDERS = ("jaxnas", "select", "reference", "seed", "multiproc", "vmap")
# The code the accelerator issue measured its select program on (TrainConfig(chunk_size=16,
# buckets=3) on 64 NAS-Bench-201 cells: 0.98 cand/s): the ``reference`` contender runs
# that commit's own jaxnas side by side with today's.
REFERENCE_COMMIT = "c0d987f"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POPULATIONS = (1, 8, 32, 128, 512, 2048)
# The work each set of targets is for, and the targets at P=128.
TARGETS = (
    {"work": {"space": ("dag",), "width": 64, "steps": 200, "batch_size": 128},
     "population": 128, "vs_seed": 6.0, "vs_best_multicore": 3.0},
    {"work": {"space": ("nasbench201", "conv"), "width": 16, "steps": 100, "batch_size": 64},
     "population": 128, "vs_seed": 1.2, "vs_best_multicore": 0.6, "accuracy_margin": 0.01},
)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _write_json(path: Path, value) -> None:
    """Atomic JSON write."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n")
    os.replace(tmp, path)


def _barrier() -> float:
    """Tells the harness this worker is set up, waits for its go, returns the go time."""
    print("READY", flush=True)
    sys.stdin.readline()
    return time.time()


# Workers: each runs in its own process and writes one JSON file.


def _model_config(spec: dict):
    """The model every contender builds (jaxnas and the PyTorch twins alike)."""
    from jaxnas.nn import ModelConfig

    return ModelConfig(width=spec["width"], norm=spec["norm"])


def _batch_key(spec: dict):
    """The minibatch order of the measured population, the same for every contender: the
    seed-style loops train on jaxnas's order (``jaxnas.train.batch_indices``), so their
    validation accuracies differ only by each side's own initial weights. One draw of
    the order is shared by all candidates and moves all their accuracies together (by
    +-0.02 here), which a comparison of two orders would take for a difference."""
    import jax

    return jax.random.fold_in(jax.random.key(spec["seed"]), 1)


def _worker_prepare(spec: dict) -> dict:
    """Samples the populations, counts FLOPs, measures the matmul peak, records the machine."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxnas import spaces
    from jaxnas.data import load
    from jaxnas.nn import make_model

    space = spaces.get(spec["space"])
    data = load(spec["dataset"])
    model = make_model(space, data.input_shape, data.num_classes,
                       _model_config(spec))
    flops = {}
    for population in spec["populations"]:
        measured = space.sample(jax.random.key(spec["seed"]), population)
        warmup = space.sample(jax.random.key(spec["seed"] + 1), population)
        np.savez(Path(spec["workdir"]) / f"archs_{population}.npz",
                 adj=np.asarray(measured.adj), ops=np.asarray(measured.ops),
                 warmup_adj=np.asarray(warmup.adj), warmup_ops=np.asarray(warmup.ops))
        flops[str(population)] = {
            "useful_forward_per_example": np.asarray(model.flops(measured),
                                                     np.float64).tolist(),
            "padded_forward_per_example": float(model.executed_flops),
        }

    def best_gflops(matmul, a, b, repeats=5):
        matmul(a, b)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            matmul(a, b)
            best = min(best, time.perf_counter() - start)
        return 2 * a.shape[0] * a.shape[1] * b.shape[1] / best / 1e9

    device = jax.devices()[0]
    size = 2048 if device.platform == "cpu" else 8192
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), np.float32)
    b = rng.standard_normal((size, size), np.float32)
    numpy_gflops = best_gflops(np.matmul, a, b)
    jax_matmul = jax.jit(lambda x, y: jnp.matmul(x, y, precision="highest"))
    ja, jb = jax.device_put(a, device), jax.device_put(b, device)
    jax_gflops = best_gflops(lambda x, y: jax_matmul(x, y).block_until_ready(), ja, jb)
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import importlib.metadata as metadata
        torch_version = metadata.version("torch")
    except Exception:  # noqa: BLE001 (a missing torch is reported, not fatal)
        torch_version = None
    peak = jax_gflops if device.platform != "cpu" else max(numpy_gflops, jax_gflops)
    return {
        "flops": flops,
        "machine": {
            "cpu_model": cpu_model, "cores": os.cpu_count(), "platform": device.platform,
            "device_kind": device.device_kind, "python": platform.python_version(),
            "jax": jax.__version__, "numpy": np.__version__, "torch": torch_version,
            "matmul_size": size, "numpy_matmul_gflops": numpy_gflops,
            "jax_matmul_gflops": jax_gflops, "peak_gflops": peak,
            "peak_source": "float32 matmul, best of numpy and jax (precision highest), "
                           "same run",
        },
    }


def _load_archs(spec: dict, warmup: bool = False):
    import numpy as np
    archs = np.load(Path(spec["workdir"]) / f"archs_{spec['population']}.npz")
    prefix = "warmup_" if warmup else ""
    return archs[prefix + "adj"], archs[prefix + "ops"]


def _timed_calls(spec: dict, train, data, warmup, archs) -> dict:
    """Times ``train`` on ``warmup`` (compile and run) and then on ``archs`` (steady), the
    measured call on the shared minibatch order; the timings and what it trained."""
    import jax
    import numpy as np

    _barrier()
    start = time.perf_counter()
    train(jax.random.key(spec["seed"] + 1), warmup, data)
    first = time.perf_counter() - start
    start = time.perf_counter()
    result = train(jax.random.key(spec["seed"]), archs, data, batch_key=_batch_key(spec))
    steady = time.perf_counter() - start
    devices = jax.devices()
    memory = None
    stats = devices[0].memory_stats() if devices[0].platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        memory = stats["peak_bytes_in_use"] / 2**20
    return {
        "seconds": steady, "first_call_s": first, "compile_s": max(first - steady, 0.0),
        "candidates": int(archs.ops.shape[0]), "devices": len(devices),
        "device_kind": devices[0].device_kind,
        "mean_val_acc": float(np.mean(result.val_acc)),
        "val_acc": np.asarray(result.val_acc).tolist(),
        "device_peak_mib": memory,
    }


def _worker_jaxnas(spec: dict) -> dict:
    from jaxnas import spaces
    from jaxnas.arch import Arch
    from jaxnas.data import load
    from jaxnas.train import (
        TrainConfig,
        make_train,
        program_cost,
        put_data,
        training_programs_built,
    )

    space = spaces.get(spec["space"])
    config = TrainConfig(steps=spec["steps"], batch_size=spec["batch_size"], optimizer="adam",
                         learning_rate=spec["lr"], model=_model_config(spec),
                         program=spec["program"], chunk_size=spec["chunk"],
                         **({} if spec["templates"] is None else
                            {"templates": spec["templates"]}))
    train = make_train(space, config)
    data = put_data(load(spec["dataset"]))
    adj, ops = _load_archs(spec)
    # The first call trains another population of the same size: the second call then
    # shows that a new population compiles nothing.
    warmup_adj, warmup_ops = _load_archs(spec, warmup=True)
    cost = program_cost(space, Arch(adj=adj, ops=ops), data, config)
    timed = _timed_calls(spec, train, data, Arch(adj=warmup_adj, ops=warmup_ops),
                         Arch(adj=adj, ops=ops))
    return {
        **timed, "program": cost.program, "chunk": cost.layout.chunk,
        "padded_size": cost.layout.size,
        # Summed over every program row (padding rows included), forward, per example.
        "executed_forward_total": float(cost.executed.sum()),
        "training_programs_built": training_programs_built(),
    }


def _worker_reference(spec: dict) -> dict:
    """The select program as the accelerator issue measured it: ``REFERENCE_COMMIT``'s
    jaxnas (first on ``sys.path``: the worker runs in its extracted tree), vmapped chunks
    of ``spec["chunk"]`` with 3 buckets, on the same cells, devices and minibatches."""
    import jaxnas
    from jaxnas import spaces
    from jaxnas.arch import Arch
    from jaxnas.data import load
    from jaxnas.train import TrainConfig, make_train, put_data

    tree = Path(spec["reference_tree"]).resolve()
    if tree not in Path(jaxnas.__file__).resolve().parents:
        raise RuntimeError(f"the reference worker imported {jaxnas.__file__}, not {tree}")
    config = TrainConfig(steps=spec["steps"], batch_size=spec["batch_size"], optimizer="adam",
                         learning_rate=spec["lr"], model=_model_config(spec),
                         chunk_size=spec["chunk"], buckets=3)
    train = make_train(spaces.get(spec["space"]), config)
    adj, ops = _load_archs(spec)
    # Buckets split a population by its cells' compute nodes, so another population may
    # need other bucket sizes: the first call trains the measured one (as that commit's
    # benchmark did), so compile_s covers every bucket's program.
    archs = Arch(adj=adj, ops=ops)
    return _timed_calls(spec, train, put_data(load(spec["dataset"])), archs, archs)


def _worker_seed(spec: dict) -> dict:
    import numpy as np
    import torch

    from benchmarks.twin import train_seed_style
    from jaxnas import spaces
    from jaxnas.arch import Arch
    from jaxnas.data import load
    from jaxnas.train import batch_indices

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["torch_device"])
    space = spaces.get(spec["space"])
    data = load(spec["dataset"])
    adj, ops = _load_archs(spec)
    part, parts = spec["part"]
    chosen = np.arange(min(spec["subset"], ops.shape[0]))[part::parts]
    indices = np.asarray(batch_indices(_batch_key(spec), 0, spec["steps"], len(data.y_train),
                                       spec["batch_size"]))
    _barrier()
    start = time.perf_counter()
    results = []
    if len(chosen):
        results = train_seed_style(space, Arch(adj=adj[chosen], ops=ops[chosen]), data,
                                   steps=spec["steps"], batch_size=spec["batch_size"],
                                   lr=spec["lr"], optimizer="adam",
                                   config=_model_config(spec), seed=spec["seed"],
                                   indices=indices, device=str(device))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds, "end_time": time.time(), "candidates": len(chosen),
        "threads": torch.get_num_threads(), "device": str(device),
        "val_acc": [r["val_accuracy"] for r in results],
    }


def _host_live(adj):
    """(P, N) bool: nodes on an input -> output path, for a population (P, N, N)."""
    import numpy as np
    edges = adj != 0
    p, n = edges.shape[:2]
    forward = np.zeros((p, n), bool)
    forward[:, 0] = True
    for j in range(1, n):
        forward[:, j] = (forward[:, :j] & edges[:, :j, j]).any(1)
    backward = np.zeros((p, n), bool)
    backward[:, -1] = True
    for i in range(n - 2, -1, -1):
        backward[:, i] = (backward[:, i + 1:] & edges[:, i, i + 1:]).any(1)
    return forward & backward & forward[:, -1:]


def _worker_vmap(spec: dict) -> dict:
    """Padded dense cell in PyTorch, P stacked models trained by vmap + functional_call."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.func import functional_call, stack_module_state, vmap

    from jaxnas import spaces
    from jaxnas.data import load
    from jaxnas.nn import make_layout

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["torch_device"])
    space = spaces.get(spec["space"])
    data = load(spec["dataset"])
    layout = make_layout(space, data.input_shape, data.num_classes,
                         _model_config(spec))
    supported = not layout.spatial and not layout.raw_input and all(
        s.kind in ("skip", "zero") or (s.kind == "linear" and not s.norm and not s.pre_relu
                                       and layout.op_width(s) == layout.features)
        for s in layout.specs)
    if not supported:
        _barrier()
        return {"unsupported": f"the torch vmap twin covers dense cells only, not {space.name}"}
    activations = {"relu": torch.relu, "tanh": torch.tanh, "gelu": F.gelu,
                   "linear": lambda z: z}
    n, d, cells = layout.num_nodes, layout.features, layout.config.num_cells
    specs = layout.specs

    class PaddedDenseCell(nn.Module):
        """Every node slot runs its dense layer; a one-hot op choice selects the output."""

        def __init__(self):
            super().__init__()
            self.stem = nn.Linear(layout.in_channels, d)
            self.nodes = nn.ParameterList()
            self.biases = nn.ParameterList()
            for _ in range(cells):
                kernel = torch.randn(layout.num_stacked, d, d) * (2.0 / d) ** 0.5
                self.nodes.append(nn.Parameter(kernel))
                self.biases.append(nn.Parameter(torch.zeros(layout.num_stacked, d)))
            self.head = nn.Linear(d, layout.num_classes)

        def forward(self, edges, choice, x):
            h = torch.relu(self.stem(x))
            for kernel, bias in zip(self.nodes, self.biases, strict=True):
                states = [h]
                for i in range(1, n - 1):
                    inp = torch.einsum("j,jbd->bd", edges[:i, i], torch.stack(states))
                    z = inp @ kernel[i - 1] + bias[i - 1]
                    out = torch.zeros_like(inp)
                    for k, op in enumerate(specs):
                        if op.kind == "linear":
                            out = out + choice[i, k] * activations[op.activation](z)
                        elif op.kind == "skip":
                            out = out + choice[i, k] * inp
                    states.append(out)
                h = torch.einsum("j,jbd->bd", edges[:n - 1, n - 1], torch.stack(states))
            return self.head(h)

    adj, ops = _load_archs(spec)
    adj, ops = adj[:spec["subset"]], ops[:spec["subset"]]
    live = _host_live(adj)
    edges_np = ((adj != 0) & live[:, :, None]).astype(np.float32)
    choice_np = np.zeros(ops.shape + (len(specs),), np.float32)
    inner = live & (ops >= 0)
    rows, cols = np.nonzero(inner)
    choice_np[rows, cols, ops[rows, cols]] = 1.0
    population = ops.shape[0]
    x_train = torch.from_numpy(np.asarray(data.x_train, np.float32).reshape(
        len(data.x_train), -1)).to(device)
    y_train = torch.from_numpy(np.asarray(data.y_train, np.int64)).to(device)
    x_val = torch.from_numpy(np.asarray(data.x_val, np.float32).reshape(
        len(data.x_val), -1)).to(device)
    y_val = torch.from_numpy(np.asarray(data.y_val, np.int64)).to(device)
    rng = np.random.default_rng(spec["seed"])
    per_epoch = len(y_train) // spec["batch_size"]
    order = np.concatenate([rng.permutation(len(y_train))[:per_epoch * spec["batch_size"]]
                            for _ in range(-(-spec["steps"] // per_epoch))])
    batches = torch.from_numpy(order[:spec["steps"] * spec["batch_size"]].reshape(
        spec["steps"], -1)).to(device)
    _barrier()
    start = time.perf_counter()
    torch.manual_seed(spec["seed"])
    models = [PaddedDenseCell().to(device) for _ in range(population)]
    params, buffers = stack_module_state(models)
    base = PaddedDenseCell().to("meta")
    edges = torch.from_numpy(edges_np).to(device)
    choice = torch.from_numpy(choice_np).to(device)

    def one(p, b, e, c, x):
        return functional_call(base, (p, b), (e, c, x))

    batched = vmap(one, in_dims=(0, 0, 0, 0, None))
    opt = torch.optim.Adam(list(params.values()), lr=spec["lr"])
    for step in range(spec["steps"]):
        batch = batches[step]
        logits = batched(params, buffers, edges, choice, x_train[batch])
        labels = y_train[batch].repeat(population)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels,
                               reduction="sum") / len(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = batched(params, buffers, edges, choice, x_val)
        acc = (logits.argmax(-1) == y_val).float().mean(1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return {"seconds": seconds, "candidates": population, "threads": torch.get_num_threads(),
            "device": str(device), "mean_val_acc": float(acc.mean()),
            "device_peak_mib": memory}


WORKERS = {"prepare": _worker_prepare, "jaxnas": _worker_jaxnas,
           "reference": _worker_reference, "seed": _worker_seed, "vmap": _worker_vmap}


def _run_worker(kind: str, spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = WORKERS[kind](spec)
    result["peak_rss_mib"] = _peak_rss_mib()
    _write_json(Path(result_path), result)


# The harness: spawns workers, never imports jax or torch itself.


def _spawn(kind: str, spec: dict, env: dict[str, str], tag: str,
           cwd: Path = ROOT) -> tuple[subprocess.Popen, Path]:
    """One worker; ``cwd`` comes first on its ``sys.path`` (``python -m``)."""
    workdir = Path(spec["workdir"])
    spec_path = workdir / f"spec_{tag}.json"
    result_path = workdir / f"result_{tag}.json"
    _write_json(spec_path, spec)
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.throughput", "--worker", kind,
         "--spec", str(spec_path), "--result", str(result_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
    return process, result_path


def _run_together(kind: str, specs: list[dict], env: dict[str, str],
                  tag: str, cwd: Path = ROOT) -> tuple[list[dict], float]:
    """Starts one worker per spec, releases them together; (results, 1-min load at go)."""
    started = [_spawn(kind, spec, env, f"{tag}_{i}", cwd) for i, spec in enumerate(specs)]
    for process, _ in started:
        for line in process.stdout:
            if line.strip() == "READY":
                break
        else:
            process.wait()
            raise RuntimeError(f"{kind} worker exited with {process.returncode} before starting")
    load = os.getloadavg()[0]
    for process, _ in started:
        process.stdin.write("GO\n")
        process.stdin.flush()
    results = []
    for process, result_path in started:
        process.stdout.read()
        if process.wait() != 0:
            raise RuntimeError(f"{kind} worker failed with exit code {process.returncode}")
        results.append(json.loads(result_path.read_text()))
    return results, load


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def _reference_tree(workdir: Path) -> Path:
    """``REFERENCE_COMMIT``'s ``jaxnas`` package, extracted from this repository's history
    into ``workdir`` (one clear line when the clone lacks that commit)."""
    tree = workdir / "reference"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", REFERENCE_COMMIT, "jaxnas"],
                             capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"the reference contender needs commit {REFERENCE_COMMIT} in the "
                         "repository's history (a full clone, or git fetch --unshallow): "
                         + archive.stderr.decode().strip())
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def _prepare(args, workdir: Path) -> dict:
    spec = {"space": args.space, "dataset": args.dataset, "width": args.width, "norm": args.norm,
            "seed": args.seed,
            "populations": args.population, "workdir": str(workdir)}
    process, result_path = _spawn("prepare", spec, _env(), "prepare")
    process.stdin.close()
    process.stdout.read()
    if process.wait() != 0:
        raise RuntimeError("the prepare worker failed")
    return json.loads(result_path.read_text())


def _measure(args, population: int, prepared: dict, workdir: Path) -> dict:
    base = {"space": args.space, "dataset": args.dataset, "width": args.width, "norm": args.norm,
            "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
            "seed": args.seed, "program": args.program, "templates": args.templates,
            "chunk": args.chunk, "population": population,
            "workdir": str(workdir), "torch_device": args.torch_device}
    row: dict = {"population": population, "steps": args.steps, "batch_size": args.batch_size,
                 "space": args.space, "dataset": args.dataset, "width": args.width,
                 "norm": args.norm}
    flops = prepared["flops"][str(population)]
    useful = flops["useful_forward_per_example"]
    # Forward plus backward is counted as three forward passes.
    per_candidate = 3.0 * args.steps * args.batch_size
    row["useful_gflop_per_candidate"] = per_candidate * sum(useful) / len(useful) / 1e9
    row["padded_gflop_per_candidate"] = (
        per_candidate * flops["padded_forward_per_example"] / 1e9)
    subset = min(args.seed_max, population)
    # The seed-style rates come from the first `subset` candidates, jaxnas's from all P:
    # how much work those candidates hold against the population's (1 when equal).
    row["seed_subset_flops_ratio"] = (sum(useful[:subset]) / subset) / (sum(useful) / len(useful))
    extra = {}
    if args.host_devices:
        flags = os.environ.get("XLA_FLAGS", "")
        extra["XLA_FLAGS"] = (
            f"{flags} --xla_force_host_platform_device_count={args.host_devices}").strip()
    if "jaxnas" in args.contenders:
        (result,), row["jaxnas_load"] = _run_together("jaxnas", [base], _env(extra),
                                                      f"jaxnas_{population}")
        rate = population / result["seconds"]
        # What the program ran, padding included, per real candidate.
        row["executed_gflop_per_candidate"] = (
            per_candidate * result["executed_forward_total"] / population / 1e9)
        row["useful_fraction"] = row["useful_gflop_per_candidate"] / row[
            "executed_gflop_per_candidate"]
        row.update(jaxnas_program=result["program"], jaxnas_chunk=result["chunk"],
                   jaxnas_padded_size=result["padded_size"],
                   jaxnas_training_programs_built=result["training_programs_built"])
        row.update(jaxnas_cand_per_s=rate, compile_s=result["compile_s"],
                   jaxnas_first_call_s=result["first_call_s"], jaxnas_steady_s=result["seconds"],
                   jaxnas_devices=result["devices"], jaxnas_device_kind=result["device_kind"],
                   jaxnas_mean_val_acc=result["mean_val_acc"],
                   # Over the candidates the seed-style contenders train, for a fair match.
                   jaxnas_mean_val_acc_seed_subset=sum(result["val_acc"][:subset]) / subset,
                   jaxnas_val_acc_seed_subset=result["val_acc"][:subset],
                   jaxnas_peak_rss_mib=result["peak_rss_mib"],
                   jaxnas_device_peak_mib=result["device_peak_mib"])
        total_useful = population * row["useful_gflop_per_candidate"]
        row["jaxnas_useful_gflops"] = total_useful / result["seconds"]
        row["jaxnas_executed_gflops"] = (population * row["executed_gflop_per_candidate"]
                                         / result["seconds"])
        row["jaxnas_fraction_of_peak"] = (row["jaxnas_useful_gflops"]
                                          / prepared["machine"]["peak_gflops"])
    if "select" in args.contenders:
        # The padded select program on the same chunks, devices and candidates.
        (result,), row["select_load"] = _run_together(
            "jaxnas", [dict(base, program="select")], _env(extra), f"select_{population}")
        row.update(select_cand_per_s=population / result["seconds"],
                   select_steady_s=result["seconds"], select_compile_s=result["compile_s"],
                   select_chunk=result["chunk"], select_mean_val_acc=result["mean_val_acc"])
        row["select_useful_fraction"] = row["useful_gflop_per_candidate"] / (
            per_candidate * result["executed_forward_total"] / population / 1e9)
    if "reference" in args.contenders:
        tree = workdir / "reference"
        (result,), row["reference_load"] = _run_together(
            "reference", [dict(base, reference_tree=str(tree), chunk=args.chunk or 16)],
            _env(extra), f"reference_{population}", cwd=tree)
        row.update(reference_cand_per_s=population / result["seconds"],
                   reference_steady_s=result["seconds"],
                   reference_compile_s=result["compile_s"],
                   reference_mean_val_acc=result["mean_val_acc"])
    if "seed" in args.contenders:
        spec = dict(base, subset=subset, threads=args.seed_threads, part=[0, 1])
        (result,), row["torch_seed_load"] = _run_together(
            "seed", [spec], _env({"OMP_NUM_THREADS": "1"}), f"seed_{population}")
        if "jaxnas" in args.contenders:
            # Candidate by candidate, jaxnas minus the loop: the gap and its standard error.
            gaps = [a - b for a, b in zip(row["jaxnas_val_acc_seed_subset"], result["val_acc"],
                                          strict=True)]
            row.update(accuracy_gap=statistics.fmean(gaps),
                       accuracy_gap_se=statistics.stdev(gaps) / math.sqrt(len(gaps))
                       if len(gaps) > 1 else None)
        row.update(torch_seed_cand_per_s=result["candidates"] / result["seconds"],
                   torch_seed_s=result["seconds"], torch_seed_candidates=result["candidates"],
                   torch_seed_threads=result["threads"], torch_seed_device=result["device"],
                   torch_seed_mean_val_acc=sum(result["val_acc"]) / len(result["val_acc"]),
                   torch_seed_peak_rss_mib=result["peak_rss_mib"])
    if "multiproc" in args.contenders:
        specs = [dict(base, subset=subset, threads=1, part=[i, args.procs])
                 for i in range(args.procs)]
        results, row["torch_multiproc_load"] = _run_together(
            "seed", specs, _env({"OMP_NUM_THREADS": "1"}), f"multiproc_{population}")
        # Wall time from the common go to the last worker's end of training.
        ends = [r["end_time"] for r in results]
        starts = [r["end_time"] - r["seconds"] for r in results]
        wall = max(ends) - min(starts)
        accs = [a for r in results for a in r["val_acc"]]
        row.update(torch_multiproc_cand_per_s=subset / wall, torch_multiproc_s=wall,
                   torch_multiproc_candidates=subset, torch_multiproc_processes=args.procs,
                   torch_multiproc_mean_val_acc=sum(accs) / len(accs),
                   torch_multiproc_peak_rss_mib=max(r["peak_rss_mib"] for r in results),
                   torch_multiproc_total_rss_mib=sum(r["peak_rss_mib"] for r in results))
    if "vmap" in args.contenders:
        spec = dict(base, threads=args.vmap_threads,
                    subset=min(args.vmap_max or population, population))
        (result,), row["torch_vmap_load"] = _run_together("vmap", [spec], _env(),
                                                          f"vmap_{population}")
        if "unsupported" in result:
            row["torch_vmap_cand_per_s"] = None
            row["torch_vmap_note"] = result["unsupported"]
        else:
            row.update(torch_vmap_cand_per_s=result["candidates"] / result["seconds"],
                       torch_vmap_candidates=result["candidates"],
                       torch_vmap_s=result["seconds"], torch_vmap_threads=result["threads"],
                       torch_vmap_device=result["device"],
                       torch_vmap_mean_val_acc=result["mean_val_acc"],
                       torch_vmap_peak_rss_mib=result["peak_rss_mib"],
                       torch_vmap_device_peak_mib=result["device_peak_mib"])
    jax_rate = row.get("jaxnas_cand_per_s")
    for name in ("select", "reference"):
        other = row.get(f"{name}_cand_per_s")
        row[f"ratio_vs_{name}"] = jax_rate / other if jax_rate and other else None
    for name in ("seed", "multiproc", "vmap"):
        other = row.get(f"torch_{name}_cand_per_s")
        row[f"ratio_vs_{name}"] = jax_rate / other if jax_rate and other else None
    return row


def _targets(rows: list[dict], args) -> dict:
    for target in TARGETS:
        work = target["work"]
        if (args.space in work["space"] and args.width == work["width"]
                and args.steps == work["steps"] and args.batch_size == work["batch_size"]):
            break
    else:
        return {"evaluated": False, "why": "targets are set for dag (width 64, 200 steps, "
                "batch 128) and nasbench201 / conv (width 16, 100 steps, batch 64) at P=128"}
    row = next((r for r in rows if r["population"] == target["population"]), None)
    if row is None:
        return {"evaluated": False, "why": f"needs P={target['population']}"}
    multicore = [row.get(f"torch_{k}_cand_per_s") for k in ("multiproc", "vmap")]
    multicore = [m for m in multicore if m]
    jax_rate = row.get("jaxnas_cand_per_s")
    vs_seed = row.get("ratio_vs_seed")
    vs_best = jax_rate / max(multicore) if jax_rate and multicore else None
    report = {
        "evaluated": True, "population": target["population"],
        "vs_seed": vs_seed, "vs_seed_target": target["vs_seed"],
        "vs_seed_met": vs_seed is not None and vs_seed >= target["vs_seed"],
        "vs_best_multicore": vs_best, "vs_best_multicore_target": target["vs_best_multicore"],
        "vs_best_multicore_met": vs_best is not None and vs_best >= target["vs_best_multicore"],
    }
    if "accuracy_margin" in target and row.get("accuracy_gap") is not None:
        gap = row["accuracy_gap"]
        report.update(accuracy_gap=gap, accuracy_gap_se=row["accuracy_gap_se"],
                      accuracy_candidates=row["torch_seed_candidates"],
                      accuracy_margin=target["accuracy_margin"],
                      accuracy_met=gap >= -target["accuracy_margin"])
    return report


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def _first(report: dict, key: str):
    """``key`` of the first result that has it ("-" if none)."""
    return next((r[key] for r in report["results"] if r.get(key) is not None), "-")


def _markdown(report: dict) -> str:
    machine, config = report["machine"], report["config"]
    lines = [
        f"# jaxnas throughput ({config['name']})",
        "",
        f"Machine: {machine['cpu_model']}, {machine['cores']} cores, jax device "
        f"{machine['device_kind']} ({machine['platform']}), jax {machine['jax']}, "
        f"torch {machine['torch']}. Measured float32 matmul peak: "
        f"{machine['peak_gflops']:.0f} GFLOP/s (numpy {machine['numpy_matmul_gflops']:.0f}, "
        f"jax {machine['jax_matmul_gflops']:.0f}).",
        "",
        f"Work: space `{config['space']}`, width {config['width']}, "
        + (f"{config.get('norm', 'layer')} norm (conv ops), "
           if config['space'] not in ("mlp", "dag") else "")
        + f"{config['steps']} adam "
        f"steps, batch {config['batch_size']}, lr {config['lr']}, "
        f"{config.get('dataset', 'digits')}, architectures "
        f"drawn with seed {config['seed']}, jaxnas's `{_first(report, 'jaxnas_program')}` "
        f"program in chunks of {_first(report, 'jaxnas_chunk')}"
        + (" (one candidate at a time per device, nodes branching: the CPU default)"
           if _first(report, "jaxnas_program") == "cpu" else "")
        + ". Every contender in its own process; all figures of one row come from one run.",
        "",
        "| P | jaxnas compile s | jaxnas steady s | jaxnas cand/s | seed 1-proc cand/s "
        f"| seed {config['procs']}-proc cand/s | torch vmap cand/s | x seed | x multiproc "
        "| x vmap | useful GFLOP/s (% peak) | useful frac | RSS MiB jax / seed / vmap "
        "| val acc jax / seed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        useful = r.get("jaxnas_useful_gflops")
        share = r.get("jaxnas_fraction_of_peak")
        lines.append(
            f"| {r['population']} | {_fmt(r.get('compile_s'))} | {_fmt(r.get('jaxnas_steady_s'))}"
            f" | {_fmt(r.get('jaxnas_cand_per_s'))} | {_fmt(r.get('torch_seed_cand_per_s'))}"
            f" | {_fmt(r.get('torch_multiproc_cand_per_s'))}"
            f" | {_fmt(r.get('torch_vmap_cand_per_s'))} | {_fmt(r.get('ratio_vs_seed'), 2)}"
            f" | {_fmt(r.get('ratio_vs_multiproc'), 2)} | {_fmt(r.get('ratio_vs_vmap'), 2)}"
            f" | {_fmt(useful)} ({_fmt(None if share is None else 100 * share)}%)"
            f" | {_fmt(r.get('useful_fraction'), 2)}"
            f" | {_fmt(r.get('jaxnas_peak_rss_mib'), 0)} / "
            f"{_fmt(r.get('torch_seed_peak_rss_mib'), 0)} / "
            f"{_fmt(r.get('torch_vmap_peak_rss_mib'), 0)}"
            f" | {_fmt(r.get('jaxnas_mean_val_acc_seed_subset'), 3)} / "
            f"{_fmt(r.get('torch_seed_mean_val_acc'), 3)} |")
    first = report["results"][0] if report["results"] else {}
    lines += [
        "",
        "Notes:",
        f"- The seed-style contenders train the first min(P, {config['seed_max']}) candidates "
        "and report candidates/s from those; seed 1-proc "
        f"uses {first.get('torch_seed_threads', config['seed_threads'])} torch thread(s), "
        f"seed {config['procs']}-proc one thread per process, started together behind a "
        f"barrier; both on {first.get('torch_seed_device', config['torch_device'])}. "
        "When they train fewer than P, their rates come from other candidates than "
        "jaxnas's: the subset's mean FLOPs over the population's were "
        + ", ".join(f"{r['seed_subset_flops_ratio']:.2f} (P={r['population']})"
                    for r in report["results"] if "seed_subset_flops_ratio" in r)
        + " (below 1, the subset is cheaper and the ratios understate jaxnas). "
        "Val acc: mean validation accuracy over those same candidates, jaxnas and the "
        "one-process loop; every contender trains on the same minibatches (jaxnas's order), "
        "each from its own framework's default initial weights.",
        f"- torch vmap: `stack_module_state` + `functional_call` under `torch.func.vmap` over a "
        f"padded twin of the cell (every node slot runs its dense layer), "
        f"{first.get('torch_vmap_threads', '-')} torch thread(s), on "
        f"{first.get('torch_vmap_device', config['torch_device'])}"
        + (f"; it trains the first min(P, {config['vmap_max']}) candidates of each population "
           "(all P of a stacked batch would not fit the time budget)."
           if config["vmap_max"] else "; it trains all P candidates as one stacked batch."),
        "- One-minute load average when each contender started (the machine may be shared): "
        + "; ".join(f"P={r['population']}: " + ", ".join(
            f"{k[:-5]} {r[k]:.1f}" for k in r if k.endswith("_load")) for r in report["results"])
        + ".",
        f"- jaxnas: `make_train` on {first.get('jaxnas_devices', '-')} device(s); compile s = "
        "first call minus the second (steady) call; the first call trains another "
        "population of the same size, so the second compiles nothing ("
        f"{_first(report, 'jaxnas_training_programs_built')} training program(s) built).",
        "- FLOPs: forward+backward = 3 x forward matmul FLOPs per example; executed FLOPs "
        "are the program's own accounting (`jaxnas.train.program_cost`: every program row, "
        "padding included; a branching candidate executes only its own ops); '% peak' is "
        "useful GFLOP/s over the matmul peak measured in this run."
        + (" select: the padded select program (every node slot the largest kernel) on the "
           "same candidates, chunks and devices: "
           + ", ".join(f"P={r['population']}: {_fmt(r.get('select_cand_per_s'), 2)} cand/s, "
                       f"useful frac {_fmt(r.get('select_useful_fraction'), 2)}, jaxnas "
                       f"{_fmt(r.get('ratio_vs_select'), 2)}x"
                       for r in report["results"] if r.get("select_cand_per_s")) + "."
           if any(r.get("select_cand_per_s") for r in report["results"]) else ""),
        *([f"- reference: the select program as the accelerator issue measured it, commit "
           f"{REFERENCE_COMMIT}'s own jaxnas (`TrainConfig(chunk_size="
           f"{config['chunk'] or 16}, buckets=3)`), in its own process on the same "
           "candidates, devices and minibatches: "
           + ", ".join(f"P={r['population']}: {_fmt(r.get('reference_cand_per_s'), 2)} "
                       f"cand/s, mean val acc {_fmt(r.get('reference_mean_val_acc'), 3)} "
                       f"(jaxnas {_fmt(r.get('jaxnas_mean_val_acc'), 3)}), jaxnas "
                       f"{_fmt(r.get('ratio_vs_reference'), 2)}x"
                       for r in report["results"] if r.get("reference_cand_per_s")) + "."]
          if any(r.get("reference_cand_per_s") for r in report["results"]) else []),
        "- Mean validation accuracy per contender is in the JSON (a check that every "
        "contender really trains).",
    ]
    if config.get("note"):
        lines.append(f"- Run: {config['note']}.")
    targets = report["targets"]
    if targets.get("evaluated"):
        lines += [
            "",
            f"Targets at P={targets['population']}: jaxnas / seed-style 1 process = "
            f"{_fmt(targets['vs_seed'], 2)} (target >= {targets['vs_seed_target']}: "
            f"{'met' if targets['vs_seed_met'] else 'NOT met'}); jaxnas / best multi-core "
            f"PyTorch = {_fmt(targets['vs_best_multicore'], 2)} (target >= "
            f"{targets['vs_best_multicore_target']}: "
            f"{'met' if targets['vs_best_multicore_met'] else 'NOT met'}).",
        ]
        if "accuracy_gap" in targets:
            se = targets.get("accuracy_gap_se")
            lines.append(
                f"Mean validation accuracy over the same candidates and minibatches, jaxnas "
                f"minus seed-style PyTorch: {targets['accuracy_gap']:+.3f}"
                + (f" +- {se:.3f} (standard error of the {targets['accuracy_candidates']} "
                   "paired differences)" if se is not None else "")
                + f" (target >= -{targets['accuracy_margin']}: "
                f"{'met' if targets['accuracy_met'] else 'NOT met'}).")
    else:
        lines += ["", f"Targets not evaluated: {targets['why']}."]
    return "\n".join(lines) + "\n"


def _plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    labels = {"jaxnas_cand_per_s": "jaxnas",
              "torch_seed_cand_per_s": "torch seed-style, 1 process",
              "torch_multiproc_cand_per_s":
                  f"torch seed-style, {report['config']['procs']} processes",
              "torch_vmap_cand_per_s": "torch.func.vmap (padded)"}
    for key, label in labels.items():
        points = [(r["population"], r[key]) for r in rows if r.get(key)]
        if points:
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, marker="o", label=label)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("population P")
    axes.set_ylabel("candidates trained per second")
    config = report["config"]
    axes.set_title(f"{config['space']}, width {config['width']}, {config['steps']} steps, "
                   f"batch {config['batch_size']} ({report['machine']['device_kind']})")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    figure.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.throughput",
        description="jaxnas population training against PyTorch, same work on every side.")
    parser.add_argument("--population", type=int, nargs="+", default=None,
                        help="population sizes (default "
                        f"{' '.join(map(str, DEFAULT_POPULATIONS))})")
    parser.add_argument("--steps", type=int, default=None, help="default 200 (quick: 20)")
    parser.add_argument("--space", default="dag")
    parser.add_argument("--dataset", default="digits", choices=("digits", "mnist1d"),
                        help="built-in dataset every contender trains on")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--norm", choices=("batch", "layer"), default="batch",
                        help="normalisation of conv ops, jaxnas and PyTorch alike (the conv "
                             "results of the previous release were measured with layer)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--program", default="auto",
                        choices=("auto", "cpu", "accelerator", "select"),
                        help="jaxnas TrainConfig.program (default: the trainer's own choice, "
                        "as jaxnas search runs)")
    parser.add_argument("--templates", type=int, default=None,
                        help="TrainConfig.templates of the accelerator program (default: "
                        "the trainer's own)")
    parser.add_argument("--chunk", type=int, default=None,
                        help="TrainConfig.chunk_size (default: the trainer's own choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="a small smoke run: P 4 and 8, 20 steps, seed subset 4")
    parser.add_argument("--contenders",
                        default=",".join(c for c in CONTENDERS if c != "reference"),
                        help="comma-separated subset of " + ",".join(CONTENDERS)
                        + " (default: all but reference, which needs the repository's "
                        f"history: commit {REFERENCE_COMMIT})")
    parser.add_argument("--jaxnas-only-above", type=int, default=None,
                        help="populations above this run jaxnas alone (too slow otherwise)")
    parser.add_argument("--seed-max", type=int, default=None,
                        help="seed-style contenders train at most this many candidates "
                        "(default 32; quick: 4)")
    parser.add_argument("--vmap-max", type=int, default=0,
                        help="torch vmap trains at most this many of the P (0: all P)")
    parser.add_argument("--seed-threads", type=int, default=1,
                        help="torch threads of the one-process seed-style loop")
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 1,
                        help="one-thread processes of the multiproc contender (default: cores)")
    parser.add_argument("--vmap-threads", type=int, default=1,
                        help="torch threads of the vmap contender (0: torch's default; 2 "
                        "threads ran 12x slower on an oversubscribed CPU)")
    parser.add_argument("--torch-device", default="cpu",
                        help="device of every PyTorch contender (cuda on a GPU machine)")
    parser.add_argument("--host-devices", type=int, default=os.cpu_count() or 1,
                        help="XLA host devices for jaxnas on CPU (0: leave XLA_FLAGS alone)")
    parser.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/results")
    parser.add_argument("--name", default="throughput_cpu", help="stem of the output files")
    parser.add_argument("--json", action="store_true", help="print one JSON object per P")
    parser.add_argument("--no-files", action="store_true", help="write no result files")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.population = args.population or [4, 8]
    args.steps = args.steps or (20 if args.quick else 200)
    args.seed_max = args.seed_max or (4 if args.quick else 32)
    args.population = sorted(set(args.population or DEFAULT_POPULATIONS))
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; choose from {CONTENDERS}")
    for name in ("steps", "batch_size", "width", "seed_max", "procs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if min(args.population) < 1:
        parser.error("--population sizes must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.worker:
        _run_worker(args.worker, args.spec, args.result)
        return 0
    started = time.time()
    rows = []
    with tempfile.TemporaryDirectory(prefix="jaxnas_throughput_") as workdir:
        prepared = _prepare(args, Path(workdir))
        if "reference" in args.contenders:
            _reference_tree(Path(workdir))
        for population in args.population:
            contenders = args.contenders
            if args.jaxnas_only_above is not None and population > args.jaxnas_only_above:
                contenders = [c for c in contenders if c == "jaxnas"]
            row = _measure(argparse.Namespace(**{**vars(args), "contenders": contenders}),
                           population, prepared, Path(workdir))
            row["contenders"] = contenders
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(f"P={population}: " + ", ".join(
                    f"{k} {_fmt(row.get(k), 2)}" for k in (
                        "jaxnas_cand_per_s", "torch_seed_cand_per_s",
                        "torch_multiproc_cand_per_s", "torch_vmap_cand_per_s", "compile_s")),
                    flush=True)
    config = {k: v for k, v in vars(args).items() if k not in ("worker", "spec", "result")}
    report = {"machine": prepared["machine"], "config": config, "results": rows,
              "targets": _targets(rows, args), "total_s": time.time() - started,
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if not args.no_files:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / f"{args.name}.json", report)
        markdown = _markdown(report)
        tmp = out / f"{args.name}.md.tmp"
        tmp.write_text(markdown)
        os.replace(tmp, out / f"{args.name}.md")
        _plot(report, out / f"{args.name}.png")
        if not args.json:
            print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
