"""jaxnas's padded interpreter against its PyTorch twins (benchmarks/twin.py).

For random architectures of every built-in space on digits- and mnist1d-shaped
inputs, between jaxnas, ``TorchPadded`` and the seed-style ``SeedModule`` (PyTorch's
own ``nn.BatchNorm*d``): equal evaluation-mode logits for the same weights and
running statistics (1e-5), equal training losses over 20 SGD steps on the same
minibatches (1e-4) and equal running statistics after them (1e-5), with batch norm
(the conv spaces' default) and with layer norm; ``SeedModule``'s parameter count is
``num_params``.
"""

import functools

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="the PyTorch twin needs torch (pip install 'jaxnas[benchmarks]')")

import chex  # noqa: E402
import jax  # noqa: E402
import optax  # noqa: E402

import jaxnas.spaces  # noqa: E402
from benchmarks import twin  # noqa: E402
from jaxnas import export  # noqa: E402
from jaxnas.arch._encoding import unstack  # noqa: E402
from jaxnas.nn import ModelConfig, make_model, with_stats  # noqa: E402

SHAPES = {"digits": (8, 8, 1), "mnist1d": (40, 1)}
NUM_CLASSES = 5
POPULATION = 2
STEPS = 20
BATCH = 8
LR = 0.05


@functools.cache
def _population(space_name):
    """A few random architectures, sampled once per space (sampling compiles a loop)."""
    space = jaxnas.spaces.get(space_name)
    return space, space.sample(jax.random.key(7), POPULATION)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_params(model, rng):
    """Population params drawn on the host (no init to compile): kernels scaled by their
    fan-in, and random biases, norm scales and shifts too."""

    def draw(path, s):
        name = jax.tree_util.keystr(path)
        if "var" in name:  # a running variance is positive
            return rng.uniform(0.5, 2.0, size=(POPULATION,) + s.shape).astype(np.float32)
        scale = 0.5
        if "kernel" in name:  # (..., taps, in, out) or (in, out)
            scale = 1 / np.sqrt(s.shape[-2] * (s.shape[-3] if len(s.shape) > 2 else 1))
        return (scale * rng.normal(size=(POPULATION,) + s.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, jax.eval_shape(model.init, jax.random.key(0)))


def _jax_run(model, params, population, x, y, indices):
    """One compiled program: the evaluation-mode logits on the first minibatch, the
    training losses of STEPS SGD steps (vmapped over the population), the parameters
    after them (with their running statistics) and the useful parameter counts."""

    def loss_fn(p, arch, xb, yb):
        logits, stats = model.apply_train(p, arch, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), stats

    opt = optax.sgd(LR)

    @jax.jit
    def run(params, population, x, y, indices):
        first = jax.vmap(model.apply, (0, 0, None))(params, population, x[indices[0]])

        def step(carry, batch):
            params, state = carry
            (loss, stats), grads = jax.vmap(jax.value_and_grad(loss_fn, has_aux=True),
                                            (0, 0, None, None))(
                params, population, x[batch], y[batch])
            updates, state = jax.vmap(opt.update)(grads, state)
            return (with_stats(optax.apply_updates(params, updates), stats), state), loss

        (params, _), losses = jax.lax.scan(step, (params, jax.vmap(opt.init)(params)), indices)
        return first, losses, params, model.num_params(population)

    return run(params, population, x, y, indices)


def _torch_losses(module, forward, x, y, indices, optimizer=torch.optim.SGD, lr=LR):
    opt = optimizer(module.parameters(), lr=lr)
    losses = []
    for batch in indices:
        loss = torch.nn.functional.cross_entropy(forward(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses)


def _numpy(tensors: dict) -> dict:
    return {name: tensor.numpy() for name, tensor in tensors.items()}


def _stat_names(module):
    return {name: buffer for name, buffer in module.named_buffers()
            if not name.endswith("num_batches_tracked")}


CASES = [(space, shape, "batch") for space in jaxnas.spaces.names() for shape in SHAPES]
# Layer norm: the conv spaces once each (the dense spaces have no norm).
CASES += [(space, "digits", "layer") for space in ("nasbench101", "nasbench201", "conv")]


@pytest.mark.parametrize(("space_name", "shape_name", "norm"), CASES)
def test_jax_and_torch_agree(space_name, shape_name, norm):
    shape = SHAPES[shape_name]
    space, population = _population(space_name)
    # Two cells test the cell stacking; every space stacks cells the same way, so the
    # cheap dense cells on digits-shaped data cover it and the rest compile one cell.
    stacked = space_name in ("mlp", "dag") and shape_name == "digits"
    config = ModelConfig(width=6, num_cells=2 if stacked else 1, norm=norm)
    model = make_model(space, shape, NUM_CLASSES, config)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32,) + shape).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, 32).astype(np.int32)
    indices = twin.minibatch_indices(len(x), STEPS, BATCH, seed=3)

    params = _random_params(model, rng)
    logits, losses, trained, num_params = jax.tree_util.tree_map(
        np.asarray, _jax_run(model, params, population, x, y, indices))
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    for i, arch in enumerate(unstack(population)):
        own = jax.tree_util.tree_map(lambda a, i=i: a[i], params)
        padded = twin.TorchPadded(space, shape, NUM_CLASSES, config, params=own)
        seed = twin.SeedModule(space, arch, shape, NUM_CLASSES, config).load_jax_params(own)
        assert sum(p.numel() for p in seed.parameters()) == num_params[i]
        # float32 parity to 1e-5 of the logits' scale: summation order differs between
        # XLA and torch, and random init can give logits in the hundreds.
        atol = 1e-5 * max(1.0, float(np.abs(logits[i]).max()))
        padded.eval()
        seed.eval()
        with torch.no_grad():
            first = x_t[indices[0]]
            np.testing.assert_allclose(padded(arch, first).numpy(), logits[i], rtol=1e-5,
                                       atol=atol)
            np.testing.assert_allclose(seed(first).numpy(), logits[i], rtol=1e-5, atol=atol)
        padded.train()
        seed.train()
        for module, forward in ((padded, lambda xb, m=padded, a=arch: m(a, xb)),
                                (seed, seed)):
            np.testing.assert_allclose(_torch_losses(module, forward, x_t, y_t, indices),
                                       losses[:, i], rtol=1e-4, atol=1e-4)
        # The running statistics after training: TorchPadded holds jaxnas's layout, the
        # seed-style module PyTorch's (exported from the trained jaxnas params).
        own_trained = jax.tree_util.tree_map(lambda a, i=i: a[i], trained)
        expected = twin.TorchPadded(space, shape, NUM_CLASSES, config, params=own_trained)
        # chex compares the statistics by name, and a failure names the one that differs.
        chex.assert_trees_all_close(_numpy(_stat_names(padded)), _numpy(_stat_names(expected)),
                                    rtol=1e-5, atol=1e-5)
        exported = twin.SeedModule(space, arch, shape, NUM_CLASSES, config).load_jax_params(
            own_trained)
        assert set(_stat_names(exported)) == set(_stat_names(seed))
        assert bool(_stat_names(seed)) == (norm == "batch" and model.layout.spatial)
        chex.assert_trees_all_close(_numpy(_stat_names(seed)), _numpy(_stat_names(exported)),
                                    rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("space_name, shape", [("nasbench201", "digits"), ("conv", "mnist1d"),
                                              ("mlp", "digits")])
def test_export_state_dict_and_program_predict_like_jaxnas(space_name, shape):
    space, population = _population(space_name)
    shape = SHAPES[shape]
    config = ModelConfig(width=4)
    arch = unstack(population)[1]
    model = make_model(space, shape, NUM_CLASSES, config)
    params = jax.tree_util.tree_map(lambda a: a[0], _random_params(model, np.random.default_rng(0)))
    state = export.state_dict(space, arch, params, shape, NUM_CLASSES, config)
    fresh = twin.SeedModule(space, arch, shape, NUM_CLASSES, config)
    fresh.load_state_dict(state)
    fresh.eval()
    x = np.random.default_rng(1).normal(size=(3,) + shape).astype(np.float32)
    mean, std = x.mean(0), x.std(0) + 0.5
    expected = np.asarray(model.apply(params, arch, (x - mean) / std))
    atol = 1e-5 * max(1.0, float(np.abs(expected).max()))
    program = export.torch_program(space, arch, params, shape, NUM_CLASSES, config, mean, std)
    with torch.no_grad():
        np.testing.assert_allclose(fresh(torch.from_numpy((x - mean) / std)).numpy(), expected,
                                   rtol=1e-5, atol=atol)
        np.testing.assert_allclose(program.module()(torch.from_numpy(x)).numpy(), expected,
                                   rtol=1e-5, atol=atol)
        np.testing.assert_allclose(program.module()(torch.from_numpy(x[:1])).numpy(),
                                   expected[:1], rtol=1e-5, atol=atol)


def test_train_seed_style_same_minibatches_for_every_candidate():
    from jaxnas.data import from_arrays

    rng = np.random.default_rng(0)
    data = from_arrays(rng.normal(size=(60, 6)).astype(np.float32), np.arange(60) % 3)
    space = jaxnas.spaces.get("mlp")
    population = space.sample(jax.random.key(0), 2)
    results = twin.train_seed_style(space, population, data, steps=3, batch_size=8, lr=1e-2)
    assert [set(r) for r in results] == [{"train_loss", "val_loss", "val_accuracy",
                                          "num_params"}] * 2
    model = make_model(space, data.input_shape, data.num_classes)
    assert [r["num_params"] for r in results] == list(np.asarray(model.num_params(population)))
    assert twin.minibatch_indices(10, 7, 4).shape == (7, 4)


@pytest.mark.parametrize(("space_name", "shape_name"), [("nasbench201", "digits"),
                                                        ("conv", "digits"),
                                                        ("conv", "mnist1d")])
def test_trainer_trains_like_the_pytorch_loop(space_name, shape_name):
    """``jaxnas.train`` as ``jaxnas search`` runs it on a CPU (one candidate at a time,
    branching nodes, XLA's native convolutions, adam, batch norm) and the seed-style
    PyTorch loop, from the same initial weights (``init_state``) on the same minibatches
    (``batch_indices`` of the state's batch key): equal losses step by step and equal
    validation losses (1e-4)."""
    from jaxnas.data import from_arrays
    from jaxnas.train import TrainConfig, batch_indices, init_state, make_train

    space, population = _population(space_name)
    rng = np.random.default_rng(5)
    data = from_arrays(rng.normal(size=(80,) + SHAPES[shape_name]).astype(np.float32),
                       np.arange(80) % NUM_CLASSES)
    steps = 6
    config = TrainConfig(steps=steps, batch_size=BATCH, learning_rate=0.01, curve_points=steps,
                         model=ModelConfig(width=6))
    state = init_state(jax.random.key(3), space, POPULATION, data, config)
    result = make_train(space, config)(jax.random.key(3), population, data)
    indices = np.array(batch_indices(jax.random.wrap_key_data(state.batch_key[0]), 0, steps,
                                       len(data.y_train), BATCH))
    x = torch.from_numpy(np.array(data.x_train))
    y = torch.from_numpy(data.y_train.astype(np.int64))
    for i, arch in enumerate(unstack(population)):
        own = jax.tree_util.tree_map(lambda a, i=i: np.asarray(a[i]), state.params)
        module = twin.SeedModule(space, arch, data.input_shape, data.num_classes,
                                 config.model).load_jax_params(own)
        losses = _torch_losses(module, module, x, y, indices, torch.optim.Adam, lr=0.01)
        np.testing.assert_allclose(losses, np.asarray(result.train_curve)[i], rtol=1e-4,
                                   atol=1e-4)
        module.eval()
        with torch.no_grad():
            val_loss = torch.nn.functional.cross_entropy(
                module(torch.from_numpy(np.array(data.x_val))),
                torch.from_numpy(data.y_val.astype(np.int64)))
        np.testing.assert_allclose(float(val_loss), float(result.val_loss[i]), rtol=1e-4)
