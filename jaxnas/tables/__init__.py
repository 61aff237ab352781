"""Tabular benchmarks as jittable lookup objectives.

A ``Table`` maps the architectures of a space to published (or jaxnas-made)
metrics, so any strategy searches it by lookup, fused and vmapped over seeds::

    table = tables.get("nbgraph-cora")
    strategy = strategies.get("evolution", table.space, batch_size=10)
    state, history = strategies.run_fused(key, strategy, table.evaluate, generations=10)
    regret = table.test_regret(table.rows(history.archs))

``table.evaluate(key, archs[, steps])`` returns -validation accuracy
(minimised; +inf for archs the table lacks); with ``steps`` it reads the
validation accuracy at that fidelity where the table has fidelities.

Tables and the optional packages they read (``pip install 'jaxnas[tables]'``);
nothing is downloaded:

* ``nbgraph-DATASET``: NAS-Bench-Graph's light tables (``nas-bench-graph``), nine
  datasets; ``path=`` reads a pickle in the same format instead.
* ``nb201-analog``: NAS-Bench-201's 15,625 cells on CIFAR-10 from
  ``analog-nasbench`` (one accuracy: validation = test).
* ``nats-tss``: NATS-Bench topology files, ``path=`` its ``-simple`` directory,
  ``dataset=`` and ``hp=``; fidelities are epochs.
* ``jaxnas``: a table written by ``benchmarks.tabulate``, ``path=`` its JSON;
  fidelities are its two training budgets.
"""

from __future__ import annotations

from pathlib import Path

from jaxnas.tables._nasbench201 import (
    ANALOG_EDGES,
    ANALOG_OPS,
    NATS_DATASETS,
    analog_cell_index,
    jaxnas_table,
    nats_topology,
    nb201_analog,
)
from jaxnas.tables._nasbench_graph import DATASETS as NBGRAPH_DATASETS
from jaxnas.tables._nasbench_graph import PROTEINS_OPS, nasbench_graph, read_light
from jaxnas.tables._table import Table, TableError, build

_NEEDS_PATH = {"nats-tss", "jaxnas"}


def names() -> list[str]:
    """Names ``get`` accepts."""
    return [f"nbgraph-{d}" for d in NBGRAPH_DATASETS] + ["nb201-analog", "nats-tss", "jaxnas"]


def get(name: str, *, path: str | Path | None = None, **options) -> Table:
    """Builds the table registered under ``name``.

    Args:
      name: one of ``names()``.
      path: the table file or directory (required by nats-tss and jaxnas;
        optional for nbgraph-*, read from the package otherwise).
      options: loader options (nats-tss: ``dataset``, ``hp``).

    Raises:
      TableError: unknown name, missing package (naming the pip extra), bad path.
    """
    if name not in names():
        raise TableError(f"unknown table {name!r}; choose one of {', '.join(names())}")
    if name in _NEEDS_PATH and path is None:
        raise TableError(f"table {name} needs a path (the files you downloaded)")
    if name.startswith("nbgraph-"):
        return nasbench_graph(name.removeprefix("nbgraph-"), path, **options)
    if name == "nb201-analog":
        if path is not None:
            raise TableError("nb201-analog reads the analog-nasbench package; it takes no path")
        return nb201_analog(**options)
    if name == "nats-tss":
        return nats_topology(path, **options)
    return jaxnas_table(path, **options)


__all__ = [
    "ANALOG_EDGES", "ANALOG_OPS", "NATS_DATASETS", "NBGRAPH_DATASETS", "PROTEINS_OPS", "Table",
    "TableError", "analog_cell_index", "build", "get", "jaxnas_table", "names", "nasbench_graph",
    "nats_topology", "nb201_analog", "read_light",
]
