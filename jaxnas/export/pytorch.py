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

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jaxnas.arch import Arch

# flatten and host_live serve the PyTorch twin of benchmarks/twin.py too.
from jaxnas.export._live import NodePlan, flatten, host_live, live_plan, live_weights  # noqa: F401
from jaxnas.nn import NORM_EPS, Layout, ModelConfig, make_layout
from jaxnas.spaces import Space

ACTIVATION_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "linear": nn.Identity}


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
        self.plans = live_plan(layout, arch)
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

    def _node_module(self, plan: NodePlan) -> nn.Module:
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
        rank = self.layout.rank
        norms = {"scale": "weight", "shift": "bias", "mean": "running_mean",
                 "var": "running_var"}
        own = {name: value for name, value in self.state_dict(keep_vars=True).items()
               if not name.endswith("num_batches_tracked")}
        assign: dict[str, np.ndarray] = {}
        for layer, weights in live_weights(self.layout, self.plans, params).items():
            name = layer.replace("/", ".")
            if "kernel" in weights and weights["kernel"].ndim > 2:  # conv (then its norm)
                offset = 1 if layer != "stem" and self._spec(layer).pre_relu else 0
                assign[f"{name}.{offset}.weight"] = np.transpose(
                    weights["kernel"], (rank + 1, rank, *range(rank)))
                assign.update({f"{name}.{offset + 1}.{norms[key]}": value
                               for key, value in weights.items() if key in norms})
                continue
            prefix = name if layer == "head" else f"{name}.0"
            weight = weights["kernel"].T
            if f"{prefix}.weight" in own:  # a 1x1 convolution in spatial spaces
                weight = weight.reshape(tuple(own[f"{prefix}.weight"].shape))
            assign[f"{prefix}.weight"] = weight
            assign[f"{prefix}.bias"] = weights["bias"]
        if sorted(assign) != sorted(own):
            raise ValueError(f"parameters do not match: {sorted(assign)} vs {sorted(own)}")
        with torch.no_grad():
            for name, value in assign.items():
                if tuple(own[name].shape) != value.shape:
                    raise ValueError(f"{name}: shape {value.shape} for {tuple(own[name].shape)}")
                own[name].copy_(torch.from_numpy(np.ascontiguousarray(value)))
        return self

    def _spec(self, layer: str):
        """The op of a "cells/<c>/node<i>" layer."""
        _, cell, node = layer.split("/")
        return next(p.spec for p in self.plans[int(cell)] if f"node{p.node}" == node)


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
