"""The found model as a plain Flax NNX module (``to_flax``) and as files a Flax user
loads without jaxnas (``flax_files``: ``model.py`` and ``weights.msgpack``).

Why NNX rather than Linen: an NNX module holds its own weights and batch-norm
statistics, so ``model.load()`` returns one object that is called like a function
(``net(x)``), switched between batch and running statistics with ``net.train()`` /
``net.eval()`` as a PyTorch module is, and fine-tuned with ``nnx.Optimizer``; a Linen
module would hand the user a separate variables dict and ``mutable=["batch_stats"]``
plumbing in every training step. NNX is also the API Flax recommends for new code.

The generic module is ``jaxnas/export/_flax_model.py``; it imports only jax, flax and
numpy, so the export copies it as ``model.py`` with the architecture written in.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx, serialization

from jaxnas.arch import Arch
from jaxnas.export import _flax_model
from jaxnas.export._live import NodePlan, live_plan, live_weights
from jaxnas.nn import Layout, ModelConfig, OpSpec, make_layout
from jaxnas.spaces import Space

_ARCHITECTURE_LINE = "ARCHITECTURE: dict = {}\n"


def architecture(layout: Layout, arch: Arch, plans: list[list[NodePlan]]) -> dict:
    """The network of ``_flax_model`` as plain data (ints, strings, lists, dicts)."""
    config = layout.config
    ops = np.asarray(arch.ops)
    stem = None
    if layout.spatial:
        stem = {"op": "conv", "kernel": config.stem_kernel, "activation": "relu",
                "in_width": layout.in_channels, "width": config.width}
    elif not layout.raw_input:
        stem = {"op": "dense", "activation": "relu", "in_width": layout.in_channels,
                "width": config.width}
    cells = []
    for nodes in plans:
        output = nodes[-1]
        cells.append({
            "nodes": [{"node": p.node, "name": layout.space.op_names[ops[p.node]],
                       "inputs": list(p.preds), **_op(p.spec),
                       "in_width": p.in_width, "width": p.out_width} for p in nodes[:-1]],
            "output": {"inputs": list(output.preds), "width": output.out_width}})
    return {"space": layout.space.name, "input_shape": list(layout.input_shape),
            "num_classes": layout.num_classes, "spatial_shape": list(layout.spatial_shape),
            "channels": layout.in_channels, "norm": config.norm, "stem": stem, "cells": cells}


def _op(spec: OpSpec) -> dict:
    if spec.kind == "pool":
        return {"op": "pool", "pool": spec.pool, "kernel": spec.kernel}
    if spec.kind in ("skip", "zero"):
        return {"op": spec.kind}
    if spec.norm:
        return {"op": "conv", "kernel": spec.kernel, "pre_relu": spec.pre_relu,
                "activation": spec.activation}
    return {"op": "dense", "activation": spec.activation}


def _weights(layout: Layout, plans: list[list[NodePlan]], params: Any,
             mean: np.ndarray | None, std: np.ndarray | None) -> dict:
    """The pure dict of ``_flax_model.Network``'s state from jaxnas parameters."""
    shape = layout.input_shape
    pure: dict[str, Any] = {
        "mean": np.broadcast_to(0.0 if mean is None else mean, shape),
        "std": np.broadcast_to(1.0 if std is None else std, shape),
        "cells": {c: {} for c in range(len(plans))}}
    for name, weights in live_weights(layout, plans, params).items():
        if name == "head":
            pure["head"] = weights
            continue
        if weights["kernel"].ndim == 2:  # dense
            layer = {"dense": weights}
        else:
            norm = {{"shift": "bias"}.get(key, key): value for key, value in weights.items()
                    if key != "kernel"}
            layer = {"conv": {"kernel": weights["kernel"]}, "norm": norm}
        if name == "stem":
            pure["stem"] = layer
        else:
            _, cell, node = name.split("/")
            pure["cells"][int(cell)][node] = layer
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), pure)


def to_flax(space: Space, arch: Arch, params: Any, input_shape: tuple[int, ...],
            num_classes: int, config: ModelConfig = ModelConfig(),  # noqa: B008 (frozen)
            mean: np.ndarray | None = None, std: np.ndarray | None = None) -> nnx.Module:
    """One architecture with its jaxnas parameters as a Flax NNX module in evaluation mode:
    raw inputs (B, *input_shape) -> logits (B, num_classes), normalised first with
    ``mean`` and ``std`` (each of shape ``input_shape``) when given.

    The module (``_flax_model.Network``) holds the live nodes only: ``nnx.Conv``,
    ``nnx.BatchNorm`` with the running statistics (or ``nnx.LayerNorm`` for
    ``norm="layer"``), ``nnx.Linear``, pooling. ``net.train()`` switches batch norm to
    batch statistics for fine-tuning (Flax updates the running variance with the biased
    batch variance; jaxnas, like PyTorch, with the unbiased one).
    """
    layout = make_layout(space, input_shape, num_classes, config)
    plans = live_plan(layout, arch)
    # Abstract (no random initialisation to run): every array is replaced below.
    network = nnx.eval_shape(lambda: _flax_model.Network(architecture(layout, arch, plans),
                                                         rngs=nnx.Rngs(0)))
    state = nnx.state(network)
    target = nnx.to_pure_dict(state)
    pure = _weights(layout, plans, params, mean, std)
    have = {jax.tree_util.keystr(p): np.shape(v)
            for p, v in jax.tree_util.tree_leaves_with_path(pure)}
    want = {jax.tree_util.keystr(p): np.shape(v)
            for p, v in jax.tree_util.tree_leaves_with_path(target)}
    if have != want:
        raise ValueError(f"parameters do not match the network: {have} vs {want}")
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(network, state)
    network.eval()
    return network


def flax_files(space: Space, arch: Arch, params: Any, input_shape: tuple[int, ...],
               num_classes: int, config: ModelConfig = ModelConfig(),  # noqa: B008 (frozen)
               mean: np.ndarray | None = None, std: np.ndarray | None = None
               ) -> dict[str, bytes]:
    """{"model.py": ..., "weights.msgpack": ...}: ``to_flax``'s network as files that
    Flax loads without jaxnas (``import model; net = model.load()``)."""
    network = to_flax(space, arch, params, input_shape, num_classes, config, mean, std)
    weights = jax.tree_util.tree_map(np.asarray, nnx.to_pure_dict(nnx.state(network)))
    source = Path(_flax_model.__file__).read_text()
    if source.count(_ARCHITECTURE_LINE) != 1:
        raise RuntimeError("jaxnas/export/_flax_model.py lost its ARCHITECTURE line")
    source = source.replace(_ARCHITECTURE_LINE,
                            f"ARCHITECTURE: dict = {_literal(network.architecture)}\n")
    return {"model.py": source.encode(),
            _flax_model.WEIGHTS: serialization.to_bytes(weights)}


def _literal(architecture: dict) -> str:
    """``architecture`` as a Python literal, one node a line."""
    lines = ["{"] + [f"    {key!r}: {value!r}," for key, value in architecture.items()
                     if key != "cells"]
    lines.append("    'cells': [")
    for cell in architecture["cells"]:
        lines.append("        {'nodes': [")
        lines += [f"            {node!r}," for node in cell["nodes"]]
        lines.append(f"        ], 'output': {cell['output']!r}}},")
    lines += ["    ],", "}"]
    literal = "\n".join(lines)
    if ast.literal_eval(literal) != architecture:
        raise RuntimeError("the architecture does not survive as a Python literal")
    return literal
