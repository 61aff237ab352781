"""Analytic, vectorised parameter and FLOP counts of architectures.

"Useful" counts cover the stem, the classifier and the live compute nodes (on an
input -> output path), at the widths they actually read and write: a node reads the
widest of its live predecessors; a dense or conv op writes its own width; skip,
pool and zero / none ops pass their input's width on (counts follow the graph, not
values, as NAS-Bench-201's do: a convolution fed only by a "none" edge still
counts); a 1x1 op uses one tap of the node kernel. FLOPs count 2 per multiply-add of
matmuls and convolutions only ('same' padding counted as full windows); bias,
activation, normalisation, pooling and node sums are not counted, for useful and
executed FLOPs alike, so their ratio measures the padded program's matmul waste.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.arch import Arch, live_nodes
from jaxnas.nn._layout import Layout


def _tables(layout: Layout) -> dict[str, np.ndarray]:
    """Per-op numpy tables indexed by op id."""
    specs = layout.specs
    linear = np.array([s.kind == "linear" for s in specs])
    return {
        "linear": linear,
        "taps": np.array([s.kernel ** layout.rank if s.kind == "linear" else 0 for s in specs]),
        "width": np.array([layout.op_width(s) if s.kind == "linear" else 0 for s in specs]),
        "extra": np.array([(1 if s.bias else 0) + (2 if s.norm else 0) for s in specs]),
    }


def _stem_counts(layout: Layout) -> tuple[int, int]:
    """(params, FLOPs) of the stem."""
    if layout.raw_input:
        return 0, 0
    width = layout.stem_width()
    if layout.spatial:
        macs = layout.stem_taps * layout.in_channels * width
        return macs + 2 * width, 2 * layout.positions * macs
    return layout.in_channels * width + width, 2 * layout.in_channels * width


def _one(layout: Layout, adj: jax.Array, ops: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(useful params, useful FLOPs) of one architecture, int32 / float32 scalars."""
    tables = {name: jnp.asarray(table) for name, table in _tables(layout).items()}
    n = layout.num_nodes
    live = live_nodes(adj != 0)
    edges = (adj != 0) & live[:, None] & live[None, :]
    stem_params, stem_flops = _stem_counts(layout)
    params = jnp.asarray(stem_params, jnp.int32)
    flops = jnp.asarray(stem_flops, jnp.float32)
    width_in = layout.in_channels if layout.raw_input else layout.stem_width()
    for _ in range(layout.config.num_cells):
        widths = jnp.zeros(n, jnp.int32).at[0].set(width_in)
        for i in range(1, n - 1):
            op = jnp.clip(ops[i], 0, len(layout.specs) - 1)
            reads = jnp.max(jnp.where(edges[:, i], widths, 0))
            linear = tables["linear"][op] & live[i]
            writes = jnp.where(tables["linear"][op], tables["width"][op], reads)
            macs = tables["taps"][op] * reads * writes
            params = params + jnp.where(linear, macs + tables["extra"][op] * writes, 0)
            flops = flops + jnp.where(linear, 2.0 * layout.positions * macs, 0.0)
            widths = widths.at[i].set(jnp.where(live[i], writes, 0))
        width_in = jnp.max(jnp.where(edges[:, n - 1], widths, 0))
    params = params + width_in * layout.num_classes + layout.num_classes
    flops = flops + 2.0 * width_in * layout.num_classes
    return params, flops


def _batched(layout: Layout, arch: Arch, index: int) -> jax.Array:
    batch_shape = arch.ops.shape[:-1]
    n = layout.num_nodes
    adj = jnp.reshape(arch.adj, (-1, n, n))
    ops = jnp.reshape(arch.ops, (-1, n))
    counts = jax.vmap(lambda a, o: _one(layout, a, o)[index])(adj, ops)
    return counts.reshape(batch_shape)


def num_params(layout: Layout, arch: Arch) -> jax.Array:
    """Useful parameter count (int32) of one Arch or a population (shape batch_shape)."""
    return _batched(layout, arch, 0)


def flops(layout: Layout, arch: Arch) -> jax.Array:
    """Useful forward FLOPs per example (float32) of one Arch or a population."""
    return _batched(layout, arch, 1)


def executed_flops(layout: Layout, slots: int | None = None,
                   template: tuple[int, ...] | None = None) -> int:
    """Forward FLOPs per example that the padded program executes, for any architecture;
    with ``slots``, the program of ``slots`` inner node slots (a compacted bucket); with
    ``template``, the typed slots of ``Model.apply(..., template=...)``: a slot of class
    k runs one k-window convolution (class 0, pooling only, no matmul)."""
    d = layout.features
    if template is None:
        stacked = layout.num_stacked if slots is None else slots - (layout.first_node - 1)
        template = (layout.max_kernel,) * stacked if layout.linear_specs else ()
    total = _stem_counts(layout)[1] + 2 * d * layout.num_classes
    per_cell = sum(2 * layout.positions * kernel ** layout.rank * d * d
                   for kernel in template if kernel)
    for cell in range(layout.config.num_cells):
        total += per_cell
        if layout.raw_input:
            total += 2 * layout.cell_input_features(cell) * d
    return int(total)
