"""NAS-Bench-Graph's light tables (the ``nas-bench-graph`` package) as Tables."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np

from jaxnas import spaces
from jaxnas.arch import NBG_OPS
from jaxnas.tables._table import Table, TableError, build

DATASETS = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv",
            "proteins")
# The proteins table covers only these ops (the package's gnn_list_proteins).
PROTEINS_OPS = ("gcn", "sage", "arma", "fc", "skip")
EXTRA = "pip install 'jaxnas[tables]'"


@functools.lru_cache(maxsize=2)
def _key_of_encoding(space) -> np.ndarray:
    """Memoised ``space.key_of_encoding()`` (a pure function of the space; 1-2 s)."""
    return space.key_of_encoding()


def read_light(dataset: str, path: str | Path | None = None) -> dict:
    """The light table of ``dataset``: {key: {'valid_perf', 'perf', 'latency', 'para'}}.

    From the installed package (its ``light_read``), or from ``path``: a pickle
    in the same format (only open files you trust: pickle runs code).
    """
    if path is None:
        try:
            from nas_bench_graph import light_read
        except ImportError:
            raise TableError(f"the NAS-Bench-Graph tables need the nas-bench-graph package: "
                             f"{EXTRA}") from None
        return light_read(dataset)
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: no such NAS-Bench-Graph table file")
    try:
        with path.open("rb") as file:
            bench = pickle.load(file)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as error:
        raise TableError(f"{path}: not a NAS-Bench-Graph table ({error})") from None
    if not isinstance(bench, dict) or not all(
            isinstance(v, dict) and {"valid_perf", "perf"} <= set(v) for v in bench.values()):
        raise TableError(f"{path}: not a NAS-Bench-Graph table (a dict of key -> "
                         "{'valid_perf', 'perf', 'latency', 'para'})")
    return bench


def nasbench_graph(dataset: str, path: str | Path | None = None) -> Table:
    """NAS-Bench-Graph on one of its nine datasets.

    Validation and test accuracy are the table's ``valid_perf`` and ``perf``;
    costs are ``latency`` (seconds) and ``params`` (millions, its ``para``).
    The light tables hold final values only, so multi-fidelity strategies see
    the final value at every fidelity.
    """
    if dataset not in DATASETS:
        raise TableError(f"unknown NAS-Bench-Graph dataset {dataset!r}; choose one of "
                         f"{', '.join(DATASETS)}")
    bench = read_light(dataset, path)
    space = spaces.nasbench_graph(ops=PROTEINS_OPS if dataset == "proteins" else NBG_OPS)
    keys = np.array(sorted(bench), np.int64)
    column = lambda name: [float(bench[int(k)].get(name, np.nan)) for k in keys]
    return build(
        f"nbgraph-{dataset}", space, keys, _key_of_encoding(space),
        val_acc=column("valid_perf"), test_acc=column("perf"),
        costs={"latency": column("latency"), "params": column("para")},
        meta={"source": "nas-bench-graph light table" if path is None else str(path),
              "dataset": dataset, "keys": "NAS-Bench-Graph valid_hash",
              "fidelity": "final values only"})
