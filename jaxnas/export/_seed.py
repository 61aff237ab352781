"""The found model as a plain PyTorch network: ``SeedModule`` and its state dict.

``SeedModule`` holds one architecture's live nodes only, written the way one writes a
network by hand (channels-first ``nn.Conv*d`` / ``nn.Linear``, no padding, no masks),
and loads a jaxnas parameter pytree (batch norm's running statistics become its
buffers). Inputs are in jaxnas's layout, (B, *input_shape). The semantics are
``jaxnas.nn``'s: batch norm (``nn.BatchNorm*d``) or, with ``ModelConfig(norm="layer")``,
a layer norm over channels; 'same' padding, stride 1, the output node a sum.
Importing this module imports torch; ``jaxnas.export`` imports it only when asked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jaxnas.arch import Arch, live_mask
from jaxnas.nn import NORM_EPS, Layout, ModelConfig, OpSpec, make_layout, tap_mask
from jaxnas.spaces import Space

ACTIVATION_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "linear": nn.Identity}


def flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """{"stem/kernel": array, "cells/0/nodes/kernel": array, ...} of a params pytree."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list | tuple):
        items = enumerate(tree)
    else:
        return {prefix: np.array(tree, np.float32)}
    flat = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}/{key}" if prefix else str(key)))
    return flat


def host_live(adj: np.ndarray) -> np.ndarray:
    """(N,) bool: nodes on an input -> output path (host, one architecture)."""
    live = live_mask(adj)
    return np.zeros(len(adj), bool) if live is None else live


def channels_first(layout: Layout, x: torch.Tensor) -> torch.Tensor:
    """jaxnas layout (B, *input_shape) -> (B, D) dense or (B, C, *spatial) spatial."""
    batch = x.shape[0]
    if not layout.spatial:
        return x.reshape(batch, -1)
    return x.reshape(batch, *layout.spatial_shape, layout.in_channels).movedim(-1, 1)


def pool_first(x: torch.Tensor, kind: str, kernel: int) -> torch.Tensor:
    """Stride-1 'same' pooling of a channels-first tensor (B, C, *spatial)."""
    rank = x.dim() - 2
    if kind == "max":
        return (F.max_pool1d if rank == 1 else F.max_pool2d)(x, kernel, 1, kernel // 2)
    return (F.avg_pool1d if rank == 1 else F.avg_pool2d)(x, kernel, 1, kernel // 2,
                                                         count_include_pad=False)


def torch_kernel(kernel: np.ndarray, taps: np.ndarray, size: int, rank: int, fan: tuple[int, int]
                  ) -> np.ndarray:
    """A jaxnas (T, C_in, C_out) kernel's used taps as a PyTorch (out, in, *k) conv weight."""
    used = kernel[taps][:, :fan[0], :fan[1]].reshape((size,) * rank + fan)
    return np.ascontiguousarray(np.transpose(used, (rank + 1, rank) + tuple(range(rank))))


@dataclasses.dataclass(frozen=True)
class _NodePlan:
    node: int
    spec: OpSpec | None  # None for the output node
    preds: tuple[int, ...]
    in_width: int
    out_width: int


def _plan(layout: Layout, arch: Arch) -> list[list[_NodePlan]]:
    """Per cell, the live compute nodes then the output node with the widths they use."""
    adj = np.asarray(arch.adj) != 0
    ops = np.asarray(arch.ops)
    n = layout.num_nodes
    live = host_live(adj)
    if not live[-1]:
        raise ValueError("the architecture's output is not reachable from its input")
    cells = []
    width = layout.in_channels if layout.raw_input else layout.config.width
    for _ in range(layout.config.num_cells):
        widths = {0: width}
        nodes = []
        for i in range(1, n):
            if not live[i]:
                continue
            preds = tuple(j for j in range(i) if adj[j, i] and live[j])
            in_width = max(widths[j] for j in preds)
            if i == n - 1:
                nodes.append(_NodePlan(i, None, preds, in_width, in_width))
                continue
            spec = layout.specs[ops[i]]
            out = layout.op_width(spec) if spec.kind == "linear" else in_width
            widths[i] = out
            nodes.append(_NodePlan(i, spec, preds, in_width, out))
        cells.append(nodes)
        width = nodes[-1].out_width
    return cells


class _ChannelNorm(nn.Module):
    """Layer norm over dim 1 of a channels-first tensor, with learned scale and shift."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.layer_norm(x.movedim(1, -1), (x.shape[1],), self.weight, self.bias, NORM_EPS)
        return z.movedim(-1, 1)


def _norm_module(config: ModelConfig, rank: int, channels: int) -> nn.Module:
    """PyTorch's own batch norm (momentum 0.1, eps 1e-5), or the channel layer norm."""
    if config.norm == "batch":
        return (nn.BatchNorm1d if rank == 1 else nn.BatchNorm2d)(channels)
    return _ChannelNorm(channels)


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class _Pool(nn.Module):
    def __init__(self, kind: str, kernel: int):
        super().__init__()
        self.kind, self.kernel = kind, kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_first(x, self.kind, self.kernel)


def _conv_module(rank: int, c_in: int, c_out: int, kernel: int, bias: bool) -> nn.Module:
    conv = nn.Conv1d if rank == 1 else nn.Conv2d
    return conv(c_in, c_out, kernel, padding=kernel // 2, bias=bias)


class SeedModule(nn.Module):
    """One architecture as a plain PyTorch network of its live nodes only.

    Modules: ``stem`` (absent in chain spaces), ``cells[c]["node<i>"]`` for the live
    compute nodes, ``head``. A node's input is the sum of its live predecessors,
    zero-padded to the widest. Dense layers are ``nn.Linear`` (1x1 ``nn.Conv*d`` in
    spatial spaces), convolutions ``nn.Conv*d`` without bias followed by
    ``nn.BatchNorm*d`` (or a channel layer norm). Inputs are in jaxnas's layout
    (B, *input_shape).
    """

    def __init__(self, space: Space, arch: Arch, input_shape: tuple[int, ...],
                 num_classes: int, config: ModelConfig = ModelConfig()):  # noqa: B008 (frozen)
        super().__init__()
        layout = make_layout(space, input_shape, num_classes, config)
        self.layout = layout
        self.plans = _plan(layout, arch)
        rank = layout.rank
        width = config.width
        self.stem = None
        if layout.spatial:
            self.stem = nn.Sequential(
                _conv_module(rank, layout.in_channels, width, config.stem_kernel, False),
                _norm_module(config, rank, width), nn.ReLU())
        elif not layout.raw_input:
            self.stem = nn.Sequential(nn.Linear(layout.in_channels, width), nn.ReLU())
        self.cells = nn.ModuleList()
        for plan in self.plans:
            self.cells.append(nn.ModuleDict({
                f"node{p.node}": self._node_module(p) for p in plan[:-1]
            }))
        self.head = nn.Linear(self.plans[-1][-1].out_width, num_classes)

    def _node_module(self, plan: _NodePlan) -> nn.Module:
        layout, spec = self.layout, plan.spec
        if spec.kind == "zero":
            return _Zero()
        if spec.kind == "skip":
            return nn.Identity()
        if spec.kind == "pool":
            return _Pool(spec.pool, spec.kernel)
        act = ACTIVATION_MODULES[spec.activation]()
        if not spec.norm:
            linear = (_conv_module(layout.rank, plan.in_width, plan.out_width, 1, True)
                      if layout.spatial else nn.Linear(plan.in_width, plan.out_width))
            return nn.Sequential(linear, act)
        layers = [nn.ReLU()] if spec.pre_relu else []
        layers += [_conv_module(layout.rank, plan.in_width, plan.out_width, spec.kernel, False),
                   _norm_module(layout.config, layout.rank, plan.out_width), act]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of x (B, *input_shape)."""
        h = channels_first(self.layout, x)
        if self.stem is not None:
            h = self.stem(h)
        for cell, plan in zip(self.cells, self.plans, strict=True):
            states = {0: h}
            for node in plan[:-1]:
                states[node.node] = cell[f"node{node.node}"](
                    _padded_sum([states[j] for j in node.preds]))
            h = _padded_sum([states[j] for j in plan[-1].preds])
        if h.dim() > 2:
            h = h.mean(dim=tuple(range(2, h.dim())))
        return self.head(h)

    def load_jax_params(self, params: Any) -> SeedModule:
        """Copies the live part of a jaxnas parameter pytree of this architecture."""
        layout = self.layout
        flat = flatten(params)
        rank = layout.rank
        assign: dict[str, np.ndarray] = {}
        if layout.spatial:
            size = layout.config.stem_kernel
            taps = np.arange(size ** rank)
            assign["stem.0.weight"] = torch_kernel(
                flat["stem/kernel"], taps, size, rank, (layout.in_channels, layout.config.width))
            assign.update(_norm_state("stem.1", {k.split("/", 1)[1]: v for k, v in flat.items()
                                                 if k.startswith("stem/")}, width=None))
        elif not layout.raw_input:
            assign["stem.0.weight"] = flat["stem/kernel"][0].T
            assign["stem.0.bias"] = flat["stem/bias"]
        for c, plan in enumerate(self.plans):
            for node in plan[:-1]:
                spec = node.spec
                if spec.kind != "linear":
                    continue
                if layout.raw_input and node.node == 1:
                    source = {"kernel": flat[f"cells/{c}/input/kernel"],
                              "bias": flat[f"cells/{c}/input/bias"]}
                else:
                    m = node.node - layout.first_node
                    source = {key.rsplit("/", 1)[1]: value[m] for key, value in flat.items()
                              if key.startswith(f"cells/{c}/nodes/")}
                name = f"cells.{c}.node{node.node}"
                fan = (node.in_width, node.out_width)
                if not spec.norm:
                    centre = tap_mask(1, layout.max_kernel, rank).nonzero()[0]
                    if layout.spatial:
                        assign[f"{name}.0.weight"] = torch_kernel(source["kernel"], centre, 1,
                                                                   rank, fan)
                    else:
                        assign[f"{name}.0.weight"] = source["kernel"][centre[0]][
                            :fan[0], :fan[1]].T
                    assign[f"{name}.0.bias"] = source["bias"][:fan[1]]
                    continue
                offset = 1 if spec.pre_relu else 0
                taps = tap_mask(spec.kernel, layout.max_kernel, rank).nonzero()[0]
                assign[f"{name}.{offset}.weight"] = torch_kernel(source["kernel"], taps,
                                                                  spec.kernel, rank, fan)
                assign.update(_norm_state(f"{name}.{offset + 1}", source, fan[1]))
        width = self.plans[-1][-1].out_width
        assign["head.weight"] = flat["head/kernel"][:width].T
        assign["head.bias"] = flat["head/bias"]
        own = {name: value for name, value in self.state_dict(keep_vars=True).items()
               if not name.endswith("num_batches_tracked")}
        if sorted(assign) != sorted(own):
            raise ValueError(f"parameters do not match: {sorted(assign)} vs {sorted(own)}")
        with torch.no_grad():
            for name, value in assign.items():
                if tuple(own[name].shape) != value.shape:
                    raise ValueError(f"{name}: shape {value.shape} for {tuple(own[name].shape)}")
                own[name].copy_(torch.from_numpy(np.ascontiguousarray(value)))
        return self


def _norm_state(prefix: str, source: dict[str, np.ndarray], width: int | None
                ) -> dict[str, np.ndarray]:
    """A norm module's state dict entries from one jaxnas norm's leaves (the first
    ``width`` channels): weight and bias, and batch norm's running statistics."""
    names = {"scale": "weight", "shift": "bias", "mean": "running_mean", "var": "running_var"}
    return {f"{prefix}.{names[key]}": value[:width] for key, value in source.items()
            if key in names}


def _padded_sum(values: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum of channels-first tensors, each zero-padded (dim 1) to the widest."""
    width = max(v.shape[1] for v in values)
    total = None
    for value in values:
        extra = width - value.shape[1]
        if extra:
            value = F.pad(value, (0, 0) * (value.dim() - 2) + (0, extra))
        total = value if total is None else total + value
    return total


class Normalised(nn.Module):
    """A network whose raw inputs are first standardised with a dataset's mean and std."""

    def __init__(self, network: nn.Module, mean: np.ndarray | None, std: np.ndarray | None):
        super().__init__()
        self.network = network
        self.standardise = mean is not None
        shape = () if mean is None else np.shape(mean)
        self.register_buffer("mean", torch.as_tensor(np.zeros(shape) if mean is None
                                                     else mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.ones(shape) if std is None else std,
                                                    dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardise:
            x = (x - self.mean) / self.std
        return self.network(x)
