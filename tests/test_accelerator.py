"""The accelerator program's typed slot templates compute the branching program's
function, gradients and running statistics, for every registered space, and its cost
accounting counts what the program runs (the trainer: test_accelerator_train.py)."""

import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import jaxprs_in_params
from test_nn import _every_op, _host_params

import jaxnas.spaces
from jaxnas.arch import Arch, stack, unstack
from jaxnas.nn import ModelConfig, compact, executed_flops, make_model
from jaxnas.train import (
    Family,
    plan,
    template_family,
)

SPACES = jaxnas.spaces.names()
DIGITS = (8, 8, 1)
CLASSES = 10
BATCH = 3


@functools.cache
def _setup(space_name):
    space = jaxnas.spaces.get(space_name)
    model = make_model(space, DIGITS, CLASSES, ModelConfig(width=4))
    archs = stack(unstack(space.sample(jax.random.key(7), 10).to_numpy())
                  + unstack(_every_op(space)))
    return space, model, archs


def _placed(model, family, archs):
    """Every candidate alone in a chunk of its cheapest template: (plan, Compact rows)."""
    n = model.layout.num_nodes
    compacted = jax.vmap(functools.partial(compact, model.layout, size=n))(archs)
    count = len(archs.ops)
    placed = plan(family, tuple(np.asarray(a) for a in (compacted.adj, compacted.ops,
                                                         compacted.node)), 1, count, 1)
    return placed, jax.tree.map(jnp.asarray, type(compacted)(*placed.archs))


def _dot_flops(jaxpr, known: dict | None = None) -> int:
    """Matmul FLOPs (2 per multiply-add) of every dot a jaxpr runs, its sub-jaxprs
    included: a scan's body once per iteration, and of a ``cond`` the branch its index
    takes where the index is known (from constants, scanned per iteration), else every
    branch (a vmapped switch runs them all). ``known``: concrete values of variables."""
    known = dict(known or {})

    def value(var):
        return var.val if isinstance(var, jax.extend.core.Literal) else known.get(var)

    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        inputs = [value(v) for v in eqn.invars]
        if name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2 * int(np.prod(eqn.outvars[0].aval.shape)) * int(
                np.prod([lhs[d] for d in contract]))
        elif name == "scan":
            body, length = eqn.params["jaxpr"], eqn.params["length"]
            scanned = eqn.params["num_consts"] + eqn.params["num_carry"]
            for i in range(length):
                env = _consts(body)
                env.update({var: (x if j < scanned else x[i]) for j, (var, x) in enumerate(
                    zip(body.jaxpr.invars, inputs, strict=True)) if x is not None})
                total += _dot_flops(body.jaxpr, env)
        elif name == "cond":
            branches = eqn.params["branches"]
            taken = branches if inputs[0] is None else [branches[int(inputs[0])]]
            total += sum(_dot_flops(b.jaxpr, _consts(b)) for b in taken)
        else:
            for sub in jaxprs_in_params(eqn.params):
                total += _dot_flops(sub)
            small = all(np.prod(v.aval.shape) <= 1024 for v in eqn.outvars)
            if small and not list(jaxprs_in_params(eqn.params)) and all(
                    x is not None for x in inputs):
                out = eqn.primitive.bind(*inputs, **eqn.params)  # small index arithmetic
                for var, x in zip(eqn.outvars, out if eqn.primitive.multiple_results
                                  else [out], strict=True):
                    known[var] = np.asarray(x)
    return total


def _consts(closed) -> dict:
    return dict(zip(closed.jaxpr.constvars, closed.consts, strict=True))


@pytest.mark.parametrize("space_name", SPACES)
def test_typed_slots_equal_the_branching_program(space_name):
    """Each candidate placed in its template computes what its branching program does:
    training loss, gradients, batch norm's running statistics and evaluation logits."""
    space, model, archs = _setup(space_name)
    family = template_family(model, 2)
    placed, rows = _placed(model, family, archs)
    params = _host_params(model, len(archs.ops))
    x = np.random.default_rng(3).normal(size=(BATCH,) + DIGITS).astype(np.float32)
    labels = np.arange(BATCH) % CLASSES

    def loss(params, arch, template, branch):
        logits, stats = model.apply_train(params, arch, x, branch=branch, template=template)
        value = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1).mean()
        return value, (stats, model.apply(params, arch, x, branch=branch, template=template))

    step = jax.value_and_grad(loss, has_aux=True)
    branching = jax.jit(functools.partial(step, template=None, branch=True))
    typed = jax.jit(jax.vmap(step, (0, 0, None, None)), static_argnums=(2, 3))
    used = set()
    for template_index in np.unique(placed.chunk_templates):
        rows_of = np.flatnonzero(placed.chunk_templates == template_index)  # chunks of 1
        members = placed.order[rows_of]
        used.add(int(template_index))
        template = family.templates[template_index]
        got = typed(jax.tree.map(lambda a, m=members: a[m], params),
                    jax.tree.map(lambda a, r=rows_of: a[r], rows), template, False)
        for row, index in enumerate(members):
            expected = branching(jax.tree.map(lambda a, i=index: a[i], params),
                                 jax.tree.map(lambda a, i=index: a[i], archs))
            # chex names the leaf (loss, a gradient, a statistic, logits) that differs.
            chex.assert_trees_all_close(jax.tree.map(lambda a, r=row: a[r], got), expected,
                                        rtol=1e-4, atol=1e-5)
    if len(family.templates) > 1:
        assert len(used) > 1, "the sample should use more than the full template"


def _per_example_dot_flops(apply, params, arch) -> int:
    """The dot FLOPs of ``apply`` per example: batch 2 minus batch 1, so the graph logic's
    own small dots (liveness) drop out."""
    closed = [jax.make_jaxpr(apply)(params, arch, jax.ShapeDtypeStruct((batch,) + DIGITS,
                                                                      jnp.float32))
              for batch in (1, 2)]
    flops = [_dot_flops(c.jaxpr, _consts(c)) for c in closed]
    return flops[1] - flops[0]


@pytest.mark.parametrize("space_name", ["nasbench201", "nasbench101", "conv", "dag"])
def test_accounting_counts_the_dots_each_program_runs(space_name):
    """``executed_flops`` of a template (and of the padded program) equals the matmul
    FLOPs of the dots the forward pass contains."""
    space, model, archs = _setup(space_name)
    params = jax.tree.map(lambda a: a[0], _host_params(model, 1))
    first = jax.tree.map(lambda a: a[0], archs)
    assert _per_example_dot_flops(model.apply, params, first) == model.executed_flops
    family = template_family(model, 6)
    _, rows = _placed(model, family, archs)
    for template in family.templates:
        assert _per_example_dot_flops(functools.partial(model.apply, template=template),
                                      params, jax.tree.map(lambda a: a[0], rows)) == (
            executed_flops(model.layout, template=template))


def test_chunks_are_dealt_so_the_devices_finish_together():
    """Devices wait for the slowest at the end of a program, so the plan deals chunks
    most expensive first to the least loaded device. A chunk's work is its template's
    taps plus a fixed part per slot (``Family.chunk_work``); on these 64 NAS-Bench-201
    cells that deal is the best of every split of the chunks over two devices."""
    space, model, _ = _setup("nasbench201")
    family = template_family(model, 6)
    archs = space.sample(jax.random.key(0), 64)
    compacted = jax.vmap(functools.partial(compact, model.layout,
                                           size=model.layout.num_nodes))(archs)
    devices, num_chunks = 2, 5
    placed = plan(family, tuple(np.asarray(a) for a in (compacted.adj, compacted.ops,
                                                         compacted.node)), devices, num_chunks, 16)
    used = placed.chunk_templates < len(family.templates)
    costs = np.where(used, family.chunk_work(np.where(used, placed.chunk_templates, 0)), 0.0)
    costs = costs.reshape(devices, num_chunks)
    assert (costs > 0).sum() >= 4, "the sample should need several chunks"
    work = costs[costs > 0]
    splits = (np.array(side) for side in itertools.product([False, True], repeat=len(work)))
    best = min(max(work[side].sum(), work[~side].sum()) for side in splits)
    assert costs.sum(1).max() == pytest.approx(best)
    # The fixed part counts: by taps alone, the full template's chunk would look like
    # more work than the three cheapest chunks together.
    taps = np.sort(family.costs[placed.chunk_templates[used]])
    assert taps[-1] > taps[:3].sum() and costs.max() < np.sort(work)[:3].sum()


def test_a_population_of_1x1_convolutions_counts_and_runs_like_one():
    """NAS-Bench-101 chains of 1x1 convolutions in a family with a template of 1x1 slots:
    the program runs no 3x3 window and executes exactly their useful FLOPs."""
    space, model, _ = _setup("nasbench101")
    conv1 = space.op_id("conv1x1-bn-relu")
    n = space.max_nodes
    adj = np.zeros((n, n), np.int8)
    adj[np.arange(n - 1), np.arange(1, n)] = 1  # input -> 5 nodes in a chain -> output
    ops = np.array([-1] + [conv1] * (n - 2) + [-2], np.int32)
    archs = Arch(adj=np.stack([adj] * 4), ops=np.stack([ops] * 4))
    family = Family(model.layout, ((3,) * (n - 2), (1,) * (n - 2)))
    placed, rows = _placed(model, family, archs)
    assert (placed.chunk_templates == 1).all()
    useful = np.asarray(model.flops(archs))
    executed = executed_flops(model.layout, template=family.templates[1])
    np.testing.assert_array_equal(useful, executed)
    params = jax.tree.map(lambda a: a[0], _host_params(model, 1))
    assert _per_example_dot_flops(functools.partial(model.apply, template=family.templates[1]),
                                  params, jax.tree.map(lambda a: a[0], rows)) == executed
    # Stem and classifier aside, the padded program runs the same slots at 9 taps each.
    cell_free = executed_flops(model.layout, template=())
    assert 9 * (executed - cell_free) == model.executed_flops - cell_free
