"""The padded interpreter: one program runs every architecture of a space.

``make_model(space, input_shape, num_classes, config)`` returns a ``Model`` of pure
functions. It is a factory rather than ``init(key, space, ...)`` / ``apply(params,
arch, x)`` because the op semantics and all shapes come from the static space; the
returned functions close over them, so ``apply`` takes only traced values and one
compilation serves every architecture.

Cell semantics (NAS-Bench-101's, with jaxnas's simplifications):

* Node 0 holds the cell input: the stem's output in the first cell, the previous
  cell's output afterwards. Node i (0 < i < N-1) sums the outputs of its
  predecessors ``j`` with ``adj[j, i] == 1`` and applies its op. The output node sums
  its predecessors. NAS-Bench-101 concatenates the output's inputs and projects the
  cell input with 1x1 convolutions; jaxnas keeps a constant width so no projections
  are needed and the output is a plain sum.
* NAS-Bench-201's edge-labelled cell is stored by its space in node-op form (each
  edge is a node), so "node = op(sum of predecessors)" is exactly NAS-Bench-201's
  "cell node = sum over incoming edges of op(source)".
* Only live nodes (on an input -> output path, NAS-Bench-101's pruning) produce
  output; padding and dead nodes output zeros, so they cannot affect the logits and
  an unpruned architecture computes the same function as its pruned form.

Ops (see ``_ops.parse_op``): "dense[<w>]-<relu|tanh|gelu|linear>" is a dense layer
with bias (units beyond the op's width are masked inside one width-D matmul);
"conv<k>x<k>-bn-relu" is conv-norm-relu; NAS-Bench-201's "nor_conv_<k>x<k>" is
relu-conv-norm; "maxpool<k>x<k>" / "avg_pool_<k>x<k>" pool (average excludes
padding); "skip"/"skip_connect" is the identity, "zero"/"none" outputs zeros. All
are stride 1 with 'same' padding, over one spatial axis (sequences) or two
(images). Normalisation is batch norm (``ModelConfig(norm="batch")``, the default:
NAS-Bench-101/201's) or a layer norm over channels (``norm="layer"``, stateless).
Batch norm's running statistics are the non-trainable "mean" and "var" leaves next
to each norm's "scale" and "shift": ``apply`` (evaluation) normalises with them,
``apply_train`` with the batch's statistics and returns them updated, and the trainer
writes them back (``with_stats``) after each optimiser step. Dead and padding nodes,
and nodes whose op does not normalise, keep their statistics unchanged.

Macro skeleton: spaces with a convolution or a pooling op are spatial: the stem
is conv-norm-relu to ``width`` channels over the data's spatial axes (flat features
of size D are read as a length-D sequence with one channel), then ``num_cells``
cells, global average pooling and a dense classifier. Other spaces are dense:
the input is flattened, a dense-relu stem projects it to ``width`` units (chain
spaces such as ``mlp`` have no stem: their first layer reads the flattened input
directly, as a plain MLP does), then the cells and the classifier.

Two programs compute the same function (``tests/test_nn.py`` compares values and
gradients):

* **Select** (``apply(..., branch=False)``, for vmapped chunks on accelerators):
  every node runs one kernel of the space's largest size; a 1x1 op masks that
  kernel to its centre tap and ops that differ only in width, activation, bias or
  normalisation share the matmul, so a node costs one convolution / matmul whatever
  its op (``lax.switch`` under vmap would run every branch). Padding and dead nodes
  compute on zeros and are selected away (the double where), so they can produce
  neither values nor NaN gradients.
* **Branch** (``apply(..., branch=True)``, one architecture not under vmap: the
  CPU trainer's candidates): each node runs only its own op under ``lax.switch``,
  so skip, zero, dead and padding nodes cost nothing and a 1x1 op runs a 1x1
  matmul; the nodes are unrolled ("auto" ``node_loop``), since a switch inside
  ``lax.scan`` ran 5-6x slower.

Convolutions of the select program are im2col matmuls (under vmap XLA's CPU
convolution becomes a grouped one, ~20x slower); the branching program and its
stem use XLA's own convolution with a gradient written in the form XLA's CPU
backend hands to its convolution library (``_ops.native_conv``: autodiff's form
ran as naive loops inside the training loop). Pools are separable chains of
element-wise maxima / sums, 6x faster to differentiate than ``reduce_window``.
``docs/performance.md`` has the measurements behind these choices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from jaxnas.arch import Arch, live_nodes
from jaxnas.nn import _cost
from jaxnas.nn._compact import Compact
from jaxnas.nn._layout import Layout, ModelConfig, make_layout
from jaxnas.nn._ops import (
    ACTIVATIONS,
    OpSpec,
    batch_norm,
    channels,
    conv,
    native_conv,
    norm,
    pool,
    tap_mask,
)
from jaxnas.spaces import Space

Params = Any


class Model(NamedTuple):
    """Pure functions of one (space, input shape, classes, config).

    Attributes:
      init: key -> params of one architecture; every architecture of the space uses
        the same shapes, so ``vmap(init)`` over keys gives a population's params.
      apply: (params, arch, x (B, *input_shape), *, branch=False) -> logits
        (B, num_classes) for one architecture, an ``Arch`` or its ``Compact`` form (same
        function, fewer node slots: see ``jaxnas.nn._compact``), in evaluation mode
        (batch norm uses the running statistics in params); jittable, vmappable over
        (params, arch). ``branch=True`` runs each node's op alone under ``lax.switch``
        (the same function): the fast form for one architecture that is not vmapped,
        since under vmap every branch would run.
      apply_train: the same arguments -> (logits, stats): training mode (batch norm
        normalises with the batch's statistics) and the updated running statistics,
        a subtree of params (``{}`` without batch norm) for ``with_stats``.
      apply_relaxed: (params, adj_weights (N, N), op_weights (N, K), x) -> logits:
        the continuous (DARTS) relaxation, in training mode (batch statistics, as
        DARTS trains its supernet); node input = sum_j adj_weights[j, i] h_j, node
        output = sum_k op_weights[i, k] op_k(input). With a 0/1 adjacency and one-hot
        ops it equals ``apply_train``'s logits.
      num_params: arch -> useful parameter count (live nodes, at the widths they
        read and write); works on one Arch or a population (shape batch_shape).
      flops: arch -> useful forward FLOPs per example (a multiply-add is 2 FLOPs;
        stem, node and classifier matmuls and convolutions; element-wise work is not
        counted); same batching.
      executed_flops: the forward FLOPs per example the padded program executes,
        counted the same way; equal for every architecture.
      inherit: (parent_params, parent_arch, params, arch) -> params: weight
        inheritance, ``params`` (an architecture's fresh parameters) with every part
        it shares with ``parent_arch`` taken from ``parent_params``; jittable,
        vmappable (see ``inherit_params``).
      layout: the static layout (shapes, op specs) the functions close over.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[..., jax.Array]
    apply_train: Callable[..., tuple[jax.Array, Params]]
    apply_relaxed: Callable[[Params, jax.Array, jax.Array, jax.Array], jax.Array]
    num_params: Callable[[Arch], jax.Array]
    flops: Callable[[Arch], jax.Array]
    executed_flops: int
    inherit: Callable[[Params, Arch, Params, Arch], Params]
    layout: Layout


def make_model(space: Space, input_shape: tuple[int, ...], num_classes: int,
               config: ModelConfig = ModelConfig()) -> Model:  # noqa: B008 (frozen)
    """Builds the padded interpreter for ``space`` on data of ``input_shape``.

    Args:
      space: the search space (static).
      input_shape: one example's shape: (features,), (length, channels) or
        (height, width, channels).
      num_classes: number of logits.
      config: width, number of cells and stem kernel.

    Raises:
      ValueError: for an op name the interpreter does not know, or a space that
        cannot run on this input shape.
    """
    layout = make_layout(space, input_shape, num_classes, config)
    # init and the counts are jitted here because callers often run them eagerly (one
    # compile instead of one per random draw); apply is left to the caller's jit.
    return Model(
        init=jax.jit(lambda key: init_params(layout, key)),
        apply=lambda params, arch, x, *, branch=False, template=None: _apply(
            layout, params, arch, x, branch, template, train=False)[0],
        apply_train=lambda params, arch, x, *, branch=False, template=None: _apply(
            layout, params, arch, x, branch, template, train=True),
        apply_relaxed=lambda params, adj_weights, op_weights, x: _forward(
            layout, params, adj_weights, op_weights, x, hard=False, train=True)[0],
        num_params=jax.jit(lambda arch: _cost.num_params(layout, arch)),
        flops=jax.jit(lambda arch: _cost.flops(layout, arch)),
        executed_flops=_cost.executed_flops(layout),
        inherit=lambda parent_params, parent_arch, params, arch: inherit_params(
            layout, parent_params, parent_arch, params, arch),
        layout=layout,
    )


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


def _stats_of(params: Params) -> dict[str, jax.Array]:
    """The running statistics held by one norm's (or one node's) params; {} if none."""
    return {k: params[k] for k in STAT_KEYS if k in params}


def _normalise(params: Params, z: jax.Array, train: bool) -> tuple[jax.Array, dict]:
    """(normalised z, new running statistics): batch norm where params hold running
    statistics, else the stateless layer norm."""
    if "mean" not in params:
        return norm(z, params["scale"], params["shift"]), {}
    out, mean, var = batch_norm(z, params["scale"], params["shift"], params["mean"],
                                params["var"], train)
    return out, {"mean": mean, "var": var}


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


def _stem(layout: Layout, params: Params, x: jax.Array, train: bool,
          convolve: Callable) -> tuple[jax.Array, dict]:
    """(B, *input_shape) -> (node 0 of the first cell: (B, *spatial, D) or (B, d), the
    stem norm's new running statistics); a spatial stem convolves with ``convolve``."""
    batch = x.shape[0]
    stats = {}
    if not layout.spatial:
        x = x.reshape(batch, -1)
        if layout.raw_input:
            return x, stats
        h = jax.nn.relu(x @ params["stem"]["kernel"][0] + channels(params["stem"]["bias"], 2))
    else:
        x = x.reshape(batch, *layout.spatial_shape, layout.in_channels)
        z, stats = _normalise(params["stem"], convolve(x, params["stem"]["kernel"]), train)
        h = jax.nn.relu(z)
    pad = layout.features - h.shape[-1]
    return (jnp.pad(h, [(0, 0)] * (h.ndim - 1) + [(0, pad)]) if pad else h), stats


def _head(params: Params, h: jax.Array) -> jax.Array:
    pooled = h.mean(axis=tuple(range(1, h.ndim - 1))) if h.ndim > 2 else h
    return pooled @ params["head"]["kernel"] + channels(params["head"]["bias"], 2)


def _apply(layout: Layout, params: Params, arch: Arch | Compact, x: jax.Array,
           branch: bool, template: tuple[int, ...] | None, train: bool
           ) -> tuple[jax.Array, Params]:
    node = arch.node if isinstance(arch, Compact) else None
    if template is not None:
        if node is None or branch:
            raise ValueError("a slot template types the slots of a Compact in the select "
                             "program: pass a Compact and branch=False")
        unknown = set(template) - set(layout.slot_classes)
        if unknown or len(template) > layout.num_stacked:
            raise ValueError(f"a template holds at most {layout.num_stacked} slots of the "
                             f"classes {layout.slot_classes}; got {template}")
    return _forward(layout, params, arch.adj, arch.ops, x, hard=True, node=node, branch=branch,
                    template=template, train=train)


def _forward(layout: Layout, params: Params, adj: jax.Array, ops: jax.Array, x: jax.Array, *,
             hard: bool, train: bool, collect: bool = False, node: jax.Array | None = None,
             branch: bool = False, template: tuple[int, ...] | None = None):
    """(logits (B, num_classes), new running statistics) of one architecture (hard) or
    one relaxation (soft).

    Hard: ``adj`` (N, N) 0/1 and ``ops`` (N,) op ids; soft: ``adj`` (N, N) float edge
    weights and ``ops`` (N, K) float op weights. With ``node`` (K,), a ``Compact``'s
    slots: ``adj`` (K, K) edge multiplicities, ``ops`` (K,) op ids (-1 inactive), and
    slot i runs with the parameters of original node ``node[i]``. With ``collect``
    returns ``(values, logits)`` instead (see ``node_values``). ``branch`` (hard only)
    runs each node's op alone under ``lax.switch``. ``template`` (a Compact only) types
    the slots: slot ``first_node + s`` runs only the ops of class ``template[s]`` (see
    ``_node_hard``) and the slots past the template are not computed (they must be
    empty). ``train``: batch norm normalises
    with batch statistics (the statistics returned are updated) instead of the running
    ones (returned unchanged).
    """
    n, k = layout.num_nodes, len(layout.specs)
    if x.shape[1:] != layout.input_shape:
        raise ValueError(f"x must have shape (batch, *{layout.input_shape}); got {x.shape}")
    if node is not None:  # a Compact: already live-masked, its slots use node[i]'s params
        edges, choice = adj, ops
        slots = jnp.maximum(node[layout.first_node:-1] - layout.first_node, 0)
        # Where a slot's statistics go back to: empty slots nowhere (out of range, dropped).
        homes = jnp.where(node[layout.first_node:-1] >= layout.first_node, slots,
                          layout.num_stacked)
    else:
        if adj.shape != (n, n):
            raise ValueError(f"the adjacency must have shape ({n}, {n}); got {adj.shape}")
        live = live_nodes(adj != 0)
        if hard:
            if ops.shape != (n,):
                raise ValueError(f"ops must have shape ({n},); got {ops.shape} "
                                 "(vmap populations)")
            # Dead and padding nodes get op id -1, which no op matches: they output zeros.
            choice = jnp.where(live, ops, -1)
            edges = (adj != 0) & live[:, None]
        else:
            if ops.shape != (n, k):
                raise ValueError(f"op_weights must have shape ({n}, {k}); got {ops.shape}")
            choice = jnp.where(live[:, None], ops.astype(jnp.float32), 0.0)
            edges = adj.astype(jnp.float32)
    h, stem_stats = _stem(layout, params, x, train, native_conv if branch else conv)
    stats: dict[str, Any] = {"stem": stem_stats} if stem_stats else {}
    cell_stats = []
    values = [] if layout.raw_input else [h]
    for cell in params["cells"]:
        own = cell["nodes"]
        if node is not None:
            cell = {**cell, "nodes": jax.tree.map(lambda a: a[slots], own)}
        h, states, node_stats = _cell(layout, cell, h, edges, choice, hard, branch, train,
                                      template)
        if node is not None:
            node_stats = jax.tree.map(lambda full, new: full.at[homes].set(new, mode="drop"),
                                      _stats_of(own), node_stats)
        cell_stats.append({"nodes": node_stats})
        values.extend(states[1:])
    if any(c["nodes"] for c in cell_stats):
        stats["cells"] = cell_stats
    logits = _head(params, h)
    return (values, logits) if collect else (logits, stats)


def node_values(layout: Layout, params: Params, arch: Arch,
                x: jax.Array) -> tuple[list[jax.Array], jax.Array]:
    """Every hidden value of one architecture and its logits (what ``apply_train``
    computes: batch norm uses the batch's statistics).

    Returns:
      (values, logits): values is a list of (B, ...) arrays: the stem output (spaces
      with a stem) and the output of every node after the cell input, cell by cell
      (dead and padding nodes are zeros); logits (B, num_classes).
    """
    return _forward(layout, params, arch.adj, arch.ops, x, hard=True, train=True, collect=True)


def _gather(edges: jax.Array, states: jax.Array | list[jax.Array], hard: bool) -> jax.Array:
    """sum_j edges[j] * states[j] over stacked states (M, ...) or a list of M states;
    edges (M,) bool (hard), float multiplicities (hard, compacted) or float (soft)."""
    # Hard edges select rather than multiply: a non-finite value on a node that is not
    # a predecessor cannot leak into this node (or its gradient) as 0 * inf.
    def term(weight, state):
        if not hard:
            return weight * state
        if weight.dtype == jnp.bool_:
            return jnp.where(weight, state, 0.0)
        return jnp.where(weight != 0, weight * state, 0.0)

    if isinstance(states, list):
        total = None
        for j, state in enumerate(states):
            total = term(edges[j], state) if total is None else total + term(edges[j], state)
        return total
    return term(edges.reshape(edges.shape + (1,) * (states.ndim - 1)), states).sum(0)


def _cell(layout: Layout, cell: Params, h0: jax.Array, edges: jax.Array, choice: jax.Array,
          hard: bool, branch: bool, train: bool, template: tuple[int, ...] | None = None
          ) -> tuple[jax.Array, list[jax.Array], dict]:
    """One cell: node 0 = h0 (B, *spatial, d0); ``template``: the classes of the typed
    slots (the slots after it are empty and not computed).

    Returns:
      (the output node (B, *spatial, D), the values of nodes 0..N-2 as a list, the
      stacked nodes' new running statistics, (M, D) each, or {}).

    In chain spaces node 0 holds the raw flattened input of its own size d0; only
    node 1 reads it, with the cell's ``input`` kernel (other edges out of node 0 are
    ignored, a chain has none).
    """
    n, first = edges.shape[0], layout.first_node
    states = [h0]
    if layout.raw_input:
        node1, _ = _node(layout, cell["input"], _gather(edges[:1, 1], [h0], hard), choice[1],
                         hard, branch, train)
        states = [jnp.zeros_like(node1), node1]
    nodes = cell["nodes"]
    if layout.scan_nodes(branch) and layout.num_stacked and template is None:
        # Node first-1 (the cell input, or node 1 in chains) seeds a buffer of all N
        # node values; chains leave node 0's slot at zero (only node 1 reads it).
        buffer = jnp.zeros((n,) + states[-1].shape, h0.dtype).at[first - 1].set(states[-1])

        def step(buffer, xs):
            node_params, node_edges, node_choice, index = xs
            out, stats = _node(layout, node_params, _gather(node_edges, buffer, hard),
                               node_choice, hard, branch, train)
            return jax.lax.dynamic_update_index_in_dim(buffer, out, index, 0), stats

        xs = (nodes, edges[:, first:n - 1].T, choice[first:n - 1], jnp.arange(first, n - 1))
        buffer, stats = jax.lax.scan(step, buffer, xs)
        return _gather(edges[:, n - 1], buffer, hard), list(buffer[:n - 1]), stats
    node_stats = []
    for i in range(first, n - 1):
        node_params = jax.tree_util.tree_map(lambda a, m=i - first: a[m], nodes)
        if template is not None and i - first >= len(template):
            node_stats.append(_stats_of(node_params))  # an empty slot: dropped by the caller
            continue
        kernel = None if template is None else template[i - first]
        inp = _gather(edges[first - 1:i, i], states[first - 1:], hard)
        out, stats = _node(layout, node_params, inp, choice[i], hard, branch, train, kernel)
        states.append(out)
        node_stats.append(stats)
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *node_stats) if node_stats else {}
    output = _gather(edges[first - 1:len(states), n - 1], states[first - 1:], hard)
    return output, states, stacked


def _node(layout: Layout, params: Params, inp: jax.Array, choice: jax.Array,
          hard: bool, branch: bool, train: bool, kernel: int | None = None
          ) -> tuple[jax.Array, dict]:
    """One node on its summed input (B, *spatial, D): op id ``choice`` (hard; -1 for an
    inactive node) or the op mixture ``choice`` (K,) (soft, always in training mode,
    its running statistics left as they are).

    Returns:
      (the node's value (B, *spatial, D), its new running statistics (D,) each, or {}).
    """
    if not hard:
        return _node_soft(layout, params, inp, choice), _stats_of(params)
    if branch:
        return _node_branch(layout, params, inp, choice, train)
    return _node_remat(layout, params, inp, choice, train, kernel)


def _node_remat(layout, params, inp, choice, train, kernel):
    """``_node_hard``, keeping for the backward pass only its input and its convolution's
    output (``jax.checkpoint``): norms, activations, pools and selects are recomputed
    (element-wise work, no matmul), so a vmapped chunk holds about two feature maps per
    node instead of a dozen."""
    policy = jax.checkpoint_policies.save_only_these_names(_CONV_OUTPUT)
    run = jax.checkpoint(_node_hard, policy=policy, static_argnums=(0, 4, 5))
    return run(layout, params, inp, choice, train, kernel)


_CONV_OUTPUT = "node_conv"



def _node_branch(layout: Layout, params: Params, inp: jax.Array, choice: jax.Array,
                 train: bool) -> tuple[jax.Array, dict]:
    """One node running op id ``choice`` alone: ``lax.switch`` executes one branch, so an
    inactive, zero or skip node costs nothing and a 1x1 op runs a 1x1 matmul. For a
    scalar ``choice`` only: under vmap the switch becomes a select of every branch."""
    d = layout.features

    def nothing(params, inp):
        return jnp.zeros(inp.shape[:-1] + (d,), inp.dtype), _stats_of(params)

    def op_branch(spec):
        return lambda params, inp: _op_output(layout, params, inp, spec, train,
                                              convolve=native_conv)

    branches = [nothing] + [op_branch(s) for s in layout.specs]
    return jax.lax.switch(jnp.maximum(choice + 1, 0), branches, params, inp)


def _op_output(layout: Layout, params: Params, inp: jax.Array, spec: OpSpec, train: bool,
               convs: dict | None = None, convolve: Callable = conv
               ) -> tuple[jax.Array, dict]:
    """One op on a node's summed input (B, *spatial, D_in) -> ((B, *spatial, D), the
    node's new running statistics); a convolution runs on its own taps only, with
    ``convolve`` (``conv`` or ``native_conv``). ``convs`` caches convolutions by
    (kernel, pre-relu) across the ops of one node."""
    d = layout.features
    stats = _stats_of(params)
    if spec.kind == "zero":
        return jnp.zeros(inp.shape[:-1] + (d,), inp.dtype), stats
    if spec.kind == "skip":
        return inp, stats
    if spec.kind == "pool":
        return pool(inp, spec.pool, spec.kernel), stats
    convs = {} if convs is None else convs
    key = (spec.kernel, spec.pre_relu)
    if key not in convs:
        used = tap_mask(spec.kernel, layout.max_kernel, layout.rank).nonzero()[0]
        convs[key] = convolve(jax.nn.relu(inp) if spec.pre_relu else inp, params["kernel"][used])
    z = convs[key]
    if spec.bias:
        z = z + channels(params["bias"], z.ndim)
    if spec.norm:
        z, stats = _normalise(params, z, train)
    value = ACTIVATIONS[spec.activation](z)
    width = layout.op_width(spec)
    if width < d:
        value = jnp.where(channels(jnp.arange(d) < width, value.ndim), value, 0.0)
    return value, stats


def _activate(layout: Layout, z: jax.Array, op: jax.Array) -> jax.Array:
    """The activation of op id ``op`` (clipped to a valid id) applied to z."""
    names = sorted({s.activation for s in layout.linear_specs})
    if len(names) == 1:
        return ACTIVATIONS[names[0]](z)
    which = jnp.asarray([names.index(s.activation) if s.kind == "linear" else 0
                         for s in layout.specs])[op]
    out = ACTIVATIONS[names[0]](z)
    for index, name in enumerate(names[1:], start=1):
        out = jnp.where(which == index, ACTIVATIONS[name](z), out)
    return out


def _node_hard(layout: Layout, params: Params, inp: jax.Array, choice: jax.Array,
               train: bool, kernel: int | None = None) -> tuple[jax.Array, dict]:
    """One node running op id ``choice``: one convolution / matmul whatever the op.

    Linear ops share the node kernel, masked to the op's taps, and the input relu when
    the op wants it; bias, normalisation, activation and width are then selected per op,
    so ops that differ only in those share the matmul. The running statistics change
    only on an active node whose op normalises.

    ``kernel`` types the slot (``Layout.slot_classes``): only the linear ops of kernel <=
    ``kernel`` run, on the ``kernel`` window's taps of the node kernel (0: no linear
    op), besides pooling; ``choice`` must be one of the ops the slot runs. None runs
    every op on the largest window (the padded select program).
    """
    specs = layout.specs
    d = layout.features
    kernel = layout.max_kernel if kernel is None else kernel
    linear = tuple(s for s in layout.linear_specs if s.kernel <= kernel)
    active = choice >= 0
    op = jnp.maximum(choice, 0)
    # Double where: an inactive node computes on zeros, so whatever its input holds, no
    # inf or NaN can arise in the branch that the final select discards.
    inp = jnp.where(active, inp, 0.0)

    def per_op(values) -> jax.Array:
        return jnp.asarray(values)[op]

    groups: list[tuple[jax.Array, jax.Array]] = []
    stats = _stats_of(params)
    if linear:
        conv_in = inp
        if all(s.pre_relu for s in linear):
            conv_in = jax.nn.relu(inp)
        elif any(s.pre_relu for s in linear):
            conv_in = jnp.where(per_op([s.pre_relu for s in specs]), jax.nn.relu(inp), inp)
        weights = params["kernel"]
        if kernel < layout.max_kernel:
            weights = weights[tap_mask(kernel, layout.max_kernel, layout.rank).nonzero()[0]]
        if len({s.kernel for s in linear}) > 1:
            weights = weights * per_op(layout.tap_table(kernel))[:, None, None]
        z = checkpoint_name(conv(conv_in, weights), _CONV_OUTPUT)
        if any(s.bias for s in linear):
            biased = z + channels(params["bias"], z.ndim)
            z = biased if all(s.bias for s in linear) else jnp.where(
                per_op([s.bias for s in specs]), biased, z)
        if any(s.norm for s in linear):
            normed, new = _normalise(params, z, train)
            normalises = per_op([s.norm for s in specs])
            z = normed if all(s.norm for s in linear) else jnp.where(normalises, normed, z)
            stats = jax.tree.map(lambda n, o: jnp.where(active & normalises, n, o), new, stats)
        z = _activate(layout, z, op)
        widths = [layout.op_width(s) if s.kind == "linear" else d for s in specs]
        if min(widths) < d:
            units = per_op(np.arange(d)[None, :] < np.array(widths)[:, None])
            z = jnp.where(channels(units, z.ndim), z, 0.0)
        groups.append((per_op([s in linear for s in specs]), z))
    for kind, size in sorted({(s.pool, s.kernel) for s in specs if s.kind == "pool"}):
        chosen = per_op([s.kind == "pool" and (s.pool, s.kernel) == (kind, size) for s in specs])
        groups.append((chosen, pool(inp, kind, size)))
    if any(s.kind == "skip" for s in specs):
        groups.append((per_op([s.kind == "skip" for s in specs]), inp))
    out = jnp.zeros(inp.shape[:-1] + (d,), inp.dtype)
    for chosen, value in groups:
        out = jnp.where(active & chosen, value, out)
    return out, stats


def _node_soft(layout: Layout, params: Params, inp: jax.Array, weights: jax.Array) -> jax.Array:
    """One node's op mixture sum_k weights[k] * op_k(inp); each op computed on its own."""
    convs: dict = {}
    out = jnp.zeros(inp.shape[:-1] + (layout.features,), inp.dtype)
    for k, spec in enumerate(layout.specs):
        if spec.kind != "zero":
            out = out + weights[k] * _op_output(layout, params, inp, spec, True, convs)[0]
    return out
