"""PyTorch twins of jaxnas's padded interpreter, for equivalence checks and timing.

* ``TorchPadded``: the padded interpreter itself in PyTorch (float32, channels-last
  like jaxnas): every node slot runs the space's largest kernel, masked to its op.
* ``SeedModule`` (from ``jaxnas.export``, the library's PyTorch export): the
  seed-style baseline, one ``nn.Module`` per architecture that holds only its live
  nodes and edges, written the way one writes a network by hand (channels-first
  ``nn.Conv*d`` / ``nn.Linear``, no padding, no masks); ``train_seed_style`` here
  trains candidates one after another in a plain Python loop.

Both modules load a jaxnas parameter pytree (``load_jax_params``; batch norm's
running statistics become buffers) and take inputs in jaxnas's layout,
(B, *input_shape). The semantics are ``jaxnas.nn``'s: batch norm (``nn.BatchNorm*d``,
training and evaluation modes as PyTorch's) or, with ``ModelConfig(norm="layer")``, a
layer norm over channels; 'same' padding, stride 1, the output node a sum.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jaxnas.arch import Arch, unstack
from jaxnas.export.pytorch import (
    SeedModule,
    flatten,
    host_live,
    pool_first,
)
from jaxnas.nn import BN_MOMENTUM, NORM_EPS, STAT_KEYS, ModelConfig, make_layout, make_model
from jaxnas.spaces import Space

_ACTIVATIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,  # exact erf form, like jaxnas
    "linear": lambda z: z,
}


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
        initial = flatten(params)
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
        flat = flatten(params)
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
        live = host_live(adj)
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
            return pool_first(inp.movedim(-1, 1), spec.pool, spec.kernel).movedim(1, -1)
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
