"""PyTorch twins of jaxnas's padded interpreter, for equivalence checks and timing.

* ``TorchPadded``: the padded interpreter itself in PyTorch (float32, channels-last
  like jaxnas): every node slot runs the space's largest kernel, masked to its op.
* ``SeedModule``: the seed-style baseline, one ``nn.Module`` per architecture that
  holds only its live nodes and edges, written the way one writes a network by hand
  (channels-first ``nn.Conv*d`` / ``nn.Linear``, no padding, no masks);
  ``train_seed_style`` trains candidates one after another in a plain Python loop.
* ``export_state_dict``: a jaxnas parameter pytree as a ``SeedModule`` state dict.

Both modules load a jaxnas parameter pytree (``load_jax_params``; batch norm's
running statistics become buffers) and take inputs in jaxnas's layout,
(B, *input_shape). The semantics are ``jaxnas.nn``'s: batch norm (``nn.BatchNorm*d``,
training and evaluation modes as PyTorch's) or, with ``ModelConfig(norm="layer")``, a
layer norm over channels; 'same' padding, stride 1, the output node a sum.
This is the only module besides the tests that imports torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jaxnas.arch._encoding import Arch, unstack
from jaxnas.arch._graph import live_mask
from jaxnas.nn import STAT_KEYS, Layout, ModelConfig, OpSpec, make_layout, make_model, tap_mask
from jaxnas.nn._ops import BN_MOMENTUM, NORM_EPS
from jaxnas.spaces import Space

_ACTIVATIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,  # exact erf form, like jaxnas
    "linear": lambda z: z,
}
_ACTIVATION_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "linear": nn.Identity}


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """{"stem/kernel": array, "cells/0/nodes/kernel": array, ...} of a params pytree."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list | tuple):
        items = enumerate(tree)
    else:
        return {prefix: np.array(tree, np.float32)}
    flat = {}
    for key, value in items:
        flat.update(_flatten(value, f"{prefix}/{key}" if prefix else str(key)))
    return flat


def _host_live(adj: np.ndarray) -> np.ndarray:
    """(N,) bool: nodes on an input -> output path (host, one architecture)."""
    live = live_mask(adj)
    return np.zeros(len(adj), bool) if live is None else live


def _channels_first(layout: Layout, x: torch.Tensor) -> torch.Tensor:
    """jaxnas layout (B, *input_shape) -> (B, D) dense or (B, C, *spatial) spatial."""
    batch = x.shape[0]
    if not layout.spatial:
        return x.reshape(batch, -1)
    return x.reshape(batch, *layout.spatial_shape, layout.in_channels).movedim(-1, 1)


def _pool_first(x: torch.Tensor, kind: str, kernel: int) -> torch.Tensor:
    """Stride-1 'same' pooling of a channels-first tensor (B, C, *spatial)."""
    rank = x.dim() - 2
    if kind == "max":
        return (F.max_pool1d if rank == 1 else F.max_pool2d)(x, kernel, 1, kernel // 2)
    return (F.avg_pool1d if rank == 1 else F.avg_pool2d)(x, kernel, 1, kernel // 2,
                                                         count_include_pad=False)


def _torch_kernel(kernel: np.ndarray, taps: np.ndarray, size: int, rank: int, fan: tuple[int, int]
                  ) -> np.ndarray:
    """A jaxnas (T, C_in, C_out) kernel's used taps as a PyTorch (out, in, *k) conv weight."""
    used = kernel[taps][:, :fan[0], :fan[1]].reshape((size,) * rank + fan)
    return np.ascontiguousarray(np.transpose(used, (rank + 1, rank) + tuple(range(rank))))


class TorchPadded(nn.Module):
    """The padded interpreter in PyTorch: same params pytree, same masked program.

    Args:
      space, input_shape, num_classes, config: as for ``jaxnas.nn.make_model``.
      params: a jaxnas parameter pytree to start from; by default jaxnas's
        ``init(jax.random.key(seed))``.
      seed: see ``params``.
    """

    def __init__(self, space: Space, input_shape: tuple[int, ...], num_classes: int,
                 config: ModelConfig = ModelConfig(),  # noqa: B008 (frozen)
                 params: Any = None, seed: int = 0):
        super().__init__()
        self.layout = make_layout(space, input_shape, num_classes, config)
        if params is None:
            params = make_model(space, input_shape, num_classes, config).init(
                jax.random.key(seed))
        initial = _flatten(params)
        self.names = list(initial)
        self.params = nn.ParameterDict({
            name.replace("/", "__"): nn.Parameter(torch.from_numpy(value.copy()))
            for name, value in initial.items() if not _is_stat(name)
        })
        for name, value in initial.items():  # running statistics: buffers, not trained
            if _is_stat(name):
                self.register_buffer(_buffer_name(name), torch.from_numpy(value.copy()))
        self._taps = torch.from_numpy(self.layout.tap_table()) if self.layout.linear_specs else None

    def param(self, name: str) -> torch.Tensor:
        if _is_stat(name):
            return getattr(self, _buffer_name(name))
        return self.params[name.replace("/", "__")]

    def load_jax_params(self, params: Any) -> TorchPadded:
        """Copies a jaxnas parameter pytree (jax or numpy arrays) into this module."""
        flat = _flatten(params)
        if sorted(flat) != sorted(self.names):
            raise ValueError(f"parameter names differ: {sorted(flat)} vs {sorted(self.names)}")
        with torch.no_grad():
            for name, value in flat.items():
                self.param(name).copy_(torch.from_numpy(value))
        return self

    def _norm(self, params: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """A channels-last norm: batch norm on the running-statistics buffers (updated in
        place in training mode), or the layer norm."""
        if "mean" not in params:
            return F.layer_norm(z, (z.shape[-1],), params["scale"], params["shift"], NORM_EPS)
        out = F.batch_norm(z.movedim(-1, 1), params["mean"], params["var"], params["scale"],
                           params["shift"], self.training, BN_MOMENTUM, NORM_EPS)
        return out.movedim(1, -1)

    def forward(self, arch: Arch, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of one architecture on x (B, *input_shape)."""
        layout = self.layout
        adj = np.asarray(arch.adj) != 0
        ops = np.asarray(arch.ops)
        live = _host_live(adj)
        choice = np.where(live, ops, -1)
        edges = adj & live[:, None]
        h = self._stem(x)
        for cell in range(layout.config.num_cells):
            h = self._cell(f"cells/{cell}", h, edges, choice)
        if h.dim() > 2:
            h = h.mean(dim=tuple(range(1, h.dim() - 1)))
        return h @ self.param("head/kernel") + self.param("head/bias")

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        layout = self.layout
        batch = x.shape[0]
        if not layout.spatial:
            x = x.reshape(batch, -1)
            if layout.raw_input:
                return x
            h = torch.relu(x @ self.param("stem/kernel")[0] + self.param("stem/bias"))
        else:
            x = x.reshape(batch, *layout.spatial_shape, layout.in_channels)
            h = _conv_last(x, self.param("stem/kernel"))
            stem = {name.rsplit("/", 1)[1]: self.param(name) for name in self.names
                    if name.startswith("stem/")}
            h = torch.relu(self._norm(stem, h))
        return F.pad(h, (0, layout.features - h.shape[-1]))

    def _cell(self, prefix: str, h0: torch.Tensor, edges: np.ndarray,
              choice: np.ndarray) -> torch.Tensor:
        layout = self.layout
        n, first = layout.num_nodes, layout.first_node
        states = {0: h0}
        if layout.raw_input:
            node = {"kernel": self.param(f"{prefix}/input/kernel"),
                    "bias": self.param(f"{prefix}/input/bias")}
            inp = h0 if edges[0, 1] else torch.zeros_like(h0)
            states = {1: self._node(node, inp, int(choice[1]))}
        for i in range(first, n - 1):
            node = {name.rsplit("/", 1)[1]: self.param(name)[i - first]
                    for name in self.names if name.startswith(f"{prefix}/nodes/")}
            states[i] = self._node(node, _sum(states, edges[:, i], self._zero(states)),
                                   int(choice[i]))
        return _sum(states, edges[:, n - 1], self._zero(states))

    def _zero(self, states: dict[int, torch.Tensor]) -> torch.Tensor:
        last = states[max(states)]
        return torch.zeros(last.shape[:-1] + (self.layout.features,))

    def _node(self, params: dict[str, torch.Tensor], inp: torch.Tensor, op: int) -> torch.Tensor:
        """One padded node: the shared masked conv always runs; op -1 outputs zeros."""
        layout = self.layout
        z = None
        if layout.linear_specs:
            spec = layout.specs[max(op, 0)]
            conv_in = torch.relu(inp) if spec.pre_relu else inp
            z = _conv_last(conv_in, params["kernel"] * self._taps[max(op, 0)][:, None, None])
        if op < 0:
            return torch.zeros(inp.shape[:-1] + (layout.features,))
        spec = layout.specs[op]
        if spec.kind == "linear":
            if spec.bias:
                z = z + params["bias"]
            if spec.norm:
                z = self._norm(params, z)
            z = _ACTIVATIONS[spec.activation](z)
            mask = torch.arange(layout.features) < layout.op_width(spec)
            return torch.where(mask, z, torch.zeros(()))
        if spec.kind == "pool":
            return _pool_first(inp.movedim(-1, 1), spec.pool, spec.kernel).movedim(1, -1)
        if spec.kind == "skip":
            return inp
        return torch.zeros_like(inp)


def _is_stat(name: str) -> bool:
    return name.rsplit("/", 1)[-1] in STAT_KEYS


def _buffer_name(name: str) -> str:
    return "stat__" + name.replace("/", "__")


def _conv_last(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """jaxnas's im2col 'same' conv: x (B, *spatial, C_in), kernel (T, C_in, C_out)."""
    taps = kernel.shape[0]
    if taps == 1:
        return x @ kernel[0]
    rank = x.dim() - 2
    size = round(taps ** (1 / rank))
    half = size // 2
    padded = F.pad(x, (0, 0) + (half, half) * rank)
    spatial = x.shape[1:-1]
    views = []
    for offset in np.ndindex(*(size,) * rank):
        index = (slice(None),) + tuple(slice(o, o + s) for o, s in zip(offset, spatial,
                                                                       strict=True))
        views.append(padded[index])
    return torch.cat(views, -1) @ kernel.reshape(-1, kernel.shape[-1])


def _sum(states: dict[int, torch.Tensor], edges: np.ndarray, zero: torch.Tensor) -> torch.Tensor:
    total = zero
    for j, value in states.items():
        if edges[j]:
            total = total + value
    return total


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
    live = _host_live(adj)
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
        return _pool_first(x, self.kind, self.kernel)


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
        act = _ACTIVATION_MODULES[spec.activation]()
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
        h = _channels_first(self.layout, x)
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
        flat = _flatten(params)
        rank = layout.rank
        assign: dict[str, np.ndarray] = {}
        if layout.spatial:
            size = layout.config.stem_kernel
            taps = np.arange(size ** rank)
            assign["stem.0.weight"] = _torch_kernel(
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
                        assign[f"{name}.0.weight"] = _torch_kernel(source["kernel"], centre, 1,
                                                                   rank, fan)
                    else:
                        assign[f"{name}.0.weight"] = source["kernel"][centre[0]][
                            :fan[0], :fan[1]].T
                    assign[f"{name}.0.bias"] = source["bias"][:fan[1]]
                    continue
                offset = 1 if spec.pre_relu else 0
                taps = tap_mask(spec.kernel, layout.max_kernel, rank).nonzero()[0]
                assign[f"{name}.{offset}.weight"] = _torch_kernel(source["kernel"], taps,
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


def export_state_dict(space: Space, arch: Arch, params: Any, input_shape: tuple[int, ...],
                      num_classes: int, config: ModelConfig = ModelConfig()  # noqa: B008
                      ) -> dict[str, torch.Tensor]:
    """The ``SeedModule`` state dict of one architecture with its jaxnas parameters."""
    module = SeedModule(space, arch, input_shape, num_classes, config)
    return module.load_jax_params(params).state_dict()


def minibatch_indices(num_examples: int, steps: int, batch_size: int, seed: int = 0
                      ) -> np.ndarray:
    """(steps, batch_size) int64 training indices: shuffled epochs, cut into batches."""
    if batch_size > num_examples:
        raise ValueError(f"batch_size {batch_size} exceeds the {num_examples} examples")
    rng = np.random.default_rng(seed)
    per_epoch = num_examples // batch_size
    epochs = math.ceil(steps / per_epoch)
    batches = [rng.permutation(num_examples)[:per_epoch * batch_size].reshape(per_epoch, -1)
               for _ in range(epochs)]
    return np.concatenate(batches)[:steps]


def train_seed_style(space: Space, archs: Arch, data, *, steps: int, batch_size: int,
                     lr: float, optimizer: str = "adam",
                     config: ModelConfig = ModelConfig(),  # noqa: B008 (frozen)
                     seed: int = 0, indices: np.ndarray | None = None,
                     params: Any = None, device: str = "cpu") -> list[dict[str, float]]:
    """Trains each architecture in turn, seed-style: build the module, run its loop.

    Every candidate sees the same minibatches. Use one thread per process
    (``torch.set_num_threads``) as the caller sees fit; nothing here sets it.

    Args:
      space: the search space of ``archs``.
      archs: a population (leading axis P).
      data: a ``jaxnas.data.Dataset``.
      steps, batch_size, lr: the training loop.
      optimizer: "adam" or "sgd".
      config: the model configuration.
      seed: seeds PyTorch's init (candidate i uses seed + i) and the minibatches.
      indices: (steps, batch_size) minibatch indices; default ``minibatch_indices``.
      params: optional jaxnas params of the population (leading axis P) to start from.
      device: the torch device every module trains on, one after another (the data is
        copied there once).

    Returns:
      Per candidate: final minibatch "train_loss", "val_loss", "val_accuracy" and
      "num_params".
    """
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd'; got {optimizer!r}")
    if indices is None:
        indices = minibatch_indices(len(data.y_train), steps, batch_size, seed)
    x_train = torch.from_numpy(np.asarray(data.x_train, np.float32)).to(device)
    y_train = torch.from_numpy(np.asarray(data.y_train, np.int64)).to(device)
    x_val = torch.from_numpy(np.asarray(data.x_val, np.float32)).to(device)
    y_val = torch.from_numpy(np.asarray(data.y_val, np.int64)).to(device)
    batches = torch.from_numpy(np.asarray(indices, np.int64)).to(device)
    results = []
    for index, arch in enumerate(unstack(archs)):
        torch.manual_seed(seed + index)
        module = SeedModule(space, arch, data.input_shape, data.num_classes, config)
        if params is not None:
            module.load_jax_params(jax.tree_util.tree_map(lambda a, i=index: np.asarray(a[i]),
                                                          params))
        module = module.to(device)
        opt_class = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
        opt = opt_class(module.parameters(), lr=lr)
        loss = torch.zeros(())
        for step in range(steps):
            batch = batches[step]
            loss = F.cross_entropy(module(x_train[batch]), y_train[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        module.eval()
        with torch.no_grad():
            logits = module(x_val)
            results.append({
                "train_loss": float(loss),
                "val_loss": float(F.cross_entropy(logits, y_val)),
                "val_accuracy": float((logits.argmax(1) == y_val).float().mean()),
                "num_params": sum(p.numel() for p in module.parameters()),
            })
    return results
