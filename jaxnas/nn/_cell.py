"""One cell of the padded interpreter: node inputs and the node programs (select, typed
slots, branching and the relaxation); see ``jaxnas.nn._model`` for the semantics."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from jaxnas.nn._layout import Layout
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
from jaxnas.nn._params import Params, stats_of


def _normalise(params: Params, z: jax.Array, train: bool) -> tuple[jax.Array, dict]:
    """(normalised z, new running statistics): batch norm where params hold running
    statistics, else the stateless layer norm."""
    if "mean" not in params:
        return norm(z, params["scale"], params["shift"]), {}
    out, mean, var = batch_norm(z, params["scale"], params["shift"], params["mean"],
                                params["var"], train)
    return out, {"mean": mean, "var": var}


def _term(weight: jax.Array, state: jax.Array, hard: bool) -> jax.Array:
    """weight * state; hard edges select rather than multiply, so that a non-finite value
    on a node that is not a predecessor cannot leak into this node (or its gradient) as
    0 * inf."""
    if not hard:
        return weight * state
    if weight.dtype == jnp.bool_:
        return jnp.where(weight, state, 0.0)
    return jnp.where(weight != 0, weight * state, 0.0)


def _gather(edges: jax.Array, states: jax.Array | list[jax.Array], hard: bool) -> jax.Array:
    """sum_j edges[j] * states[j] over stacked states (M, ...) or a list of M states;
    edges (M,) bool (hard), float multiplicities (hard, compacted) or float (soft)."""
    if isinstance(states, list):
        terms = [_term(edges[j], state, hard) for j, state in enumerate(states)]
        return sum(terms[1:], start=terms[0])
    if hard:
        return _select_sum(edges, states)
    return _term(edges.reshape(edges.shape + (1,) * (states.ndim - 1)), states, False).sum(0)


@jax.custom_vjp
def _select_sum(edges: jax.Array, states: jax.Array) -> jax.Array:
    """The hard sum over stacked node values (M, ...), row by row: one fused pass
    that writes one node value (the node scan takes it as a loop carry, so XLA does not
    fuse it into its consumers, which would read all M rows once each). Its backward
    pass keeps only ``edges``: autodiff of the select saved a mask of all M values in
    every step of the node scan (docs/scaling.md measures both). Hard edges are the
    architecture, not weights: their cotangent is zero."""
    return _gather(edges, list(states), True)


def _select_sum_fwd(edges: jax.Array, states: jax.Array) -> tuple[jax.Array, jax.Array]:
    return _select_sum(edges, states), edges


def _select_sum_bwd(edges: jax.Array, grad: jax.Array) -> tuple[jax.Array, jax.Array]:
    weight = edges.reshape(edges.shape + (1,) * grad.ndim)
    no_edges = (np.zeros(edges.shape, jax.dtypes.float0) if edges.dtype == jnp.bool_
                else jnp.zeros_like(edges))
    return no_edges, _term(weight, grad[None], True)


_select_sum.defvjp(_select_sum_fwd, _select_sum_bwd)


def _cell(layout: Layout, cell: Params, h0: jax.Array, edges: jax.Array, choice: jax.Array,
          hard: bool, branch: bool, train: bool, template: tuple[int, ...] | None = None
          ) -> tuple[jax.Array, list[jax.Array], dict]:
    """One cell: node 0 = h0 (B, *spatial, d0); ``template``: the classes of the typed
    slots (the slots after it are empty and not computed). Spatial cells walk their
    nodes (or slots) with ``lax.scan`` unless they branch (``Layout.scan_nodes``).

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
    if layout.scan_nodes(branch) and layout.num_stacked and template != ():
        # Node first-1 (the cell input, or node 1 in chains) seeds a buffer of all N
        # node values; chains leave node 0's slot at zero (only node 1 reads it).
        buffer = jnp.zeros((n,) + states[-1].shape, h0.dtype).at[first - 1].set(states[-1])
        # Slot i runs its class's node program (every slot the padded one without a
        # template): a switch on the static class, so a real conditional under vmap.
        slots = (None,) * (n - 1 - first) if template is None else template
        count, kernels = len(slots), sorted(set(slots))
        which = jnp.asarray([kernels.index(k) for k in slots])
        programs = [lambda p, i, c, k=k: _node(layout, p, i, c, hard, branch, train, k)
                    for k in kernels]  # one branch: switch calls it, with no conditional

        # Each step gathers the next slot's input (the last, the cell output's), so that
        # in the backward pass the gather's buffer-wide cotangent is taken from the loop
        # carry: within one step, XLA fused it with the node's input cotangent and
        # recomputed that once per buffer row.
        def step(carry, xs):
            buffer, inp = carry
            node_params, next_edges, node_choice, index, kind = xs
            out, stats = jax.lax.switch(kind, programs, node_params, inp, node_choice)
            buffer = jax.lax.dynamic_update_index_in_dim(buffer, out, index, 0)
            return (buffer, _gather(next_edges, buffer, hard)), stats

        used = jax.tree.map(lambda a: a[:count], nodes)
        reads = jnp.concatenate([edges[:, first + 1:first + count], edges[:, n - 1:]], 1).T
        xs = (used, reads, choice[first:first + count], jnp.arange(first, first + count),
              which)
        start = _gather(edges[first - 1:first, first], states[-1:], hard)  # the only value yet
        (buffer, output), stats = jax.lax.scan(step, (buffer, start), xs)
        if count < n - 1 - first:  # empty slots keep their statistics (dropped by the caller)
            rest = stats_of(jax.tree.map(lambda a: a[count:], nodes))
            stats = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), stats, rest)
        return output, list(buffer[:n - 1]), stats
    node_stats = []
    for i in range(first, n - 1):
        node_params = jax.tree_util.tree_map(lambda a, m=i - first: a[m], nodes)
        if template is not None and i - first >= len(template):
            node_stats.append(stats_of(node_params))  # an empty slot: dropped by the caller
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
        return _node_soft(layout, params, inp, choice), stats_of(params)
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
        return jnp.zeros(inp.shape[:-1] + (d,), inp.dtype), stats_of(params)

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
    stats = stats_of(params)
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
    stats = stats_of(params)
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
