"""The population trainer's public functions: ``make_train`` and ``train_population``.

``train`` is a thin host layer around cached compiled programs (``_programs``): it
checks the population, pads it to a rounded size, places it on the device mesh and
runs one program (``TrainConfig.program``). The accelerator program first compacts
the candidates and packs them into chunks of typed slot templates (``_templates``);
the architectures, keys and swept numbers are traced, so a new population of the same
padded size compiles nothing.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as Spec

from jaxnas.arch import Arch, ArchError
from jaxnas.data import Dataset
from jaxnas.spaces import Space
from jaxnas.train import _programs, _state
from jaxnas.train._config import Hyperparams, TrainConfig, per_candidate
from jaxnas.train._layout import round_up
from jaxnas.train._placement import (
    DeviceData,
    device_tuple,
    global_array,
    host_population,
    put_data,
)
from jaxnas.train._plans import padded_layout, program_rows
from jaxnas.train._state import AXIS, KEY_IMPL, TrainState, pad_rows


class TrainResult(NamedTuple):
    """What one ``train`` call returns for P candidates.

    Attributes:
      val_loss: (P,) float32 host array, mean cross-entropy on the whole validation
        split; +inf for a candidate that diverged.
      val_acc: (P,) float32 host array, validation accuracy; 0 for a diverged candidate.
      train_curve: (P, C) float32 host array, the mean training loss over C equal
        segments of this call's steps (C = min(curve_points, steps)).
      params: trained parameters (leaves with leading axis P), None without keep_state.
      state: the state to continue from, None without keep_state.
    """

    val_loss: np.ndarray
    val_acc: np.ndarray
    train_curve: np.ndarray
    params: Any
    state: TrainState | None


def make_train(space: Space, config: TrainConfig | None = None,
               devices: Sequence[jax.Device] | None = None) -> Callable[..., TrainResult]:
    """Builds ``train(key, archs, data, state=None) -> TrainResult`` for one space.

    Args:
      space: the search space of every population given to ``train``.
      config: the training configuration (default ``TrainConfig()``).
      devices: devices sharing the population axis (default ``jax.devices()``: every
        device of every process after ``initialize_distributed``).

    Returns:
      ``train(key, archs, data, state=None, *, batch_key=None, hyperparams=None)``:
      ``archs`` is a population of P architectures (leading axis P), ``data`` a
      ``Dataset`` or ``DeviceData``, and ``state`` a ``TrainState`` of the same P
      candidates to continue from. ``hyperparams`` overrides ``config``'s traced
      numbers (a ``Hyperparams`` or a dict of some of its fields): scalars, or (P,)
      values with which each candidate trains as it would alone at them, in the same
      program. ``key`` is one threefry key, or (P,) keys, one per candidate (a
      candidate's result then does not depend on the rest of its population). A fresh
      run draws candidate i's initial parameters from ``fold_in(split(key)[0], i)`` (or
      from ``key[i]``) and the minibatch order from ``batch_key`` (default
      ``split(key)[1]``; required with per-candidate keys). A continued run takes both
      from ``state`` and ignores the keys; k steps and then m more equal k + m steps at
      once. Results do not depend on the chunk size, the padding or the number of
      devices beyond float rounding.
    """
    devices = device_tuple(devices)
    config = TrainConfig() if config is None else config
    static = config.static()

    def train(key: jax.Array, archs: Arch, data: Dataset | DeviceData,
              state: TrainState | None = None, *, batch_key: jax.Array | None = None,
              hyperparams: Hyperparams | dict | None = None) -> TrainResult:
        if not isinstance(data, DeviceData):
            data = put_data(data, devices)
        elif data.devices != devices:
            raise ValueError("data was placed on other devices than this trainer's; "
                             "call put_data with the same devices")
        n_train = data.x_train.shape[0]
        if static.batch_size > n_train:
            raise ValueError(f"batch_size {static.batch_size} exceeds the {n_train} "
                             "training examples")
        adj, ops = host_population(space, archs)
        population = ops.shape[0]
        # Checked at a rounded size (copies of row 0): one validity program for many P.
        rounded = round_up(population, 1)
        _check_valid(space, pad_rows(adj, rounded), pad_rows(ops, rounded))
        if state is not None:
            _check_state(state, population)
        numbers = per_candidate(config, hyperparams, population)
        replicated = NamedSharding(_state.mesh_of(devices), Spec())
        # The non-partitionable threefry compiles a model's initialisation about 3x
        # faster on CPU; each device draws its own candidates' numbers, so nothing is lost.
        with jax.threefry_partitionable(False):
            keys = None
            if state is None:
                init_keys, batch = _start_keys(key, batch_key, population, rounded)
                keys = (init_keys[:population], batch)
            else:
                state = _on_mesh(state, replicated)
            return _train_part(space, static, devices, data, Arch(adj=adj, ops=ops), numbers,
                               state=state, keys=keys)

    return train


def _placed_keys(devices: tuple[jax.Device, ...], layout,
                 keys: tuple[np.ndarray, np.ndarray]) -> tuple[jax.Array, jax.Array]:
    """Init key data (P, 2) padded to the layout and sharded by candidate, and the
    replicated batch key data."""
    mesh = _state.mesh_of(devices)
    return (global_array(pad_rows(keys[0], layout.size), NamedSharding(mesh, Spec(AXIS))),
            global_array(keys[1], NamedSharding(mesh, Spec())))


def _fresh_state(space: Space, static: TrainConfig, data: DeviceData,
                 devices: tuple[jax.Device, ...], layout,
                 keys: tuple[np.ndarray, np.ndarray]) -> TrainState:
    """The padded fresh state of candidates drawn from ``keys``."""
    return _programs.init_program(
        space, static.model, static.optimizer, static.shared_batches, data.input_shape,
        data.num_classes, devices, layout.size,
    )(*_placed_keys(devices, layout, keys))


def _train_part(space: Space, static: TrainConfig, devices: tuple[jax.Device, ...],
                data: DeviceData, archs: Arch, numbers: Hyperparams, *,
                state: TrainState | None = None,
                keys: tuple[np.ndarray, np.ndarray] | None = None) -> TrainResult:
    """Trains host ``archs`` (leading axis P) in one program, continuing ``state`` or from
    fresh ``keys`` (init key data (P, 2), batch key data), each candidate at its own
    ``numbers`` ((P,) host arrays); a program that runs out of device memory is tried
    again with chunks half as large."""
    population = archs.ops.shape[0]
    layout = padded_layout(space, static, data, devices, population)
    rows = program_rows(space, static, data, layout, archs, devices[0].platform)
    mesh = _state.mesh_of(devices)
    by_candidate = NamedSharding(mesh, Spec(AXIS))
    placed = jax.tree.map(lambda a: global_array(a, by_candidate), rows.archs)
    from_key = state is None and not static.keep_state
    if state is not None:
        start_from = _state.gather_program(devices)(state, global_array(
            rows.order, NamedSharding(mesh, Spec())))
    elif static.keep_state:
        start_from = _fresh_state(space, static, data, devices, layout,
                                  (keys[0][rows.order], keys[1]))
    else:
        # The training program initialises chunk by chunk, so memory stays O(chunk)
        # however large the population.
        start_from = _placed_keys(devices, layout, (keys[0][rows.order], keys[1]))
    program = _programs.train_program(
        space, static, data.input_shape, data.num_classes, devices, layout, from_key,
        rows.program)
    try:
        (val_loss, val_acc, curve), new_state = program(
            start_from, placed, global_array(rows.chunk_templates, by_candidate),
            Hyperparams(*(global_array(v[rows.order], by_candidate) for v in numbers)),
            data.x_train, data.y_train, data.x_val, data.y_val)
    except jax.errors.JaxRuntimeError as error:
        if "RESOURCE_EXHAUSTED" not in str(error):
            raise
        if layout.chunk == 1:
            raise MemoryError(f"one candidate does not fit the device's memory ({error})"
                              .splitlines()[0]) from None
        smaller = dataclasses.replace(static, chunk_size=max(1, layout.chunk // 2))
        return _train_part(space, smaller, devices, data, archs, numbers, state=state,
                           keys=keys)
    inverse = rows.first  # each candidate's own program row
    if new_state is not None:
        new_state = _state.rows_program()(new_state, global_array(
            inverse, NamedSharding(mesh, Spec())))
    return TrainResult(
        val_loss=np.asarray(val_loss)[inverse],
        val_acc=np.asarray(val_acc)[inverse],
        train_curve=np.asarray(curve)[inverse],
        params=None if new_state is None else new_state.params,
        state=new_state,
    )


@functools.lru_cache(maxsize=64)
def _cached_train(space: Space, config: TrainConfig,
                  devices: tuple[jax.Device, ...]) -> Callable[..., TrainResult]:
    return make_train(space, config, devices)


def train_population(key: jax.Array, space: Space, archs: Arch, data: Dataset | DeviceData,
                     config: TrainConfig | None = None, *, state: TrainState | None = None,
                     batch_key: jax.Array | None = None,
                     devices: Sequence[jax.Device] | None = None,
                     hyperparams: Hyperparams | dict | None = None) -> TrainResult:
    """Trains and validates a population; compiled programs are reused across calls.

    Args:
      key: one PRNG key, or (P,) keys (one per candidate), of the initial parameters
        (and, when ``batch_key`` is None, of the minibatch order); see ``make_train``.
      space: the population's search space.
      archs: P architectures of ``space`` (leading axis P).
      data: a ``Dataset`` or, to copy the data to the devices once for many calls, the
        ``DeviceData`` of ``put_data``.
      config: the training configuration (default ``TrainConfig()``).
      state: a previous result's ``state``, to continue training the same P candidates.
      batch_key: PRNG key of the minibatch order of a fresh run.
      devices: devices sharing the population axis (default: all).
      hyperparams: ``config``'s traced numbers to override, scalars or (P,) values
        (``make_train``).

    Returns:
      A ``TrainResult`` with leading axis P.
    """
    config = TrainConfig() if config is None else config
    train = _cached_train(space, config, device_tuple(devices))
    return train(key, archs, data, state, batch_key=batch_key, hyperparams=hyperparams)


def init_state(key: jax.Array, space: Space, population: int, data: Dataset | DeviceData,
               config: TrainConfig | None = None, *, batch_key: jax.Array | None = None,
               devices: Sequence[jax.Device] | None = None) -> TrainState:
    """The state a fresh ``train_population(key, ...)`` of P candidates starts from.

    Initial parameters, fresh optimiser state and minibatch keys at step 0, drawn as
    the fresh call draws them. Passed unchanged as ``state=`` it trains exactly as the
    fresh call; edited first it trains from other starting points: inherited
    parameters, other minibatch orders per candidate (``TrainState.batch_key``).

    Args:
      key: one key or (P,) keys, as for ``train_population``.
      space: the candidates' search space.
      population: P.
      data: the ``Dataset`` or ``DeviceData`` they will train on (its shapes).
      config: the training configuration (default ``TrainConfig()``).
      batch_key: key of the shared minibatch order (required with (P,) keys).
      devices: as for ``train_population``.
    """
    config = TrainConfig() if config is None else config
    devices = device_tuple(devices)
    if not isinstance(data, DeviceData):
        data = put_data(data, devices)
    static = config.static()
    layout = padded_layout(space, static, data, devices, population)
    with jax.threefry_partitionable(False):
        init_keys, batch = _start_keys(key, batch_key, population, round_up(population, 1))
        state = _fresh_state(space, static, data, devices, layout,
                             (init_keys[:population], batch))
    if layout.size != population:
        state = _state.rows_program()(state, np.arange(population))
    return state


def _key_data(key: jax.Array) -> np.ndarray:
    """Raw (..., 2) uint32 data of typed or legacy threefry keys."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        impl = str(jax.random.key_impl(key))
        if impl != KEY_IMPL:
            raise ValueError(f"train needs {KEY_IMPL} keys; got {impl} keys")
        key = jax.random.key_data(key)
    key = np.asarray(key)
    if key.shape[-1:] != (2,) or key.dtype != np.uint32:
        raise ValueError(f"expected PRNG keys (jax.random.key(seed)); got an array of "
                         f"shape {key.shape} and dtype {key.dtype}")
    return key


def _start_keys(key: jax.Array, batch_key: jax.Array | None, population: int,
                size: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw initialisation key data (size, 2) and minibatch key data (2,) of a fresh run."""
    data = _key_data(key)
    if data.shape == (2,):
        local = jax.device_put(data, jax.local_devices()[0])
        init_keys, default_batch = (np.asarray(a) for a in
                                    _programs.derive_keys_program(size)(local))
        return init_keys, default_batch if batch_key is None else _one_key(batch_key)
    if data.shape != (population, 2):
        raise ValueError(f"expected one key or {population} keys (one per candidate); got "
                         f"keys of shape {data.shape[:-1]}")
    if batch_key is None:
        raise ValueError("per-candidate keys need a batch_key for the shared minibatch order")
    return pad_rows(data, size), _one_key(batch_key)


def _one_key(key: jax.Array) -> np.ndarray:
    data = _key_data(key)
    if data.shape != (2,):
        raise ValueError(f"batch_key must be one key; got keys of shape {data.shape[:-1]}")
    return data


def _check_valid(space: Space, adj: np.ndarray, ops: np.ndarray) -> None:
    """Raises ArchError naming the first architecture the space rejects."""
    local = jax.local_devices()[0]
    archs = Arch(adj=jax.device_put(adj, local), ops=jax.device_put(ops, local))
    valid = np.asarray(_programs.validity_program(space)(archs))
    if valid.all():
        return
    index = int(np.flatnonzero(~valid)[0])
    try:
        space.validate(Arch(adj=adj[index], ops=ops[index]))
    except ArchError as error:
        raise ArchError(f"architecture {index}: {error}") from None
    raise ArchError(f"architecture {index} is not a valid {space.name} architecture")


def _check_state(state: TrainState, population: int) -> None:
    if not isinstance(state, TrainState):
        raise TypeError(f"state must be a TrainState (a TrainResult's .state); "
                        f"got {type(state).__name__}")
    held = np.shape(state.diverged)
    if held != (population,):
        raise ValueError(f"state holds {held[0] if held else 0} candidates but the "
                         f"population has {population}; continue with the same archs")


def _on_mesh(state: TrainState, replicated: NamedSharding) -> TrainState:
    """Moves leaves that live off the mesh (host arrays, other devices) onto it."""
    mesh_devices = replicated.device_set

    def move(leaf):
        if isinstance(leaf, jax.Array) and leaf.sharding.device_set == mesh_devices:
            return leaf
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            raise ValueError("the state lives on other devices than this trainer's")
        return jax.device_put(leaf, replicated)

    return jax.tree.map(move, state)


