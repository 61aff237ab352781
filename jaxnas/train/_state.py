"""The population state and the small programs that gather, pad and merge it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as Spec

AXIS = "population"


KEY_IMPL = "threefry2x32"


class TrainState(NamedTuple):
    """Everything a later ``train(..., state=state)`` call continues from.

    Attributes:
      params: model parameters, every leaf with leading axis P.
      opt_state: optax state, every leaf with leading axis P.
      batch_key: (P, 2) uint32 raw threefry key data of the minibatch order (rows all
        equal with shared batches). Raw data, not a typed key: the order is meant to be
        re-derived (``fold_in`` per epoch) by every later call.
      diverged: (P,) bool, a training loss was NaN or infinite at some step.
      step: () int32, optimiser steps done so far (the schedule's position).
    """

    params: Any
    opt_state: Any
    batch_key: jax.Array
    diverged: jax.Array
    step: jax.Array

    def candidates(self) -> dict[str, Any]:
        """The per-candidate fields (every leaf with leading axis P), by name."""
        return {name: getattr(self, name) for name in _CANDIDATE_FIELDS}

    def map_candidates(self, fn: Callable[[jax.Array], jax.Array]) -> TrainState:
        """The state with ``fn`` applied to every per-candidate leaf; ``step`` is kept."""
        return self._replace(**jax.tree.map(fn, self.candidates()))


_CANDIDATE_FIELDS = ("params", "opt_state", "batch_key", "diverged")


def pad_rows(leaf, size: int):
    """``leaf`` (P, ...) padded to (size, ...) with copies of row 0, so padding
    candidates are real ones (numpy in, numpy out; jax in, a new jax array out)."""
    xp = np if isinstance(leaf, np.ndarray) else jnp
    return xp.concatenate([leaf, xp.repeat(leaf[:1], size - leaf.shape[0], axis=0)])


def take_candidates(state: TrainState, index) -> TrainState:
    """Candidates of a population state: ``index`` an int (one candidate, no leading
    axis) or an array of rows; ``step`` is shared."""
    return state.map_candidates(lambda leaf: leaf[index])


def stack_candidates(states: list[TrainState]) -> TrainState:
    """One population state of single-candidate states (``take_candidates(s, i)``); the
    step is the first's."""
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *(s.candidates() for s in states))
    return states[0]._replace(**stacked)


@functools.lru_cache(maxsize=16)
def mesh_of(devices: tuple[jax.Device, ...]) -> jax.sharding.Mesh:
    """The 1-D mesh whose only axis carries the population."""
    return jax.sharding.Mesh(np.asarray(devices), (AXIS,))


@functools.lru_cache(maxsize=16)
def gather_program(devices: tuple[jax.Device, ...]):
    """Jitted: (a state, rows (R,) int32) -> a fresh state of those rows, sharded by
    candidate over ``devices`` (R a multiple of their number); the step is kept.

    The output never aliases the input, so the training program may donate it.
    """
    mesh = mesh_of(devices)
    by_candidate = NamedSharding(mesh, Spec(AXIS))

    def gather(state: TrainState, index: jax.Array) -> TrainState:
        rows = take_candidates(state, index)
        return rows._replace(step=jnp.asarray(state.step, jnp.int32) + 0)

    shardings = TrainState(by_candidate, by_candidate, by_candidate, by_candidate,
                           NamedSharding(mesh, Spec()))
    return jax.jit(gather, out_shardings=shardings)


@functools.lru_cache(maxsize=4)
def rows_program():
    """Jitted: (a state, rows (R,) int32) -> a state of those R candidates."""

    def rows(state: TrainState, index: jax.Array) -> TrainState:
        return take_candidates(state, index)

    return jax.jit(rows)
