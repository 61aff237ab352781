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
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as Spec

from jaxnas.arch import Arch, ArchError
from jaxnas.data import Dataset
from jaxnas.nn import Compact, Model, executed_flops
from jaxnas.spaces import Space
from jaxnas.train import _programs, _templates
from jaxnas.train._config import Hyperparams, TrainConfig
from jaxnas.train._layout import PopulationLayout, population_layout, round_up
from jaxnas.train._programs import AXIS, KEY_IMPL, TrainState, pad_rows


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


@dataclasses.dataclass(frozen=True, eq=False)
class DeviceData:
    """A dataset's train and validation splits placed (replicated) on a device mesh.

    Build it once with ``put_data`` and pass it to every ``train`` call, so the arrays
    cross to the devices once.
    """

    x_train: jax.Array  # (n_train, *input_shape) float32
    y_train: jax.Array  # (n_train,) int32
    x_val: jax.Array  # (n_val, *input_shape) float32
    y_val: jax.Array  # (n_val,) int32
    num_classes: int
    devices: tuple[jax.Device, ...]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def put_data(data: Dataset, devices: Sequence[jax.Device] | None = None) -> DeviceData:
    """Copies ``data``'s train and validation splits to ``devices`` (default: all)."""
    devices = _device_tuple(devices)
    replicated = NamedSharding(_programs.mesh_of(devices), Spec())
    return DeviceData(
        x_train=_global(np.asarray(data.x_train, np.float32), replicated),
        y_train=_global(np.asarray(data.y_train, np.int32), replicated),
        x_val=_global(np.asarray(data.x_val, np.float32), replicated),
        y_val=_global(np.asarray(data.y_val, np.int32), replicated),
        num_classes=int(data.num_classes),
        devices=devices,
    )


def make_train(space: Space, config: TrainConfig | None = None,
               devices: Sequence[jax.Device] | None = None) -> Callable[..., TrainResult]:
    """Builds ``train(key, archs, data, state=None) -> TrainResult`` for one space.

    Args:
      space: the search space of every population given to ``train``.
      config: the training configuration (default ``TrainConfig()``).
      devices: devices sharing the population axis (default ``jax.devices()``: every
        device of every process after ``initialize_distributed``).

    Returns:
      ``train(key, archs, data, state=None, *, batch_key=None)``: ``archs`` is a
      population of P architectures (leading axis P), ``data`` a ``Dataset`` or
      ``DeviceData``, and ``state`` a ``TrainState`` of the same P candidates to continue
      from. ``key`` is one threefry key, or (P,) keys, one per candidate (a candidate's
      result then does not depend on the rest of its population). A fresh run draws
      candidate i's initial parameters from ``fold_in(split(key)[0], i)`` (or from
      ``key[i]``) and the minibatch order from ``batch_key`` (default ``split(key)[1]``;
      required with per-candidate keys). A continued run takes both from ``state`` and
      ignores the keys; k steps and then m more equal k + m steps at once. Results do
      not depend on the chunk size, the padding or the number of devices beyond float
      rounding.
    """
    devices = _device_tuple(devices)
    config = TrainConfig() if config is None else config
    static = config.static()
    hyper = config.hyperparams()

    def train(key: jax.Array, archs: Arch, data: Dataset | DeviceData,
              state: TrainState | None = None, *,
              batch_key: jax.Array | None = None) -> TrainResult:
        if not isinstance(data, DeviceData):
            data = put_data(data, devices)
        elif data.devices != devices:
            raise ValueError("data was placed on other devices than this trainer's; "
                             "call put_data with the same devices")
        n_train = data.x_train.shape[0]
        if static.batch_size > n_train:
            raise ValueError(f"batch_size {static.batch_size} exceeds the {n_train} "
                             "training examples")
        adj, ops = _host_population(space, archs)
        population = ops.shape[0]
        # Checked at a rounded size (copies of row 0): one validity program for many P.
        rounded = round_up(population, 1)
        _check_valid(space, pad_rows(adj, rounded), pad_rows(ops, rounded))
        if state is not None:
            _check_state(state, population)
        replicated = NamedSharding(_programs.mesh_of(devices), Spec())
        numbers = Hyperparams(*(_global(np.float32(v), replicated) for v in hyper))
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


# Chunks per template a device's share is cut into, at least (see _layout): at P=1024,
# 6 templates, chunks of 32 execute 0.83 useful FLOPs on NAS-Bench-201 cells, of 128 0.65
# (benchmarks/results/accelerator_flops.md).
_CHUNKS_PER_TEMPLATE = 4


def _layout(space: Space, static: TrainConfig, data: DeviceData,
            devices: tuple[jax.Device, ...], population: int) -> PopulationLayout:
    """The padded layout of P candidates on ``devices`` (chunk size under the budget).

    The accelerator program's chunks hold at most a 1 / (4 * templates) share of a
    device's candidates (a power of two): each template then fills chunks of its own and
    its last, partly filled chunk (padding that runs) is a small part of its work; each
    device has ``templates / devices`` chunks more than the population fills, for those.
    """
    program = static.program_for(devices[0].platform)
    chunk = _chunk_size(space, static, data.input_shape, data.num_classes, program,
                        devices[0])
    if program != "accelerator":
        return population_layout(population, chunk, len(devices), static.population_rounding)
    share = -(-population // len(devices)) // (_CHUNKS_PER_TEMPLATE * static.templates)
    chunk = min(chunk, 1 << max(0, share.bit_length() - 1))
    layout = population_layout(population, chunk, len(devices), static.population_rounding)
    # Room for each template's last, partly filled chunk besides the population's whole
    # ones; a chunk left empty runs nothing.
    extra = -(-static.templates // len(devices))
    return PopulationLayout(layout.devices, layout.num_chunks + extra, layout.chunk)


def _placed_keys(devices: tuple[jax.Device, ...], layout,
                 keys: tuple[np.ndarray, np.ndarray]) -> tuple[jax.Array, jax.Array]:
    """Init key data (P, 2) padded to the layout and sharded by candidate, and the
    replicated batch key data."""
    mesh = _programs.mesh_of(devices)
    return (_global(pad_rows(keys[0], layout.size), NamedSharding(mesh, Spec(AXIS))),
            _global(keys[1], NamedSharding(mesh, Spec())))


def _fresh_state(space: Space, static: TrainConfig, data: DeviceData,
                 devices: tuple[jax.Device, ...], layout,
                 keys: tuple[np.ndarray, np.ndarray]) -> TrainState:
    """The padded fresh state of candidates drawn from ``keys``."""
    return _programs.init_program(
        space, static.model, static.optimizer, static.shared_batches, data.input_shape,
        data.num_classes, devices, layout.size,
    )(*_placed_keys(devices, layout, keys))


class _Rows(NamedTuple):
    """A population laid out for one program: the population row of each program row,
    the program rows' architectures, each chunk's template and the program's form."""

    order: np.ndarray
    archs: Arch | Compact
    chunk_templates: np.ndarray
    program: _programs.Program


def _rows(space: Space, static: TrainConfig, data: DeviceData, layout: PopulationLayout,
          archs: Arch, platform: str) -> _Rows:
    population = archs.ops.shape[0]
    program = static.program_for(platform)
    if program != "accelerator":
        order = np.r_[np.arange(population), np.zeros(layout.size - population, np.int64)]
        return _Rows(order, jax.tree.map(lambda a: a[order], archs),
                     np.zeros(layout.devices * layout.num_chunks, np.int32),
                     _programs.Program(branch=program == "cpu" and layout.chunk == 1))
    model = _programs.model_of(space, data.input_shape, data.num_classes, static.model)
    family = template_family(model, static.templates)
    compacted = _programs.compact_program(model, space.max_nodes)(
        jax.device_put(archs, jax.local_devices()[0]))
    plan = _templates.plan(family, tuple(np.asarray(a) for a in (
        compacted.adj, compacted.ops, compacted.node)), layout.devices, layout.num_chunks,
        layout.chunk)
    return _Rows(plan.order, Compact(*plan.archs), plan.chunk_templates,
                 _programs.Program(templates=family.templates))


def _train_part(space: Space, static: TrainConfig, devices: tuple[jax.Device, ...],
                data: DeviceData, archs: Arch, numbers: Hyperparams, *,
                state: TrainState | None = None,
                keys: tuple[np.ndarray, np.ndarray] | None = None) -> TrainResult:
    """Trains host ``archs`` (leading axis P) in one program, continuing ``state`` or from
    fresh ``keys`` (init key data (P, 2), batch key data); a program that runs out of
    device memory is tried again with chunks half as large."""
    population = archs.ops.shape[0]
    layout = _layout(space, static, data, devices, population)
    rows = _rows(space, static, data, layout, archs, devices[0].platform)
    mesh = _programs.mesh_of(devices)
    by_candidate = NamedSharding(mesh, Spec(AXIS))
    placed = jax.tree.map(lambda a: _global(a, by_candidate), rows.archs)
    from_key = state is None and not static.keep_state
    if state is not None:
        start_from = _programs.gather_program(devices)(state, _global(
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
            start_from, placed, _global(rows.chunk_templates, by_candidate), numbers,
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
    # Each candidate's first program row (padding rows repeat row 0).
    inverse = np.zeros(population, np.int64)
    inverse[rows.order[::-1]] = np.arange(len(rows.order))[::-1]
    if new_state is not None:
        new_state = _programs.rows_program()(new_state, _global(
            inverse, NamedSharding(mesh, Spec())))
    return TrainResult(
        val_loss=np.asarray(val_loss)[inverse],
        val_acc=np.asarray(val_acc)[inverse],
        train_curve=np.asarray(curve)[inverse],
        params=None if new_state is None else new_state.params,
        state=new_state,
    )


class ProgramCost(NamedTuple):
    """What ``train`` runs for a population: forward matmul FLOPs per example.

    Attributes:
      useful: (P,) each candidate's own (``Model.flops``).
      executed: (size,) each program row's: the padded program's for "select", the
        chunk's template for "accelerator" (0 in a chunk of padding only, which runs
        nothing), the candidate's own for "cpu" (its nodes branch); padding rows
        included.
      program: the program ("cpu", "accelerator" or "select").
      layout: the padded population layout.
      templates: each program row's template (accelerator; -1 in padding chunks).
    """

    useful: np.ndarray
    executed: np.ndarray
    program: str
    layout: PopulationLayout
    templates: np.ndarray | None


def program_cost(space: Space, archs: Arch, data: Dataset | DeviceData,
                 config: TrainConfig | None = None,
                 devices: Sequence[jax.Device] | None = None) -> ProgramCost:
    """The cost accounting of ``train_population(key, space, archs, data, config)``: the
    same layout and, for the accelerator program, the same plan (host work only)."""
    config = TrainConfig() if config is None else config
    devices = _device_tuple(devices)
    if not isinstance(data, DeviceData):
        data = put_data(data, devices)
    static = config.static()
    adj, ops = _host_population(space, archs)
    archs = Arch(adj=adj, ops=ops)
    model = _programs.model_of(space, data.input_shape, data.num_classes, static.model)
    layout = _layout(space, static, data, devices, len(ops))
    rows = _rows(space, static, data, layout, archs, devices[0].platform)
    useful = np.asarray(model.flops(jax.device_put(archs, jax.local_devices()[0])), np.float64)
    program = static.program_for(devices[0].platform)
    if program == "cpu":
        return ProgramCost(useful, useful[rows.order], program, layout, None)
    if program == "select":
        return ProgramCost(useful, np.full(layout.size, float(model.executed_flops)), program,
                           layout, None)
    per_template = [executed_flops(model.layout, template=t) for t in rows.program.templates]
    used = np.repeat(rows.chunk_templates, layout.chunk)
    idle = used == len(per_template)
    executed = np.where(idle, 0.0, np.asarray(per_template + [0])[used])
    return ProgramCost(useful, executed, program, layout, np.where(idle, -1, used))


@functools.lru_cache(maxsize=16)
def template_family(model: Model, templates: int = 6) -> _templates.Family:
    """The slot templates of ``model``'s accelerator program (at most ``templates``):
    chosen once, by a greedy cover of the executed FLOPs of 1,024 architectures that
    the space samples with key 0; the first, the full template, fits every candidate."""
    space = model.layout.space
    sample = _programs.compact_program(model, space.max_nodes)(
        space.sample(jax.random.key(0), 1024))
    signatures = _templates.signatures(model.layout, np.asarray(sample.adj),
                                       np.asarray(sample.ops))
    return _templates.choose_family(model.layout, signatures, templates)


@functools.lru_cache(maxsize=64)
def _cached_train(space: Space, config: TrainConfig,
                  devices: tuple[jax.Device, ...]) -> Callable[..., TrainResult]:
    return make_train(space, config, devices)


def train_population(key: jax.Array, space: Space, archs: Arch, data: Dataset | DeviceData,
                     config: TrainConfig | None = None, *, state: TrainState | None = None,
                     batch_key: jax.Array | None = None,
                     devices: Sequence[jax.Device] | None = None) -> TrainResult:
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

    Returns:
      A ``TrainResult`` with leading axis P.
    """
    config = TrainConfig() if config is None else config
    train = _cached_train(space, config, _device_tuple(devices))
    return train(key, archs, data, state, batch_key=batch_key)


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
    devices = _device_tuple(devices)
    if not isinstance(data, DeviceData):
        data = put_data(data, devices)
    static = config.static()
    layout = _layout(space, static, data, devices, population)
    with jax.threefry_partitionable(False):
        init_keys, batch = _start_keys(key, batch_key, population, round_up(population, 1))
        state = _fresh_state(space, static, data, devices, layout,
                             (init_keys[:population], batch))
    if layout.size != population:
        state = _programs.rows_program()(state, np.arange(population))
    return state


def evaluate(space: Space, archs: Arch, params: Any, x: np.ndarray, y: np.ndarray,
             num_classes: int, config: TrainConfig | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Cross-entropy and accuracy of trained candidates on any split (e.g. the test split).

    Args:
      space: the candidates' search space.
      archs: P architectures.
      params: their parameters (leaves with leading axis P), e.g. ``TrainResult.params``.
      x: (n, *input_shape) examples.
      y: (n,) integer labels.
      num_classes: the model's number of classes.
      config: supplies the model config and ``eval_batch_size`` (default ``TrainConfig()``).

    Returns:
      (loss (P,), accuracy (P,)) float32 host arrays; a non-finite loss becomes +inf.
    """
    config = TrainConfig() if config is None else config
    model = _programs.model_of(space, tuple(x.shape[1:]), num_classes, config.model)
    archs = Arch(adj=jnp.asarray(archs.adj, jnp.int8), ops=jnp.asarray(archs.ops, jnp.int32))
    device = jax.devices()[0]
    # The accelerator program's typed slots need host planning; evaluation is not hot,
    # so vmapped chunks evaluate in the select program (the same function).
    program = "cpu" if config.program_for(device.platform) == "cpu" else "select"
    chunk = _chunk_size(space, config, tuple(x.shape[1:]), num_classes, program, device)
    loss, acc = _programs.evaluate_program(model, config.eval_batch_size, chunk)(
        params, archs, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32))
    loss = np.asarray(loss)
    return np.where(np.isfinite(loss), loss, np.inf).astype(np.float32), np.asarray(acc)


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


def _device_tuple(devices: Sequence[jax.Device] | None) -> tuple[jax.Device, ...]:
    devices = tuple(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("the trainer needs at least one device")
    return devices


def _global(value: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from a host array that every process holds in full."""
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def _host_population(space: Space, archs: Arch) -> tuple[np.ndarray, np.ndarray]:
    adj = np.asarray(archs.adj)
    ops = np.asarray(archs.ops)
    n = space.max_nodes
    if ops.ndim != 2 or ops.shape[1] != n or adj.shape != (ops.shape[0], n, n):
        raise ArchError(f"expected a population of {space.name} architectures with adj "
                        f"(P, {n}, {n}) and ops (P, {n}); got adj {adj.shape}, ops {ops.shape}")
    if ops.shape[0] == 0:
        raise ArchError("cannot train an empty population")
    return adj.astype(np.int8), ops.astype(np.int32)



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


@functools.lru_cache(maxsize=32)
def _chunk_size(space: Space, config: TrainConfig, input_shape: tuple[int, ...],
                num_classes: int, program: str, device: jax.Device) -> int:
    """The configured chunk; else 1 for the "cpu" program (each candidate runs alone and
    its nodes branch), else the largest chunk whose working memory fits the budget."""
    if config.chunk_size is not None:
        return config.chunk_size
    if program == "cpu":
        return 1
    model = _programs.model_of(space, input_shape, num_classes, config.model)
    per_candidate, fixed = _programs.chunk_memory(model, config)
    budget = memory_budget(config, device)
    if budget < fixed + per_candidate:
        raise MemoryError(
            f"one candidate needs about {(fixed + per_candidate) / 2**20:.0f} MiB of working "
            f"memory, more than the {budget / 2**20:.0f} MiB budget on {device.platform}; "
            "lower the batch size or the width, or raise TrainConfig.memory_budget_mb")
    return int((budget - fixed) // per_candidate)


def memory_budget(config: TrainConfig, device: jax.Device) -> int:
    """Bytes a chunk may use on ``device``: ``config.memory_budget_mb``, else
    ``config.memory_fraction`` of the device allocator's limit (of the machine's memory
    on a CPU) less what is in use."""
    if config.memory_budget_mb is not None:
        return config.memory_budget_mb * 2**20
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
        return int(config.memory_fraction * stats["bytes_limit"]) - stats.get("bytes_in_use", 0)
    return int(config.memory_fraction * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


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


def make_evaluate(space: Space, config: TrainConfig, data: Dataset | DeviceData,
                  population: int, devices: Sequence[jax.Device] | None = None):
    """A pure, jittable ``evaluate(key, archs) -> val_loss (P,)`` for ``run_fused``.

    The same training program as ``train`` (chunks, shards, padding to the layout's
    size), without host steps, so a whole search (ask, train, tell for G
    generations) can run inside one ``lax.scan`` under one ``jit``. Candidate i of
    a call starts from ``fold_in(split(key)[0], i)`` and the minibatch order from
    ``split(key)[1]``, exactly as ``train(key, archs, data)``; the architectures must
    be valid (strategies only ask valid ones). Diverged candidates get +inf.

    Args:
      space: the search space.
      config: the training configuration (parameters are not kept); its program must
        be traceable: "cpu" or "select" ("auto" picks "select" off the CPU), since the
        accelerator program places candidates on the host.
      data: the dataset (copied to the devices once, here).
      population: P, the number of architectures of every call.
      devices: devices sharing the population axis (default: all).
    """
    if config.program == "accelerator":
        # Templates are chosen on the host from the architectures' values, which a traced
        # population does not have.
        raise ValueError("make_evaluate traces the population: it runs the 'cpu' or "
                         "'select' program, not 'accelerator'")
    devices = _device_tuple(devices)
    platform = devices[0].platform
    program = "cpu" if config.program_for(platform) == "cpu" else "select"
    static = dataclasses.replace(config.static(), keep_state=False, program=program)
    if not isinstance(data, DeviceData):
        data = put_data(data, devices)
    chunk = _chunk_size(space, static, data.input_shape, data.num_classes, program, devices[0])
    layout = population_layout(population, chunk, len(devices), static.population_rounding)
    no_templates = _global(np.zeros(layout.devices * layout.num_chunks, np.int32),
                           NamedSharding(_programs.mesh_of(devices), Spec(AXIS)))
    train_program = _programs.train_program(
        space, static, data.input_shape, data.num_classes, devices, layout, True,
        _programs.Program(branch=program == "cpu" and layout.chunk == 1))
    hyper = Hyperparams(*(jnp.float32(v) for v in config.hyperparams()))
    data_args = (data.x_train, data.y_train, data.x_val, data.y_val)

    def evaluate(key: jax.Array, archs: Arch) -> jax.Array:
        padded = jax.tree_util.tree_map(lambda leaf: pad_rows(leaf, layout.size), archs)
        with jax.threefry_partitionable(False):
            keys = _programs.derive_keys_program(layout.size)(jax.random.key_data(key))
            (val_loss, _, _), _ = train_program(keys, padded, no_templates, hyper, *data_args)
        return val_loss[:population]

    return evaluate
