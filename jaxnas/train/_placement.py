"""Data and populations placed on the device mesh (host side)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as Spec

from jaxnas.arch import Arch, ArchError
from jaxnas.data import Dataset
from jaxnas.spaces import Space
from jaxnas.train import _state


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
    devices = device_tuple(devices)
    replicated = NamedSharding(_state.mesh_of(devices), Spec())
    return DeviceData(
        x_train=global_array(np.asarray(data.x_train, np.float32), replicated),
        y_train=global_array(np.asarray(data.y_train, np.int32), replicated),
        x_val=global_array(np.asarray(data.x_val, np.float32), replicated),
        y_val=global_array(np.asarray(data.y_val, np.int32), replicated),
        num_classes=int(data.num_classes),
        devices=devices,
    )


def device_tuple(devices: Sequence[jax.Device] | None) -> tuple[jax.Device, ...]:
    devices = tuple(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("the trainer needs at least one device")
    return devices


def global_array(value: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from a host array that every process holds in full."""
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def host_population(space: Space, archs: Arch) -> tuple[np.ndarray, np.ndarray]:
    adj = np.asarray(archs.adj)
    ops = np.asarray(archs.ops)
    n = space.max_nodes
    if ops.ndim != 2 or ops.shape[1] != n or adj.shape != (ops.shape[0], n, n):
        raise ArchError(f"expected a population of {space.name} architectures with adj "
                        f"(P, {n}, {n}) and ops (P, {n}); got adj {adj.shape}, ops {ops.shape}")
    if ops.shape[0] == 0:
        raise ArchError("cannot train an empty population")
    return adj.astype(np.int8), ops.astype(np.int32)
