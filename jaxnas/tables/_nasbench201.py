"""NAS-Bench-201 cell tables: analog-nasbench, NATS-Bench topology files, jaxnas's own."""

from __future__ import annotations

import bz2
import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np

from jaxnas import spaces
from jaxnas.arch import NB201_EDGES, NB201_OPS, nb201_from_str
from jaxnas.tables._table import Table, TableError, build

EXTRA = "pip install 'jaxnas[tables]'"
# analog-nasbench keys a cell by NASLib's op indices: ops in NASLib's order, edges
# in NASLib's EDGE_LIST order (source node first). The test checks the mapping on
# the table itself: exactly the cells whose output is cut off by 'none' score 10%.
ANALOG_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
ANALOG_EDGES = ((1, 0), (2, 0), (3, 0), (2, 1), (3, 1), (3, 2))
NATS_DATASETS = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")


def cell_index(edge_ops) -> int:
    """Enumeration index of a cell given its 6 op ids in NAS-Bench-201 string order."""
    index = 0
    for op in edge_ops:
        index = index * len(NB201_OPS) + int(op)
    return index


def analog_cell_index(analog_key) -> int:
    """Enumeration index of the cell analog-nasbench keys as ``analog_key`` (6 ints)."""
    by_edge = {edge: NB201_OPS.index(ANALOG_OPS[op])
               for edge, op in zip(ANALOG_EDGES, analog_key, strict=True)}
    return cell_index(by_edge[edge] for edge in NB201_EDGES)


def _read_analog() -> dict:
    if importlib.util.find_spec("analognasbench") is None:
        raise TableError(f"the analog-nasbench table needs the analog-nasbench package: {EXTRA}")
    try:
        from analognasbench import AnalogNASBench
    except ImportError as error:  # 0.1.3 imports pkg_resources (setuptools < 82)
        raise TableError(f"analog-nasbench failed to import ({error}): {EXTRA}") from None
    return AnalogNASBench().data


def nb201_analog(metric: str = "baseline_accuracy") -> Table:
    """All 15,625 NAS-Bench-201 cells on CIFAR-10 from analog-nasbench.

    Its ``baseline_accuracy`` (200 epochs of digital training) is a test-set
    accuracy and the package has no validation split, so the search signal and
    the regret use the same number (optimistic, unlike NAS-Bench-201's protocol).
    """
    data = _read_analog()
    keys = np.arange(len(NB201_OPS) ** 6)
    acc = np.full(len(keys), np.nan, np.float32)
    for analog_key, record in data.items():
        acc[analog_cell_index(analog_key)] = getattr(record, metric) / 100.0
    if np.isnan(acc).any():
        raise TableError(f"analog-nasbench lacks {int(np.isnan(acc).sum())} cells")
    return build("nb201-analog", spaces.nasbench201(), keys, keys, val_acc=acc, test_acc=acc,
                 meta={"source": "analog-nasbench", "dataset": "cifar10",
                       "metric": metric, "keys": "NAS-Bench-201 enumeration index",
                       "fidelity": "final values only",
                       "note": "validation = test accuracy (the package has one split)"})


def _nats_load(path: Path):
    try:
        with bz2.BZ2File(path, "rb") as file:
            return pickle.load(file)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError) as error:
        raise TableError(f"{path}: not a NATS-Bench pickle.pbz2 file ({error})") from None


def _nats_trials(arch_results: dict, dataset: str) -> list[dict]:
    seeds = arch_results["dataset_seed"][dataset]
    return [arch_results["all_results"][(dataset, seed)] for seed in seeds]


def _nats_accuracy(trials: list[dict], eval_name: str, epochs) -> np.ndarray:
    """Accuracy of ``eval_name`` after each of ``epochs`` (0-based), averaged over seeds."""
    return np.mean([[float(t["eval_acc1es"][f"{eval_name}@{e}"]) for e in epochs]
                    for t in trials], axis=0)


def _nats_epochs(trials: list[dict], eval_name: str) -> set[int]:
    """The 0-based epochs after which every trial evaluated ``eval_name``."""
    return set.intersection(*({int(key.split("@")[1]) for key in t["eval_acc1es"]
                               if key.split("@")[0] == eval_name} for t in trials))


def nats_topology(path: str | Path, dataset: str = "cifar10-valid", hp: str = "200") -> Table:
    """NATS-Bench's topology space (NAS-Bench-201's cells) from its ``-simple`` directory.

    ``path`` holds ``meta.pickle.pbz2`` (the cell strings) and one
    ``NNNNNN.pickle.pbz2`` per cell, as NATS-Bench distributes them; cells
    without a file have no row. Validation is ``x-valid``; test is ``ori-test``
    on cifar10-valid, ``x-test`` on cifar100 and ImageNet16-120, and for
    ``cifar10`` the test accuracy of the net trained on train+valid while the
    validation comes from cifar10-valid (NAS-Bench-201's protocol). Fidelities
    are the epochs of the ``hp`` schedule ("12" or "200") after which every
    cell has a validation accuracy; accuracies are averaged over the seeds.
    """
    if dataset not in NATS_DATASETS:
        raise TableError(f"unknown NATS-Bench dataset {dataset!r}; choose one of "
                         f"{', '.join(NATS_DATASETS)}")
    root = Path(path)
    if not (root / "meta.pickle.pbz2").is_file():
        raise TableError(f"{root}: not a NATS-Bench topology directory (no meta.pickle.pbz2)")
    meta = _nats_load(root / "meta.pickle.pbz2")
    if not isinstance(meta, dict) or "meta_archs" not in meta:
        raise TableError(f"{root}/meta.pickle.pbz2 has no 'meta_archs'")
    val_source = "cifar10-valid" if dataset == "cifar10" else dataset
    test_name = "ori-test" if dataset.startswith("cifar10") else "x-test"
    keys, curves, test, params, flops, latency = [], [], [], [], [], []
    for index, arch_str in enumerate(meta["meta_archs"]):
        file = root / f"{index:06d}.pickle.pbz2"
        if not file.is_file():
            continue
        results = _nats_load(file)
        try:
            val_trials = _nats_trials(results[hp], val_source)
            test_trials = _nats_trials(results[hp], dataset)
            epochs = sorted(_nats_epochs(val_trials, "x-valid"))
            curves.append(dict(zip(epochs, _nats_accuracy(val_trials, "x-valid", epochs),
                                   strict=True)))
            test.append(_nats_accuracy(test_trials, test_name, [epochs[-1]])[0])
            latency.append(np.mean([np.mean(t["latency"]) for t in test_trials
                                    if t["latency"]] or [np.nan]))
        except (KeyError, TypeError, IndexError) as error:
            raise TableError(f"{file}: no {dataset} results for hp {hp} ({error!r})") from None
        keys.append(cell_index(nb201_from_str(arch_str).ops[1:7]))
        params.append(float(test_trials[0]["params"]))
        flops.append(float(test_trials[0]["flop"]))
    if not keys:
        raise TableError(f"{root}: no per-cell NNNNNN.pickle.pbz2 files")
    # Fidelities: the epochs with a validation accuracy for every cell (all 200 on
    # cifar10-valid; the last one only on cifar100 and ImageNet16-120).
    epochs = sorted(set.intersection(*(set(curve) for curve in curves)))
    curves = np.array([[curve[e] for curve in curves] for e in epochs]) / 100.0
    all_cells = np.arange(len(NB201_OPS) ** 6)
    return build(f"nats-tss-{dataset}", spaces.nasbench201(), np.array(keys), all_cells,
                 val_acc=curves[-1], test_acc=np.array(test) / 100.0,
                 costs={"params": params, "flops": flops, "latency": latency},
                 fidelities=[e + 1 for e in epochs], val_acc_at=curves,
                 meta={"source": str(root), "dataset": dataset, "hp": hp,
                       "keys": "NAS-Bench-201 enumeration index", "fidelity": "epochs"})


def jaxnas_table(path: str | Path) -> Table:
    """A table written by ``python -m benchmarks.tabulate`` (NAS-Bench-201 cells).

    Fidelities are its low and full training steps (``val_acc_low``, ``val_acc``).
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: no such jaxnas table file")
    try:
        table = json.loads(path.read_text())
        columns = {name: i for i, name in enumerate(table["columns"])}
        rows, index, meta = table["rows"], np.asarray(table["index"]), table["meta"]
        column = lambda name: np.array([row[columns[name]] for row in rows], np.float32)
        val, low, test = column("val_acc"), column("val_acc_low"), column("test_acc")
        costs = {"params": column("params"), "flops": column("flops")}
        steps = (meta["low_steps"], meta["steps"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise TableError(f"{path}: not a jaxnas table ({error!r})") from None
    if index.shape != (len(NB201_OPS) ** 6,):
        raise TableError(f"{path}: a partial table ({meta.get('rows')} rows); searches need "
                         "every cell (run benchmarks.tabulate to the end)")
    # One row per cell (by enumeration index), so equivalent cells share values.
    cells = np.arange(len(index))
    return build(f"jaxnas-{meta['space']}-{meta['dataset']}", spaces.nasbench201(), cells, cells,
                 val_acc=val[index], test_acc=test[index],
                 costs={name: values[index] for name, values in costs.items()},
                 fidelities=steps, val_acc_at=np.stack([low[index], val[index]]),
                 meta={"source": str(path), "dataset": meta["dataset"],
                       "keys": "NAS-Bench-201 enumeration index", "fidelity": "training steps"})
