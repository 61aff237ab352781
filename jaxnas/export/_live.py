"""The live part of one architecture and of its jaxnas parameters, in plain numpy.

Host-side, without torch or flax: the PyTorch export (``pytorch``), the Flax export
(``_flax``) and the ONNX export build their networks from ``live_plan`` and take their
weights from ``live_weights``, so all of them run the same live nodes with the same
numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxnas.arch import Arch, live_mask
from jaxnas.nn import Layout, OpSpec, tap_mask


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


@dataclasses.dataclass(frozen=True)
class NodePlan:
    """One live node of a cell: its op (None for the output node), the live nodes it
    sums (zero-padded to the widest) and the widths it reads and writes."""

    node: int
    spec: OpSpec | None
    preds: tuple[int, ...]
    in_width: int
    out_width: int


def live_plan(layout: Layout, arch: Arch) -> list[list[NodePlan]]:
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
                nodes.append(NodePlan(i, None, preds, in_width, in_width))
                continue
            spec = layout.specs[ops[i]]
            out = layout.op_width(spec) if spec.kind == "linear" else in_width
            widths[i] = out
            nodes.append(NodePlan(i, spec, preds, in_width, out))
        cells.append(nodes)
        width = nodes[-1].out_width
    return cells


NORM_KEYS = ("scale", "shift", "mean", "var")


def live_weights(layout: Layout, plans: list[list[NodePlan]], params: Any
                 ) -> dict[str, dict[str, np.ndarray]]:
    """The weights the live layers use, channels-last, by layer.

    Layers: "stem" (absent in chain spaces), "cells/<c>/node<i>" for each live linear
    node, "head". A layer's arrays: "kernel", (in, out) for a dense layer and
    (k, ..., k, in, out) for a convolution (cross-correlation, taps row-major, as
    ``lax.conv`` with HWIO kernels); "bias" for dense layers; "scale", "shift" and,
    with batch norm, the running "mean" and "var" for a normalised convolution.
    Only the used part of jaxnas's padded arrays: the op's taps and widths.
    """
    flat = flatten(params)
    rank = layout.rank
    weights: dict[str, dict[str, np.ndarray]] = {}
    if layout.spatial:
        size = layout.config.stem_kernel
        stem = _subtree(flat, "stem/")
        weights["stem"] = {"kernel": _window(stem["kernel"], np.arange(size ** rank), size,
                                             rank, (layout.in_channels, layout.config.width)),
                           **_norm(stem, None)}
    elif not layout.raw_input:
        weights["stem"] = {"kernel": flat["stem/kernel"][0], "bias": flat["stem/bias"]}
    for c, nodes in enumerate(plans):
        for node in nodes[:-1]:
            if node.spec.kind != "linear":
                continue
            if layout.raw_input and node.node == 1:
                source = _subtree(flat, f"cells/{c}/input/")
            else:
                m = node.node - layout.first_node
                source = {key: value[m]
                          for key, value in _subtree(flat, f"cells/{c}/nodes/").items()}
            fan = (node.in_width, node.out_width)
            if node.spec.norm:
                taps = tap_mask(node.spec.kernel, layout.max_kernel, rank).nonzero()[0]
                weights[f"cells/{c}/node{node.node}"] = {
                    "kernel": _window(source["kernel"], taps, node.spec.kernel, rank, fan),
                    **_norm(source, fan[1])}
            else:
                centre = tap_mask(1, layout.max_kernel, rank).nonzero()[0][0]
                weights[f"cells/{c}/node{node.node}"] = {
                    "kernel": source["kernel"][centre][:fan[0], :fan[1]],
                    "bias": source["bias"][:fan[1]]}
    width = plans[-1][-1].out_width
    weights["head"] = {"kernel": flat["head/kernel"][:width], "bias": flat["head/bias"]}
    return weights


def _subtree(flat: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {key[len(prefix):]: value for key, value in flat.items() if key.startswith(prefix)}


def _window(kernel: np.ndarray, taps: np.ndarray, size: int, rank: int, fan: tuple[int, int]
            ) -> np.ndarray:
    """A jaxnas (T, C_in, C_out) kernel's used taps as a (size, ..., size, in, out) window."""
    return np.ascontiguousarray(kernel[taps][:, :fan[0], :fan[1]].reshape((size,) * rank + fan))


def _norm(source: dict[str, np.ndarray], width: int | None) -> dict[str, np.ndarray]:
    """A norm's arrays (its first ``width`` channels): scale and shift, and batch norm's
    running statistics."""
    return {key: value[:width] for key, value in source.items() if key in NORM_KEYS}
