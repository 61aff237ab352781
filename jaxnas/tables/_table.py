"""The ``Table`` objective: a tabular benchmark as a jittable lookup."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.arch import Arch
from jaxnas.spaces import Space


class TableError(ValueError):
    """A table that cannot be built: unknown name, missing package, unreadable file."""


@dataclasses.dataclass(frozen=True, eq=False)
class Table:
    """A tabular benchmark over a space: metrics of R architectures, looked up by arch.

    Lookups are jittable: ``space.encoding_index(archs)`` indexes the dense
    ``row_of_encoding`` array (every encoding of the space, equivalent ones
    sharing a row), which indexes the per-row metric arrays. Accuracies are
    fractions in [0, 1].

    Attributes:
      name: registry name.
      space: the search space whose archs the table answers for.
      row_of_encoding: (E,) int32 row of every encoding index, -1 where the
        table has no entry.
      val_acc: (R,) validation accuracy at the final fidelity: the search signal.
      test_acc: (R,) test accuracy, for regret only.
      costs: name -> (R,) float32 (params, flops, latency where the table has them).
      fidelities: increasing training budgets (epochs or steps) of ``val_acc_at``;
        empty when the table has only final values.
      val_acc_at: (F, R) validation accuracy after each fidelity, or None.
      keys: (R,) the table's own key of each row (host numpy, for reports).
      meta: source, dataset and notes (host, JSON-able).
    """

    name: str
    space: Space
    row_of_encoding: jax.Array
    val_acc: jax.Array
    test_acc: jax.Array
    costs: dict[str, jax.Array]
    fidelities: tuple[int, ...]
    val_acc_at: jax.Array | None
    keys: np.ndarray
    meta: dict[str, Any]

    @property
    def size(self) -> int:
        return int(self.val_acc.shape[0])

    @property
    def max_fidelity(self) -> int | None:
        return self.fidelities[-1] if self.fidelities else None

    def rows(self, archs: Arch) -> jax.Array:
        """Row of archs with any leading axes (jittable); -1 where the table has none."""
        return self.row_of_encoding[self.space.encoding_index(archs)]

    def fitness(self, archs: Arch, steps: jax.Array | None = None) -> jax.Array:
        """-validation accuracy (minimised); +inf for archs the table lacks.

        With ``steps`` and a table with fidelities, the validation accuracy after
        the largest fidelity <= steps (the lowest fidelity when steps is below
        them all); without fidelities the final value whatever ``steps``.
        """
        rows = self.rows(archs)
        safe = jnp.maximum(rows, 0)
        if steps is None or self.val_acc_at is None:
            acc = self.val_acc[safe]
        else:
            level = jnp.searchsorted(jnp.asarray(self.fidelities), steps, side="right") - 1
            acc = self.val_acc_at[jnp.clip(level, 0, len(self.fidelities) - 1), safe]
        return jnp.where(rows >= 0, -acc, jnp.inf)

    def evaluate(self, key: jax.Array, archs: Arch, steps: jax.Array | None = None) -> jax.Array:
        """The ``evaluate(key, archs[, steps])`` of ``strategies.run_fused``; key unused."""
        del key
        return self.fitness(archs, steps)

    def test_regret(self, rows: jax.Array) -> jax.Array:
        """Test accuracy of the best row minus that of ``rows`` (fractions; NaN for -1)."""
        best = jnp.max(self.test_acc)
        return jnp.where(rows >= 0, best - self.test_acc[jnp.maximum(rows, 0)], jnp.nan)


def build(name: str, space: Space, keys: np.ndarray, key_of_encoding: np.ndarray,
          val_acc, test_acc, costs: dict | None = None, fidelities=(),
          val_acc_at=None, meta: dict | None = None) -> Table:
    """A Table from host arrays: row r has key ``keys[r]``; ``key_of_encoding[e]`` is
    the key of encoding e (or a value no row has, for encodings outside the table)."""
    keys = np.asarray(keys)
    order = np.argsort(keys, kind="stable")
    position = np.searchsorted(keys[order], key_of_encoding)
    position = np.clip(position, 0, len(keys) - 1)
    found = keys[order][position] == key_of_encoding
    row_of_encoding = np.where(found, order[position], -1).astype(np.int32)
    as_array = lambda values: jnp.asarray(np.asarray(values, np.float32))
    return Table(
        name=name, space=space, row_of_encoding=jnp.asarray(row_of_encoding),
        val_acc=as_array(val_acc), test_acc=as_array(test_acc),
        costs={k: as_array(v) for k, v in (costs or {}).items()},
        fidelities=tuple(int(f) for f in fidelities),
        val_acc_at=None if val_acc_at is None else as_array(val_acc_at),
        keys=keys, meta=dict(meta or {}))
