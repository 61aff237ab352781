"""Where each candidate of a population runs: the padded layout, the program rows and,
for the accelerator program, the templates and the cost accounting."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np

from jaxnas.arch import Arch
from jaxnas.data import Dataset
from jaxnas.nn import (
    Compact,
    Model,
    executed_flops,
)
from jaxnas.spaces import Space
from jaxnas.train import _programs, _steps, _templates
from jaxnas.train._config import TrainConfig
from jaxnas.train._layout import PopulationLayout, population_layout
from jaxnas.train._memory import chunk_size_for
from jaxnas.train._placement import DeviceData, device_tuple, host_population, put_data

# Chunks per template a device's share is cut into, at least (see padded_layout): at P=1024
# with 6 templates, chunks of 32 executed 0.83 useful FLOPs on NAS-Bench-201 cells, of 128
# 0.65 (docs/scaling.md).
_CHUNKS_PER_TEMPLATE = 4


def padded_layout(space: Space, static: TrainConfig, data: DeviceData,
            devices: tuple[jax.Device, ...], population: int) -> PopulationLayout:
    """The padded layout of P candidates on ``devices`` (chunk size under the budget).

    Unless ``TrainConfig.chunk_size`` fixes it, the accelerator program's chunks hold at
    most a 1 / (4 * templates) share of a device's candidates (a power of two): each
    template then fills chunks of its own and
    its last, partly filled chunk (padding that runs) is a small part of its work; each
    device has ``templates / devices`` chunks more than the population fills, for those.
    """
    program = static.program_for(devices[0].platform)
    chunk = chunk_size_for(space, static, data.input_shape, data.num_classes, program,
                        devices[0])
    if program != "accelerator":
        return population_layout(population, chunk, len(devices), static.population_rounding)
    if static.chunk_size is None:  # a chunk the caller gives is kept as it is
        share = -(-population // len(devices)) // (_CHUNKS_PER_TEMPLATE * static.templates)
        chunk = min(chunk, 1 << max(0, share.bit_length() - 1))
    # Padding chunks run nothing here, so powers of two cost no work and fewer programs.
    layout = population_layout(population, chunk, len(devices),
                               min(static.population_rounding, 1))
    # Room for each template's last, partly filled chunk besides the population's whole
    # ones; a chunk left empty runs nothing.
    extra = -(-static.templates // len(devices))
    return PopulationLayout(layout.devices, layout.num_chunks + extra, layout.chunk)


class ProgramRows(NamedTuple):
    """A population laid out for one program: the population row of each program row,
    each candidate's own program row, the program rows' architectures, each chunk's
    template and the program's form."""

    order: np.ndarray
    first: np.ndarray
    archs: Arch | Compact
    chunk_templates: np.ndarray
    program: _steps.Program


def program_rows(space: Space, static: TrainConfig, data: DeviceData, layout: PopulationLayout,
          archs: Arch, platform: str) -> ProgramRows:
    population = archs.ops.shape[0]
    program = static.program_for(platform)
    if program != "accelerator":
        order = np.r_[np.arange(population), np.zeros(layout.size - population, np.int64)]
        return ProgramRows(order, np.arange(population),
                           jax.tree.map(lambda a: a[order], archs),
                           np.zeros(layout.devices * layout.num_chunks, np.int32),
                           _steps.Program(branch=program == "cpu" and layout.chunk == 1))
    model = _programs.model_of(space, data.input_shape, data.num_classes, static.model)
    family = template_family(model, static.templates)
    compacted = _programs.compact_program(model, space.max_nodes)(
        jax.device_put(archs, jax.local_devices()[0]))
    plan = _templates.plan(family, tuple(np.asarray(a) for a in (
        compacted.adj, compacted.ops, compacted.node)), layout.devices, layout.num_chunks,
        layout.chunk)
    return ProgramRows(plan.order, plan.first, Compact(*plan.archs), plan.chunk_templates,
                       _steps.Program(templates=family.templates))


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
    devices = device_tuple(devices)
    if not isinstance(data, DeviceData):
        data = put_data(data, devices)
    static = config.static()
    adj, ops = host_population(space, archs)
    archs = Arch(adj=adj, ops=ops)
    model = _programs.model_of(space, data.input_shape, data.num_classes, static.model)
    layout = padded_layout(space, static, data, devices, len(ops))
    rows = program_rows(space, static, data, layout, archs, devices[0].platform)
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
def template_family(model: Model, templates: int = TrainConfig.templates) -> _templates.Family:
    """The slot templates of ``model``'s accelerator program (at most ``templates``):
    chosen once, by a greedy cover of the executed FLOPs of 1,024 architectures that
    the space samples with key 0; the first, the full template, fits every candidate."""
    space = model.layout.space
    sample = _programs.compact_program(model, space.max_nodes)(
        space.sample(jax.random.key(0), 1024))
    signatures = _templates.signatures(model.layout, np.asarray(sample.adj),
                                       np.asarray(sample.ops))
    return _templates.choose_family(model.layout, signatures, templates)
