"""A network found by jaxnas, as a plain Flax NNX module with its trained weights.

``jaxnas export RUN --flax OUTDIR`` writes this file as ``OUTDIR/model.py``, with the
network's ``ARCHITECTURE`` filled in, next to its weights ``weights.msgpack``. It
needs only jax, flax and numpy (not jaxnas)::

    import model

    net = model.load()   # evaluation mode: batch norm uses its running statistics
    logits = net(x)      # raw inputs x (B, *input_shape) -> logits (B, num_classes)

``net.train()`` switches batch norm to batch statistics for fine-tuning, e.g. with
``nnx.Optimizer(net, optax.adam(1e-3), wrt=nnx.Param)``; the input normalisation
(``net.mean``, ``net.std``, of type ``Constant``) is not a parameter and stays fixed.

The architecture is data (``ARCHITECTURE``) read by a small generic module: the
input normalised and reshaped to (B, *spatial_shape, channels), a stem, cells whose
nodes each apply one op to the sum of their inputs (zero-padded to the widest), the
cell's output the sum of its "output" nodes, the mean over positions, a dense head.
Only the architecture's live nodes exist. Ops: "conv" (a 'same' convolution without
bias, then batch norm or a layer norm over channels, then the activation; "pre_relu"
applies a relu first), "dense" (an affine map over channels, then the activation),
"pool" (stride-1 'same' max or average pooling; padding is not counted), "skip" and
"zero". Arrays are channels-last, as in ``flax.nnx.Conv``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx, serialization

WEIGHTS = "weights.msgpack"

# The exported network's architecture (the export writes it here).
ARCHITECTURE: dict = {}

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),  # the exact (erf) form
    "linear": lambda z: z,
}


class Constant(nnx.Variable):
    """A fixed array of the network (the input normalisation): not a parameter."""


def _norm(kind: str, width: int, rngs: nnx.Rngs) -> nnx.Module:
    if kind == "batch":
        # PyTorch's BatchNorm defaults (its momentum 0.1 is Flax's 0.9), as jaxnas trains.
        return nnx.BatchNorm(width, momentum=0.9, epsilon=1e-5, rngs=rngs)
    return nnx.LayerNorm(width, epsilon=1e-5, use_fast_variance=False, rngs=rngs)


class Node(nnx.Module):
    """One op of the network: (B, *spatial, in_width) -> (B, *spatial, width)."""

    def __init__(self, node: dict, rank: int, norm: str, *, rngs: nnx.Rngs):
        self.node = node
        if node["op"] == "conv":
            self.conv = nnx.Conv(node["in_width"], node["width"], (node["kernel"],) * rank,
                                 padding="SAME", use_bias=False, rngs=rngs)
            self.norm = _norm(norm, node["width"], rngs)
        elif node["op"] == "dense":
            self.dense = nnx.Linear(node["in_width"], node["width"], rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        node = self.node
        if node["op"] == "zero":
            return jnp.zeros_like(x)
        if node["op"] == "skip":
            return x
        if node["op"] == "pool":
            window = (node["kernel"],) * (x.ndim - 2)
            if node["pool"] == "max":
                return nnx.max_pool(x, window, (1,) * len(window), "SAME")
            return nnx.avg_pool(x, window, (1,) * len(window), "SAME", count_include_pad=False)
        activation = ACTIVATIONS[node["activation"]]
        if node["op"] == "dense":
            return activation(self.dense(x))
        if node.get("pre_relu"):
            x = jax.nn.relu(x)
        return activation(self.norm(self.conv(x)))


def padded_sum(values: list[jax.Array]) -> jax.Array:
    """The sum of channels-last arrays, each zero-padded (last axis) to the widest."""
    width = max(value.shape[-1] for value in values)
    total = None
    for value in values:
        value = jnp.pad(value, [(0, 0)] * (value.ndim - 1) + [(0, width - value.shape[-1])])
        total = value if total is None else total + value
    return total


class Network(nnx.Module):
    """The network of ``architecture`` (default ``ARCHITECTURE``), randomly initialised:
    raw inputs (B, *input_shape) -> logits (B, num_classes)."""

    def __init__(self, architecture: dict | None = None, *, rngs: nnx.Rngs | None = None):
        architecture = ARCHITECTURE if architecture is None else architecture
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.architecture = architecture
        rank, norm = len(architecture["spatial_shape"]), architecture["norm"]
        shape = tuple(architecture["input_shape"])
        self.mean = Constant(jnp.zeros(shape, jnp.float32))
        self.std = Constant(jnp.ones(shape, jnp.float32))
        stem = architecture["stem"]
        self.stem = None if stem is None else Node(stem, rank, norm, rngs=rngs)
        self.cells = nnx.List([
            nnx.Dict({f"node{node['node']}": Node(node, rank, norm, rngs=rngs)
                      for node in cell["nodes"]})
            for cell in architecture["cells"]])
        self.head = nnx.Linear(architecture["cells"][-1]["output"]["width"],
                               architecture["num_classes"], rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        architecture = self.architecture
        x = (x - self.mean[...][None]) / self.std[...][None]
        h = x.reshape(x.shape[0], *architecture["spatial_shape"], architecture["channels"])
        if self.stem is not None:
            h = self.stem(h)
        for cell, layers in zip(architecture["cells"], self.cells, strict=True):
            states = {0: h}
            for node in cell["nodes"]:
                states[node["node"]] = layers[f"node{node['node']}"](
                    padded_sum([states[j] for j in node["inputs"]]))
            h = padded_sum([states[j] for j in cell["output"]["inputs"]])
        if h.ndim > 2:
            h = h.mean(axis=tuple(range(1, h.ndim - 1)))
        return self.head(h)


def load(directory: str | Path | None = None) -> Network:
    """The network with its trained weights (``weights.msgpack`` in ``directory``,
    default beside this file), in evaluation mode."""
    directory = Path(__file__).parent if directory is None else Path(directory)
    network = nnx.eval_shape(Network)  # abstract: every array is read from the file
    state = nnx.state(network)
    target = nnx.to_pure_dict(state)
    weights = serialization.from_bytes(target, (directory / WEIGHTS).read_bytes())
    for (path, want), got in zip(jax.tree_util.tree_leaves_with_path(target),
                                 jax.tree_util.tree_leaves(weights), strict=True):
        if want.shape != got.shape:
            raise ValueError(f"{WEIGHTS}: {jax.tree_util.keystr(path)} has shape {got.shape}, "
                             f"not {want.shape}")
    nnx.replace_by_pure_dict(state, weights)
    nnx.update(network, state)
    network.eval()
    return network

