"""Evaluating trained candidates, and the traced evaluation of fused searches."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as Spec

from jaxnas.arch import Arch
from jaxnas.data import Dataset
from jaxnas.spaces import Space
from jaxnas.train import _programs, _state, _steps
from jaxnas.train._config import Hyperparams, TrainConfig
from jaxnas.train._layout import population_layout
from jaxnas.train._memory import chunk_size_for
from jaxnas.train._placement import DeviceData, device_tuple, global_array, put_data
from jaxnas.train._state import AXIS, pad_rows


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
    # Never more rows than candidates: the memory's chunk would pad them with copies.
    chunk = min(chunk_size_for(space, config, tuple(x.shape[1:]), num_classes, program,
                               device), len(archs.ops))
    loss, acc = _programs.evaluate_program(model, config.eval_batch_size, chunk)(
        params, archs, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32))
    loss = np.asarray(loss)
    return np.where(np.isfinite(loss), loss, np.inf).astype(np.float32), np.asarray(acc)


def make_evaluate(space: Space, config: TrainConfig, data: Dataset | DeviceData,
                  population: int, devices: Sequence[jax.Device] | None = None):
    """A pure, jittable ``evaluate(key, archs, hyperparams=None) -> val_loss (P,)`` for
    ``run_fused``.

    The same training program as ``train`` (chunks, shards, padding to the layout's
    size), without host steps, so a whole search (ask, train, tell for G
    generations) can run inside one ``lax.scan`` under one ``jit``. Candidate i of
    a call starts from ``fold_in(split(key)[0], i)`` and the minibatch order from
    ``split(key)[1]``, exactly as ``train(key, archs, data)``; the architectures must
    be valid (strategies only ask valid ones). Diverged candidates get +inf.
    ``hyperparams`` (a ``Hyperparams`` of traced (P,) values, one per candidate) trains
    each candidate at its own numbers; None: ``config``'s.

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
    devices = device_tuple(devices)
    platform = devices[0].platform
    program = "cpu" if config.program_for(platform) == "cpu" else "select"
    static = dataclasses.replace(config.static(), keep_state=False, program=program)
    if not isinstance(data, DeviceData):
        data = put_data(data, devices)
    chunk = chunk_size_for(space, static, data.input_shape, data.num_classes, program, devices[0])
    layout = population_layout(population, chunk, len(devices), static.population_rounding)
    no_templates = global_array(np.zeros(layout.devices * layout.num_chunks, np.int32),
                           NamedSharding(_state.mesh_of(devices), Spec(AXIS)))
    train_program = _programs.train_program(
        space, static, data.input_shape, data.num_classes, devices, layout, True,
        _steps.Program(branch=program == "cpu" and layout.chunk == 1))
    default = Hyperparams(*(jnp.full((population,), v, jnp.float32)
                            for v in config.hyperparams()))
    data_args = (data.x_train, data.y_train, data.x_val, data.y_val)

    def evaluate(key: jax.Array, archs: Arch,
                 hyperparams: Hyperparams | None = None) -> jax.Array:
        numbers = default if hyperparams is None else Hyperparams(
            *(jnp.asarray(v, jnp.float32) for v in hyperparams))
        padded_archs, padded_numbers = jax.tree_util.tree_map(
            lambda leaf: pad_rows(leaf, layout.size), (archs, numbers))
        with jax.threefry_partitionable(False):
            keys = _programs.derive_keys_program(layout.size)(jax.random.key_data(key))
            (val_loss, _, _), _ = train_program(keys, padded_archs, no_templates,
                                                padded_numbers, *data_args)
        return val_loss[:population]

    return evaluate
