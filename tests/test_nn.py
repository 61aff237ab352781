"""The padded interpreter: shapes, one compile for every architecture, vmap, masking,
gradients, the relaxation and the analytic counts, for every registered space."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas.spaces
from jaxnas.arch._encoding import INPUT, OUTPUT, PAD, Arch, live_nodes, prune, stack, unstack
from jaxnas.nn import ModelConfig, make_model, parse_op
from jaxnas.nn._compact import compact, compute_nodes
from jaxnas.nn._cost import executed_flops
from jaxnas.nn._ops import conv, native_conv
from jaxnas.spaces import ChainSpace, NasBench201Space, chain_arch

SPACES = jaxnas.spaces.names()
DIGITS = (8, 8, 1)
WIDTH = 4
CLASSES = 10
BATCH = 3


def _arch(n: int, edges, ops: dict[int, int]) -> Arch:
    adj = np.zeros((n, n), np.int8)
    for i, j in edges:
        adj[i, j] = 1
    op_ids = np.full(n, PAD, np.int32)
    op_ids[0], op_ids[-1] = INPUT, OUTPUT
    for node, op in ops.items():
        op_ids[node] = op
    return Arch(adj=adj, ops=op_ids)


def _two_node_chain(space, op: int) -> Arch:
    """input -> op -> op -> output, the remaining nodes padding."""
    if isinstance(space, ChainSpace):
        hidden = np.full(space.max_layers, PAD, np.int32)
        hidden[:2] = op
        return Arch(**{k: np.asarray(v) for k, v in vars(chain_arch(jnp.asarray(hidden))).items()})
    n = space.max_nodes
    return _arch(n, [(0, 1), (1, 2), (2, n - 1)], {1: op, 2: op})


def _every_op(space) -> Arch:
    """One architecture per op of the space, using it on every compute node it has."""
    if isinstance(space, NasBench201Space):
        return stack([unstack(space._build_host(np.full((1, 6), op, np.int32)))[0]
                      for op in range(space.num_ops)])
    return stack([_two_node_chain(space, op) for op in range(space.num_ops)])


@functools.cache
def _setup(space_name):
    space = jaxnas.spaces.get(space_name)
    model = make_model(space, DIGITS, CLASSES, ModelConfig(width=WIDTH))
    # Random neighbours of a hand-made architecture (host code: no sampler to compile).
    neighbours = unstack(space.neighbours(_hand_counts(space_name)[0]))
    chosen = np.random.default_rng(0).choice(len(neighbours), 3, replace=False)
    archs = stack([neighbours[i] for i in chosen] + unstack(_every_op(space)))
    params = _host_params(model, len(archs))
    x = np.random.default_rng(2).normal(size=(BATCH,) + DIGITS).astype(np.float32)
    traces = []

    def counted_apply(params, arch, x):
        traces.append(None)
        return model.apply(params, arch, x)

    # chex raises on a second trace too (its count is by source: reset for each space).
    chex.clear_trace_counter()
    counted = chex.assert_max_traces(counted_apply, 1)
    return space, model, archs, params, x, jax.jit(counted), traces


def _host_params(model, count, seed=1):
    """Random numpy params for a population: editing and slicing them compiles nothing, and
    random biases, norm scales, shifts and running statistics exercise more than
    ``init``'s zeros and ones."""
    rng = np.random.default_rng(seed)

    def draw(path, s):
        scale = 0.5
        name = jax.tree_util.keystr(path)
        if "kernel" in name:  # (..., taps, in, out) or (in, out)
            scale = 1 / np.sqrt(s.shape[-2] * (s.shape[-3] if len(s.shape) > 2 else 1))
        if "var" in name:  # a running variance is positive
            return rng.uniform(0.5, 2.0, size=(count,) + s.shape).astype(np.float32)
        return (scale * rng.normal(size=(count,) + s.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, jax.eval_shape(model.init, jax.random.key(0)))


def _member(params, index):
    return jax.tree_util.tree_map(lambda a: a[index], params)


def _poison_padding_slot(space, params, num_random):
    """NaN in every parameter of node N-2 for the hand-made members, where it is padding.

    Returns:
      (poisoned params, the node's index in the stacked node arrays or None).
    """
    if isinstance(space, NasBench201Space):
        return params, None
    slot = space.max_nodes - 2 - (2 if isinstance(space, ChainSpace) else 1)

    def poison(a):
        a = a.copy()
        a[num_random:, slot] = np.nan
        return a

    cells = [dict(cell, nodes=jax.tree_util.tree_map(poison, cell["nodes"]))
             for cell in params["cells"]]
    return dict(params, cells=cells), slot


@pytest.mark.parametrize("shape", [DIGITS, (40, 1), (13,)])
@pytest.mark.parametrize("space_name", SPACES)
def test_shapes_for_every_input_rank(space_name, shape):
    space = jaxnas.spaces.get(space_name)
    model = make_model(space, shape, CLASSES, ModelConfig(width=WIDTH, num_cells=2))
    params = jax.eval_shape(model.init, jax.random.key(0))
    archs = jax.eval_shape(lambda k: space.sample(k, 5), jax.random.key(0))
    x = jax.ShapeDtypeStruct((BATCH,) + shape, jnp.float32)
    population_params = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct((5,) + a.shape, a.dtype), params)
    logits = jax.eval_shape(jax.vmap(model.apply, (0, 0, None)), population_params, archs, x)
    assert logits.shape == (5, BATCH, CLASSES)
    # Every architecture reads and trains the same parameter shapes.
    grads = jax.eval_shape(
        jax.vmap(jax.grad(lambda p, a, x: model.apply(p, a, x).sum()), (0, 0, None)),
        population_params, archs, x)
    chex.assert_trees_all_equal_shapes_and_dtypes(grads, population_params)
    n, k = space.max_nodes, space.num_ops
    relaxed = jax.eval_shape(model.apply_relaxed, params, jax.ShapeDtypeStruct((n, n), jnp.float32),
                             jax.ShapeDtypeStruct((n, k), jnp.float32), x)
    assert relaxed.shape == (BATCH, CLASSES)
    assert model.executed_flops > 0


@pytest.mark.parametrize("space_name", SPACES)
def test_one_compile_vmap_relaxation_and_gradients(space_name):
    space, model, archs, params, x, apply_jit, traces = _setup(space_name)
    num_random = 3
    loop = np.stack([apply_jit(_member(params, i), archs[i], x) for i in range(len(archs))])
    assert len(traces) == 1, "every architecture of a space must share one compilation"

    poisoned, slot = _poison_padding_slot(space, params, num_random)
    k = space.num_ops
    # Clean and poisoned copies as one population of 2P: one compiled forward and backward.
    both = jax.tree_util.tree_map(lambda a, b: np.concatenate([a, b]), params, poisoned)
    archs2 = stack(unstack(archs) * 2)

    def logits_and_grads(apply, *args):
        """Logits and the gradients of sum(logits**2) wrt every argument, in one pass."""
        logits, vjp = jax.vjp(apply, *args)
        return logits, vjp(2 * logits)

    @jax.jit
    def checks(params, both, archs, archs2):
        hard, (grads,) = jax.vmap(lambda p, a: logits_and_grads(
            lambda p: model.apply(p, a, x), p))(both, archs2)
        soft = jax.vmap(model.apply_relaxed, (0, 0, 0, None))(
            params, archs.adj.astype(jnp.float32), jax.nn.one_hot(archs.ops, k), x)
        train = jax.vmap(lambda p, a: model.apply_train(p, a, x)[0])(params, archs)
        return hard, soft, train, grads

    hard, soft, train, grads = checks(params, both, archs, archs2)
    count = len(archs)
    np.testing.assert_allclose(hard[:count], loop, rtol=1e-5, atol=1e-5)
    # The relaxation runs in training mode (batch norm on the batch's statistics).
    np.testing.assert_allclose(soft, train, rtol=1e-5, atol=1e-5)
    # NaN parameters in a padding slot change neither the logits nor any other gradient.
    np.testing.assert_allclose(hard[count:], loop, rtol=1e-5, atol=1e-5)
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        leaf = np.asarray(leaf)
        assert np.isfinite(leaf[:count]).all(), jax.tree_util.keystr(path)
        if slot is not None and "nodes" in jax.tree_util.keystr(path):
            assert (leaf[num_random:count, slot] == 0).all(), "padding nodes get no gradient"
            leaf = np.delete(leaf[count + num_random:], slot, axis=1)
        assert np.isfinite(leaf).all(), jax.tree_util.keystr(path)
    clean = jax.tree_util.tree_leaves(grads["cells"])
    assert all(np.abs(leaf[:count]).sum() > 0 for leaf in clean), "every cell parameter learns"

    if space_name == "mlp":  # eager runs the unrolled path op by op (a scan compiles anyway)
        eager = model.apply(_member(params, 0), archs[0], x)
        np.testing.assert_allclose(eager, loop[0], rtol=1e-5, atol=1e-5)


def test_relaxation_is_differentiable_in_its_weights():
    space, model, archs, params, x, _, _ = _setup("nasbench201")
    n, k = space.max_nodes, space.num_ops

    def loss(adj_weights, op_weights):
        return jnp.sum(model.apply_relaxed(_member(params, 0), adj_weights, op_weights, x) ** 2)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(
        jnp.asarray(archs.adj[0], jnp.float32), jnp.full((n, k), 1.0 / k))
    assert all(np.isfinite(g).all() for g in grads)
    assert (np.abs(grads[1][1:-1]).max(axis=1) > 0).all(), "every edge's op weights learn"


@pytest.mark.parametrize("space_name", ["nasbench101", "mlp", "dag"])
def test_dead_and_padding_nodes_do_not_change_the_output(space_name):
    space, model, archs, params, x, apply_jit, _ = _setup(space_name)
    n = space.max_nodes
    base = _arch(n, [(0, 1), (1, n - 1)], {1: 0})
    # Node 2 feeds the output but is unreachable from the input; node 3 reads node 1 but
    # reaches nothing. NAS-Bench-101 pruning removes both.
    dead = _arch(n, [(0, 1), (1, n - 1), (2, n - 1), (1, 3)], {1: 0, 2: 1 % space.num_ops, 3: 0})
    pruned = prune(Arch(adj=jnp.asarray(dead.adj), ops=jnp.asarray(dead.ops)))
    np.testing.assert_array_equal(pruned.adj, base.adj)
    np.testing.assert_array_equal(pruned.ops, base.ops)
    member = _member(params, 0)
    np.testing.assert_allclose(apply_jit(member, dead, x), apply_jit(member, base, x),
                               rtol=1e-6, atol=1e-6)
    assert model.num_params(dead) == model.num_params(base)
    assert model.flops(dead) == model.flops(base)


def _hand_counts(space_name):
    """(arch, useful params, useful FLOPs) of a small hand-made architecture, counted by
    hand on digits (64 positions or 64 features) at width w."""
    w, c, p = WIDTH, CLASSES, 64
    space = jaxnas.spaces.get(space_name)
    if space_name == "dag":
        arch = _arch(8, [(0, 1), (1, 7), (0, 2), (2, 7), (0, 3)], {1: 0, 2: 2, 3: 3})
        # stem 64 -> w, node 1 dense w -> w, node 2 skip, node 3 dead, head w -> c
        params = (64 * w + w) + (w * w + w) + (w * c + c)
        return arch, params, 2 * (64 * w + w * w + w * c)
    if space_name == "nasbench101":
        arch = _arch(7, [(0, 1), (1, 2), (2, 6), (0, 3), (3, 6)], {1: 0, 2: 2, 3: 1})
        params = (9 * w + 2 * w) + (9 * w * w + 2 * w) + (w * w + 2 * w) + (w * c + c)
        return arch, params, 2 * p * (9 * w + 9 * w * w + w * w) + 2 * w * c
    if space_name == "conv":
        arch = _arch(6, [(0, 1), (1, 5), (0, 2), (2, 5)], {1: 1, 2: 2})
        # stem conv3x3 1 -> w + norm, node 1 conv5x5 w -> w + norm, node 2 max pool, head
        params = (9 * w + 2 * w) + (25 * w * w + 2 * w) + (w * c + c)
        return arch, params, 2 * p * (9 * w + 25 * w * w) + 2 * w * c
    if space_name == "nasbench201":
        ops = ["nor_conv_3x3", "skip_connect", "none", "nor_conv_1x1", "avg_pool_3x3",
               "nor_conv_3x3"]
        arch = unstack(space._build_host(np.array([[space.op_id(o) for o in ops]])))[0]
        params = (9 * w + 2 * w) + 2 * (9 * w * w + 2 * w) + (w * w + 2 * w) + (w * c + c)
        return arch, params, 2 * p * (9 * w + 2 * 9 * w * w + w * w) + 2 * w * c
    hidden = np.array([space.op_id("dense32-relu"), space.op_id("dense128-gelu"), PAD, PAD])
    arch = Arch(**{k: np.asarray(v) for k, v in vars(chain_arch(jnp.asarray(hidden))).items()})
    params = (64 * 32 + 32) + (32 * 128 + 128) + (128 * c + c)
    return arch, params, 2 * (64 * 32 + 32 * 128 + 128 * c)


def _full(space) -> Arch:
    """An architecture that uses every padded slot with the space's costliest op."""
    n = space.max_nodes
    if isinstance(space, NasBench201Space):
        op = space.op_id("nor_conv_3x3")
        return unstack(space._build_host(np.full((1, 6), op, np.int32)))[0]
    if isinstance(space, ChainSpace):
        hidden = np.full(space.max_layers, space.op_id("dense128-relu"), np.int32)
        return Arch(**{k: np.asarray(v) for k, v in vars(chain_arch(jnp.asarray(hidden))).items()})
    costliest = max(range(space.num_ops), key=lambda op: parse_op(space.op_names[op]).kernel)
    return _arch(n, [(i, i + 1) for i in range(n - 1)],
                 dict.fromkeys(range(1, n - 1), costliest))


@pytest.mark.parametrize("space_name", SPACES)
def test_counts_match_hand_counts(space_name):
    space, model = _setup(space_name)[:2]
    arch, params, flops = _hand_counts(space_name)
    space.validate(arch)
    population = stack([arch, _full(space)])
    counts = np.asarray(model.num_params(population))
    assert counts.shape == (2,) and counts[0] == params
    assert math.isclose(float(model.flops(arch)), flops)
    # Every padded slot doing the costliest op executes no wasted matmul.
    assert math.isclose(float(model.flops(population)[1]), model.executed_flops, rel_tol=1e-6)


def test_counts_take_any_batch_shape():
    space, model = _setup("dag")[:2]
    arch = _hand_counts("dag")[0]
    population = stack([arch, _full(space)])  # shapes as in test_counts_match_hand_counts
    nested = Arch(adj=population.adj[None], ops=population.ops[None])
    assert model.num_params(arch).shape == ()
    assert model.flops(nested).shape == (1, 2)
    np.testing.assert_array_equal(model.num_params(nested)[0], model.num_params(population))


def test_init_and_cells_with_their_own_weights():
    space = jaxnas.spaces.get("dag")
    one = make_model(space, (13,), CLASSES, ModelConfig(width=WIDTH))
    two = make_model(space, (13,), CLASSES, ModelConfig(width=WIDTH, num_cells=2))
    arch, _, _ = _hand_counts("dag")
    node = WIDTH * WIDTH + WIDTH
    assert two.num_params(arch) - one.num_params(arch) == node
    params = jax.vmap(two.init)(jax.random.split(jax.random.key(0), 2))
    first, second = params["cells"]
    assert first["nodes"]["kernel"].shape == (2, 6, 1, WIDTH, WIDTH)
    assert not np.allclose(first["nodes"]["kernel"], second["nodes"]["kernel"])
    assert not np.allclose(params["head"]["kernel"][0], params["head"]["kernel"][1])
    # An unnormalised dense cell starts He-normal with zero biases ("auto" -> "he").
    assert (first["nodes"]["bias"] == 0).all()
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(params))


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="unknown op"):
        parse_op("conv3x3-swish")
    with pytest.raises(ValueError, match="odd"):
        parse_op("conv2x2-bn-relu")
    mixed = jaxnas.spaces.dag(ops=("conv3x3-bn-relu", "dense64-relu"))
    with pytest.raises(ValueError, match="own width"):
        make_model(mixed, DIGITS, CLASSES)
    with pytest.raises(ValueError, match="node_loop"):
        ModelConfig(node_loop="vectorised")
    model = _setup("dag")[1]
    params = _member(_host_params(model, 1), 0)
    arch = _arch(8, [(0, 7)], {})
    with pytest.raises(ValueError, match="x must have shape"):
        model.apply(params, arch, jnp.zeros((2, 64)))


def test_user_ops_run_in_every_data_rank():
    ops = ("conv5-bn-relu", "max_pool_3x3", "avgpool3", "dense-gelu", "dense-linear", "identity")
    space = jaxnas.spaces.dag(ops=ops, max_nodes=5)
    arch = _arch(5, [(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)], {1: 0, 2: 1, 3: 3})
    for shape in [(8, 8, 2), (12, 3), (10,)]:
        model = make_model(space, shape, CLASSES, ModelConfig(width=WIDTH))
        logits = jax.jit(model.apply)(_member(_host_params(model, 1), 0), arch,
                                      np.ones((2,) + shape, np.float32))
        assert logits.shape == (2, CLASSES) and np.isfinite(logits).all()


@pytest.mark.parametrize("space_name", SPACES)
def test_compact_form_computes_the_same_function(space_name):
    """Folding skips (with multiplicities) and dropping zero, dead and padding nodes
    changes nothing but the number of slots the program runs."""
    space, model, archs, params, x, apply_jit, _ = _setup(space_name)
    extra = space.sample(jax.random.key(3), 16).to_numpy()
    archs = stack(unstack(archs) + unstack(extra))
    params = _host_params(model, len(archs.ops))
    counts = np.asarray(jax.vmap(functools.partial(compute_nodes, model.layout))(archs))
    padded = jax.vmap(apply_jit, (0, 0, None))(params, archs, x)
    for size in sorted({int(counts.max()) + 2, space.max_nodes}):
        compacted = jax.vmap(functools.partial(compact, model.layout, size=size))(archs)
        assert compacted.adj.shape == (len(counts), size, size)
        np.testing.assert_allclose(jax.vmap(model.apply, (0, 0, None))(params, compacted, x),
                                   padded, rtol=1e-5, atol=1e-5)
    # A bucket of all the inner slots executes what the padded program does.
    assert executed_flops(model.layout, space.max_nodes - 2) == model.executed_flops
    assert executed_flops(model.layout, 1) <= model.executed_flops


@pytest.mark.parametrize("space_name", SPACES)
def test_branching_computes_the_same_function_and_gradients(space_name):
    """``apply(..., branch=True)`` (each node runs its own op under ``lax.switch``, the
    CPU fast path) equals the padded select program, for Arch and Compact forms."""
    space, model, archs, params, x, _, _ = _setup(space_name)
    archs = stack(unstack(archs) + unstack(space.sample(jax.random.key(4), 6).to_numpy()))
    params = _host_params(model, len(archs.ops))
    labels = np.arange(BATCH) % CLASSES

    def loss(params, arch, branch):
        logits = model.apply(params, arch, x, branch=branch)
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1).mean()

    value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=2)
    size = int(np.asarray(jax.vmap(functools.partial(compute_nodes, model.layout))(archs)).max())
    compacted = jax.vmap(functools.partial(compact, model.layout, size=size + 2))(archs)
    for form in (archs, compacted):
        for index in range(len(archs.ops)):
            member, arch = _member(params, index), _member(form, index)
            padded, padded_grads = value_and_grad(member, arch, False)
            branched, branched_grads = value_and_grad(member, arch, True)
            np.testing.assert_allclose(branched, padded, rtol=1e-5)
            chex.assert_trees_all_close(branched_grads, padded_grads, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("shape", "taps"), [((3, 11, 4), 3), ((3, 11, 4), 5),
                                              ((3, 8, 8, 4), 9), ((3, 7, 5, 4), 25),
                                              ((2, 4, 5, 3, 4), 27), ((3, 6, 4), 1)])
def test_native_convolution_equals_im2col(shape, taps):
    """``native_conv`` (XLA's convolution with its hand-written gradient, the branching
    path's) computes ``conv``'s function and gradients, for sequences, images and
    volumes, square and not."""
    x = jax.random.normal(jax.random.key(0), shape)
    kernel = jax.random.normal(jax.random.key(1), (taps, shape[-1], 5))
    weights = jax.random.normal(jax.random.key(2), shape[:-1] + (5,))

    def loss(fn, x, kernel):
        return jnp.sum(jnp.tanh(fn(x, kernel)) * weights)

    expected, expected_grads = jax.value_and_grad(functools.partial(loss, conv), (0, 1))(
        x, kernel)
    got, grads = jax.jit(jax.value_and_grad(functools.partial(loss, native_conv), (0, 1)))(
        x, kernel)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    for a, b in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


NORM_SPACES = [name for name in SPACES
               if any(parse_op(op).norm for op in jaxnas.spaces.get(name).op_names)]


@pytest.mark.parametrize("space_name", NORM_SPACES)
def test_batch_norm_statistics_move_only_on_live_normalising_nodes(space_name):
    """``apply_train``'s running statistics: the select, branching and compacted programs
    agree, the stem's move, and a node's move exactly when it is live and its op
    normalises (dead, padding, pool, skip and zero nodes keep theirs bit for bit)."""
    space, model, archs, params, x, _, _ = _setup(space_name)
    archs = stack(unstack(archs) + unstack(space.sample(jax.random.key(5), 4).to_numpy()))
    params = _host_params(model, len(archs.ops))
    layout = model.layout
    assert layout.config.norm == "batch", "conv spaces default to batch norm"
    size = int(np.asarray(jax.vmap(functools.partial(compute_nodes, layout))(archs)).max())
    compacted = jax.vmap(functools.partial(compact, layout, size=size + 2))(archs)
    train = jax.jit(model.apply_train, static_argnames="branch")
    first, n = layout.first_node, layout.num_nodes
    for index in range(len(archs.ops)):
        member, arch = _member(params, index), _member(archs, index)
        logits, stats = train(member, arch, x)
        for form, branch in ((arch, True), (_member(compacted, index), False),
                             (_member(compacted, index), True)):
            other_logits, other = train(member, form, x, branch=branch)
            np.testing.assert_allclose(other_logits, logits, rtol=1e-5, atol=1e-5)
            chex.assert_trees_all_close(other, stats, rtol=1e-5, atol=1e-6)
        for key in ("mean", "var"):
            assert (np.asarray(stats["stem"][key]) != member["stem"][key]).all()
        live = np.asarray(jax.jit(live_nodes)(arch.adj != 0))
        ops = np.asarray(arch.ops)
        moves = np.array([bool(live[i]) and ops[i] >= 0 and layout.specs[ops[i]].norm
                          for i in range(first, n - 1)])
        for cell, old in zip(stats["cells"], member["cells"], strict=True):
            for key in ("mean", "var"):
                new, before = np.asarray(cell["nodes"][key]), old["nodes"][key]
                np.testing.assert_array_equal(new[~moves], before[~moves])
                assert (new[moves] != before[moves]).all()


def test_compaction_folds_skips_with_multiplicity():
    space = jaxnas.spaces.dag(max_nodes=6)  # ops: dense-relu, dense-tanh, skip, zero
    model = make_model(space, DIGITS, CLASSES, ModelConfig(width=WIDTH))
    # 0 -> 1 (skip) -> 2 (relu) -> 5; 0 -> 2 directly too; 0 -> 3 (zero) -> 4 (tanh) -> 5.
    arch = _arch(6, [(0, 1), (1, 2), (0, 2), (2, 5), (0, 3), (3, 4), (4, 5)],
                 {1: 2, 2: 0, 3: 3, 4: 1})
    assert int(compute_nodes(model.layout, arch)) == 2
    folded = compact(model.layout, arch, 4)
    # Slots: input, node 2, node 4 (fed by nothing: tanh of its bias), output.
    np.testing.assert_array_equal(folded.node, [0, 2, 4, 5])
    np.testing.assert_array_equal(folded.ops, [-1, 0, 1, -1])
    expected = np.zeros((4, 4), np.float32)
    expected[0, 1] = 2  # x through the skip and x directly
    expected[1, 3] = expected[2, 3] = 1
    np.testing.assert_array_equal(folded.adj, expected)
