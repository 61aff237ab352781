"""The accelerator program's typed slot templates compute the branching program's
function, gradients and running statistics, for every registered space, and its cost
accounting counts what the program runs (the trainer: test_accelerator_train.py)."""

import functools

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


def _dot_flops(jaxpr) -> int:
    """Matmul FLOPs (2 per multiply-add) of every dot a jaxpr runs, its sub-jaxprs (a
    scan's body once per iteration) included."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2 * int(np.prod(eqn.outvars[0].aval.shape)) * int(
                np.prod([lhs[d] for d in contract]))
        repeats = eqn.params["length"] if eqn.primitive.name == "scan" else 1
        for sub in jaxprs_in_params(eqn.params):
            total += repeats * _dot_flops(sub)
    return total


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
    flops = [_dot_flops(jax.make_jaxpr(apply)(
        params, arch, jax.ShapeDtypeStruct((batch,) + DIGITS, jnp.float32)).jaxpr)
        for batch in (1, 2)]
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
