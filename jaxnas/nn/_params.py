"""A model's parameters: their tree, initialisation, running statistics and inheritance."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxnas.arch import Arch, live_nodes
from jaxnas.nn._layout import Layout

Params = Any


class _Leaf(NamedTuple):
    """How one parameter array starts: drawn for a layer of ``fan_in`` inputs (a kernel,
    or a bias with ``bias``), or all ``fill`` (``fan_in`` 0)."""

    shape: tuple[int, ...]
    fan_in: int = 0
    fill: float = 0.0
    bias: bool = False
    gain: float = 2.0


def _kernel(shape: tuple[int, ...], fan_in: int, gain: float = 2.0) -> _Leaf:
    return _Leaf(shape, fan_in=fan_in, gain=gain)


def _bias(shape: tuple[int, ...], fan_in: int) -> _Leaf:
    return _Leaf(shape, fan_in=fan_in, bias=True)


def _skeleton(layout: Layout) -> Params:
    """The parameter pytree with ``_Leaf`` descriptions as leaves."""
    d = layout.features
    width = layout.stem_width()
    params: dict[str, Any] = {}
    if layout.spatial:
        params["stem"] = {
            "kernel": _kernel((layout.stem_taps, layout.in_channels, width),
                              layout.stem_taps * layout.in_channels),
            **_norm_leaves(layout, (width,))}
    elif not layout.raw_input:
        params["stem"] = {"kernel": _kernel((1, layout.in_channels, width), layout.in_channels),
                          "bias": _bias((width,), layout.in_channels)}
    cells = []
    m = layout.num_stacked
    for index in range(layout.config.num_cells):
        nodes = {}
        if layout.linear_specs:
            nodes["kernel"] = _kernel((m, layout.taps, d, d), layout.taps * d)
        if layout.has_bias:
            nodes["bias"] = _bias((m, d), layout.taps * d)
        if layout.has_norm:
            nodes.update(_norm_leaves(layout, (m, d)))
        cell = {"nodes": nodes}
        if layout.raw_input:
            fan_in = layout.cell_input_features(index)
            cell["input"] = {"kernel": _kernel((1, fan_in, d), fan_in),
                             "bias": _bias((d,), fan_in)}
        cells.append(cell)
    params["cells"] = cells
    params["head"] = {"kernel": _kernel((d, layout.num_classes), d, gain=1.0),
                      "bias": _bias((layout.num_classes,), d)}
    return params


def _norm_leaves(layout: Layout, shape: tuple[int, ...]) -> dict[str, _Leaf]:
    """A norm's scale and shift, and batch norm's running mean and variance."""
    leaves = {"scale": _Leaf(shape, fill=1.0), "shift": _Leaf(shape)}
    if layout.config.norm == "batch":
        leaves.update({"mean": _Leaf(shape), "var": _Leaf(shape, fill=1.0)})
    return leaves


STAT_KEYS = ("mean", "var")


def stats_of(params: Params) -> dict[str, jax.Array]:
    """The running statistics held by one norm's (or one node's) params; {} if none."""
    return {k: params[k] for k in STAT_KEYS if k in params}


def with_stats(params: Params, stats: Params) -> Params:
    """``params`` with the running statistics of ``apply_train`` (a subtree) written in."""
    if isinstance(stats, dict):
        return {**params, **{k: with_stats(params[k], v) for k, v in stats.items()}}
    if isinstance(stats, list):
        return [with_stats(p, s) for p, s in zip(params, stats, strict=True)]
    return stats


def _scale(leaf: _Leaf, scheme: str) -> float:
    """The spread of a drawn leaf: the uniform bound under "torch", the normal std
    under "he" (where biases start at zero)."""
    if scheme == "torch":
        return 1.0 / math.sqrt(leaf.fan_in)
    return 0.0 if leaf.bias else math.sqrt(leaf.gain / leaf.fan_in)


def init_params(layout: Layout, key: jax.Array) -> Params:
    """Parameters of one architecture (every architecture of the space has these shapes).

    ``ModelConfig.init`` "torch" (the default where ops normalise) draws what
    PyTorch's layers draw by default: kernels and biases uniform in +-1/sqrt(fan_in)
    (``kaiming_uniform`` with a = sqrt(5)), a node kernel's fan-in counted over the
    space's largest kernel (PyTorch's for that kernel). "he" draws kernels He-normal
    for their full padded fan-in (LeCun for the classifier) and zero biases. Norm
    shifts start at zero and scales at one.

    Returns:
      {"stem": ..., "cells": [cell, ...], "head": {"kernel": (D, classes), "bias": ...}}.
      A cell holds ``nodes``: node kernels (M, taps, D, D) (M stacked nodes, taps =
      max_kernel ** rank), and where the space needs them biases, norm scales and
      shifts (M, D) (batch norm adds running means at 0 and variances at 1, (M, D));
      chain cells also hold ``input``: node 1's (1, d, D) kernel and bias.
    """
    skeleton = _skeleton(layout)
    scheme = layout.init
    leaves, treedef = jax.tree_util.tree_flatten(
        skeleton, is_leaf=lambda leaf: isinstance(leaf, _Leaf))
    scales = [_scale(leaf, scheme) if leaf.fan_in else 0.0 for leaf in leaves]
    sizes = [math.prod(leaf.shape) if scale else 0 for leaf, scale in zip(leaves, scales,
                                                                           strict=True)]
    # One draw for all arrays: compiling a random draw per array shape dominated init.
    if scheme == "torch":
        noise = jax.random.uniform(key, (sum(sizes),), jnp.float32, -1.0, 1.0)
    else:
        noise = jax.random.normal(key, (sum(sizes),), jnp.float32)
    arrays, start = [], 0
    for leaf, scale, size in zip(leaves, scales, sizes, strict=True):
        if scale:
            arrays.append(noise[start:start + size].reshape(leaf.shape) * scale)
        else:
            arrays.append(jnp.full(leaf.shape, leaf.fill, jnp.float32))
        start += size
    return jax.tree_util.tree_unflatten(treedef, arrays)


def inherit_params(layout: Layout, parent_params: Params, parent_arch: Arch, params: Params,
                   arch: Arch) -> Params:
    """A child's starting parameters under weight inheritance (one architecture).

    Node slots correspond by position (a mutation keeps them). A node keeps its
    parent's parameters (kernel, bias, norm, running statistics) when it is live in
    both architectures and runs the same op there; a node whose op changed, or that
    is new (dead or padding in the parent) starts at ``params``, the child's fresh
    values. A changed input edge keeps the node's parameters: they map the node's
    summed input, whose shape is the same. The stem, the head and every other part
    outside the nodes are shared by all architectures and come from the parent.
    """
    keep = (live_nodes(parent_arch.adj != 0) & live_nodes(arch.adj != 0)
            & (parent_arch.ops == arch.ops))
    rows = keep[layout.first_node:layout.num_nodes - 1]

    def choose(condition, old, new):
        return jnp.where(condition.reshape(condition.shape + (1,) * (new.ndim - condition.ndim)),
                         old, new)

    cells = []
    for old, new in zip(parent_params["cells"], params["cells"], strict=True):
        cell = {**old, "nodes": jax.tree.map(lambda o, n: choose(rows, o, n), old["nodes"],
                                             new["nodes"])}
        if "input" in new:  # chain cells: node 1's own input layer
            cell["input"] = jax.tree.map(lambda o, n: choose(keep[1], o, n), old["input"],
                                         new["input"])
        cells.append(cell)
    return {**parent_params, "cells": cells}
