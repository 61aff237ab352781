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

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxnas.arch import Arch, live_nodes
from jaxnas.nn import _cost
from jaxnas.nn._cell import _cell, _normalise
from jaxnas.nn._compact import Compact
from jaxnas.nn._layout import Layout, ModelConfig, make_layout
from jaxnas.nn._ops import channels, conv, native_conv
from jaxnas.nn._params import Params, inherit_params, init_params, stats_of
from jaxnas.spaces import Space


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
        apply=functools.partial(evaluate_logits, layout),
        apply_train=functools.partial(train_logits, layout),
        apply_relaxed=functools.partial(relaxed_logits, layout),
        num_params=jax.jit(lambda arch: _cost.num_params(layout, arch)),
        flops=jax.jit(lambda arch: _cost.flops(layout, arch)),
        executed_flops=_cost.executed_flops(layout),
        inherit=lambda parent_params, parent_arch, params, arch: inherit_params(
            layout, parent_params, parent_arch, params, arch),
        layout=layout,
    )


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


class _Pass(NamedTuple):
    """One forward pass: the logits (B, num_classes), every hidden value (see
    ``node_values``) and the running statistics after it (a subtree of params)."""

    logits: jax.Array
    values: list[jax.Array]
    stats: Params


def _graph(layout: Layout, arch: Arch | Compact, branch: bool,
           template: tuple[int, ...] | None) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """(edges, op choice, the Compact's slot nodes or None) of one architecture: dead and
    padding nodes get op id -1, which no op matches (they output zeros); a Compact is
    already live-masked and its slot i runs with the parameters of node ``node[i]``."""
    if isinstance(arch, Compact):
        if template is not None:
            unknown = set(template) - set(layout.slot_classes)
            if branch or unknown or len(template) > layout.num_stacked:
                raise ValueError(f"a template types at most {layout.num_stacked} slots of the "
                                 f"classes {layout.slot_classes} in the select program; got "
                                 f"{template}" + (" with branch=True" if branch else ""))
        return arch.adj, arch.ops, arch.node
    if template is not None:
        raise ValueError("a slot template types the slots of a Compact; got an Arch")
    n = layout.num_nodes
    if arch.adj.shape != (n, n) or arch.ops.shape != (n,):
        raise ValueError(f"the adjacency must have shape ({n}, {n}) and ops ({n},); got "
                         f"{arch.adj.shape} and {arch.ops.shape} (vmap populations)")
    live = live_nodes(arch.adj != 0)
    return (arch.adj != 0) & live[:, None], jnp.where(live, arch.ops, -1), None


def _run(layout: Layout, params: Params, edges: jax.Array, choice: jax.Array, x: jax.Array, *,
         hard: bool, train: bool, node: jax.Array | None = None, branch: bool = False,
         template: tuple[int, ...] | None = None) -> _Pass:
    """The forward pass every mode shares.

    Hard: ``edges`` (N, N) bool, or a Compact's (K, K) multiplicities with ``node`` (K,),
    and ``choice`` (N,) op ids; soft: ``edges`` (N, N) float weights and ``choice``
    (N, K) op weights. ``branch`` runs each node's op alone under ``lax.switch``;
    ``template`` types a Compact's slots (``_cell``). ``train``: batch norm normalises
    with the batch's statistics and returns the running ones updated (else unchanged).
    """
    if x.shape[1:] != layout.input_shape:
        raise ValueError(f"x must have shape (batch, *{layout.input_shape}); got {x.shape}")
    if node is not None:
        slots = jnp.maximum(node[layout.first_node:-1] - layout.first_node, 0)
        # Where a slot's statistics go back to: empty slots nowhere (out of range, dropped).
        homes = jnp.where(node[layout.first_node:-1] >= layout.first_node, slots,
                          layout.num_stacked)
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
                                      stats_of(own), node_stats)
        cell_stats.append({"nodes": node_stats})
        values.extend(states[1:])
    if any(c["nodes"] for c in cell_stats):
        stats["cells"] = cell_stats
    return _Pass(_head(params, h), values, stats)


def _hard_pass(layout: Layout, params: Params, arch: Arch | Compact, x: jax.Array, *,
               train: bool, branch: bool, template: tuple[int, ...] | None) -> _Pass:
    edges, choice, node = _graph(layout, arch, branch, template)
    return _run(layout, params, edges, choice, x, hard=True, train=train, node=node,
                branch=branch, template=template)


def evaluate_logits(layout: Layout, params: Params, arch: Arch | Compact, x: jax.Array, *,
                    branch: bool = False, template: tuple[int, ...] | None = None
                    ) -> jax.Array:
    """Evaluation mode (``Model.apply``): logits (B, num_classes)."""
    return _hard_pass(layout, params, arch, x, train=False, branch=branch,
                      template=template).logits


def train_logits(layout: Layout, params: Params, arch: Arch | Compact, x: jax.Array, *,
                 branch: bool = False, template: tuple[int, ...] | None = None
                 ) -> tuple[jax.Array, Params]:
    """Training mode (``Model.apply_train``): (logits, updated running statistics)."""
    forward = _hard_pass(layout, params, arch, x, train=True, branch=branch,
                         template=template)
    return forward.logits, forward.stats


def relaxed_logits(layout: Layout, params: Params, adj_weights: jax.Array,
                   op_weights: jax.Array, x: jax.Array) -> jax.Array:
    """The continuous relaxation (``Model.apply_relaxed``), in training mode: logits."""
    n, k = layout.num_nodes, len(layout.specs)
    if adj_weights.shape != (n, n) or op_weights.shape != (n, k):
        raise ValueError(f"adj_weights must have shape ({n}, {n}) and op_weights ({n}, {k}); "
                         f"got {adj_weights.shape} and {op_weights.shape}")
    live = live_nodes(adj_weights != 0)
    choice = jnp.where(live[:, None], op_weights.astype(jnp.float32), 0.0)
    return _run(layout, params, adj_weights.astype(jnp.float32), choice, x, hard=False,
                train=True).logits


def node_values(layout: Layout, params: Params, arch: Arch,
                x: jax.Array) -> tuple[list[jax.Array], jax.Array]:
    """Every hidden value of one architecture and its logits (what ``apply_train``
    computes: batch norm uses the batch's statistics).

    Returns:
      (values, logits): values is a list of (B, ...) arrays: the stem output (spaces
      with a stem) and the output of every node after the cell input, cell by cell
      (dead and padding nodes are zeros); logits (B, num_classes).
    """
    forward = _hard_pass(layout, params, arch, x, train=True, branch=False, template=None)
    return forward.values, forward.logits
