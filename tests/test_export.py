"""The Flax and ONNX exports against their real consumers: Flax (and optax) in a process
where jaxnas cannot be imported, and onnxruntime.

For every built-in space, with batch norm and random running statistics: the Flax
module's logits equal jaxnas's to 1e-5 and onnxruntime's to 1e-4, at two batch sizes.
A real run directory goes through ``jaxnas export --flax --onnx``; its ``model.py``
predicts like ``jaxnas.load`` and fine-tunes with optax without jaxnas.
"""

import dataclasses
import json
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
from flax import nnx

import jaxnas
from jaxnas import export
from jaxnas.arch import from_json, live_nodes, nb201_from_str, validate
from jaxnas.nn import ModelConfig, OpSpec, make_model, parse_op

pytest.importorskip("torch", reason="the ONNX export goes through torch.onnx")
ort = pytest.importorskip("onnxruntime", reason="the ONNX export is checked by onnxruntime")
pytest.importorskip("onnxscript", reason="the ONNX export needs pip install 'jaxnas[onnx]'")

SPACES = jaxnas.spaces.names()  # at collection: the built-in spaces
NUM_CLASSES = 4
# Per space, an input shape (images with two channels, a sequence, a flattened (5, 3)
# input) and an architecture in which every op (every kind, kernel, width, activation and
# norm of the space's ops, in mlp) is live.
CASES = {
    "nasbench101": ((6, 6, 2), {
        "nodes": ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3",
                  "conv1x1-bn-relu", "conv3x3-bn-relu", "output"],
        "edges": [[0, 1], [0, 2], [1, 3], [2, 3], [3, 4], [0, 5], [2, 6], [4, 6], [5, 6]]}),
    "nasbench201": ((6, 6, 2), "|nor_conv_3x3~0|+|avg_pool_3x3~0|skip_connect~1|+"
                               "|nor_conv_1x1~0|none~1|nor_conv_3x3~2|"),
    "conv": ((12, 2), {
        "nodes": ["input", "conv3-bn-relu", "maxpool3", "conv5-bn-relu", "skip", "output"],
        "edges": [[0, 1], [1, 2], [0, 3], [2, 4], [3, 4], [4, 5], [1, 5]]}),
    "dag": ((5, 3), {
        "nodes": ["input", "dense-relu", "dense-tanh", "skip", "zero", "dense-relu", "pad",
                  "output"],
        "edges": [[0, 1], [0, 2], [1, 3], [2, 3], [1, 4], [3, 5], [4, 5], [2, 7], [5, 7]]}),
    "mlp": ((5, 3), {
        "nodes": ["input", "dense32-relu", "dense64-tanh", "dense128-gelu", "pad", "output"],
        "edges": [[0, 1], [1, 2], [2, 3], [3, 5]]}),
}


def _case(name):
    """The space, input shape and architecture of ``CASES[name]``."""
    space = jaxnas.spaces.get(name)
    shape, arch = CASES[name]
    arch = nb201_from_str(arch) if isinstance(arch, str) else from_json(arch, space.op_names)
    validate(arch, num_ops=len(space.op_names), max_nodes=space.max_nodes)
    live = np.asarray(live_nodes(arch.adj))
    used = [parse_op(space.op_names[op]) for op in np.asarray(arch.ops)[1:-1][live[1:-1]]]
    every = [parse_op(op) for op in space.op_names]
    for field in dataclasses.fields(OpSpec):  # each kind, kernel, width, activation... is live
        assert ({getattr(spec, field.name) for spec in used}
                == {getattr(spec, field.name) for spec in every}), (name, field.name)
    return space, shape, arch


def _random_params(model, rng):
    """Parameters drawn on the host: kernels scaled by their fan-in, and random biases,
    norm scales, shifts and running statistics."""

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "var" in name:
            return rng.uniform(0.5, 2.0, size=leaf.shape).astype(np.float32)
        scale = 1 / np.sqrt(np.prod(leaf.shape[-3:-1])) if "kernel" in name else 0.5
        return (scale * rng.normal(size=leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, jax.eval_shape(model.init, jax.random.key(0)))


def _onnx_logits(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"x": x})[0]


def test_flax_and_onnx_predict_like_jaxnas_in_every_space():
    assert set(CASES) == set(SPACES), "give each built-in space a case"
    rng = np.random.default_rng(0)
    logits = nnx.jit(lambda net, x: net(x))
    for name in SPACES:
        space, shape, arch = _case(name)
        config = ModelConfig(width=4, norm="batch")
        model = make_model(space, shape, NUM_CLASSES, config)
        params = _random_params(model, rng)
        mean = rng.normal(size=shape).astype(np.float32)
        std = rng.uniform(0.5, 2.0, size=shape).astype(np.float32)
        x = rng.normal(size=(5,) + shape).astype(np.float32)
        expected = np.asarray(model.apply(params, arch, (x - mean) / std))
        scale = max(1.0, float(np.abs(expected).max()))
        net = export.to_flax(space, arch, params, shape, NUM_CLASSES, config, mean, std)
        onnx = export.onnx_model(space, arch, params, shape, NUM_CLASSES, config, mean, std)
        assert onnx.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        for batch in (5, 2):
            chex.assert_trees_all_close(np.asarray(logits(net, x[:batch])), expected[:batch],
                                        rtol=1e-5, atol=1e-5 * scale)
            chex.assert_trees_all_close(_onnx_logits(onnx, x[:batch]), expected[:batch],
                                        rtol=1e-4, atol=1e-4 * scale)


def test_flax_export_with_layer_norm():
    space, shape, arch = _case("nasbench201")
    config = ModelConfig(width=4, norm="layer")
    model = make_model(space, shape, NUM_CLASSES, config)
    params = _random_params(model, np.random.default_rng(1))
    x = np.random.default_rng(2).normal(size=(3,) + shape).astype(np.float32)
    net = export.to_flax(space, arch, params, shape, NUM_CLASSES, config)
    chex.assert_trees_all_close(np.asarray(net(x)), np.asarray(model.apply(params, arch, x)),
                                rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory):
    """A tiny finished search of the conv space on digits (batch norm)."""
    out = tmp_path_factory.mktemp("runs") / "conv"
    jaxnas.search(space="conv", strategy="random", data="digits", budget=2, seed=0, out=out,
                  population=2, steps=5, final_steps=5, batch_size=16, width=4)
    return out


# Runs with `python -I` (no PYTHONPATH, no user site) and without the editable install's
# finder of jaxnas: plain jax, flax and optax.
_WITHOUT_JAXNAS = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in str(f)]
try:
    import jaxnas
except ModuleNotFoundError:
    pass
else:
    raise SystemExit(f"jaxnas was importable from {jaxnas.__file__}")
"""

_FLAX_USER = _WITHOUT_JAXNAS + """
import dataclasses
import json
import jax
import numpy as np
import optax
from flax import nnx
sys.path.insert(0, sys.argv[1])
import model

net = model.load()
x, y = np.load(sys.argv[2]), np.load(sys.argv[3])
np.save(sys.argv[4], np.asarray(net(x)))

net.train()
optimizer = nnx.Optimizer(net, optax.adam(0.05), wrt=nnx.Param)

@nnx.jit
def step(net, optimizer, x, y):
    def loss_fn(net):
        return optax.softmax_cross_entropy_with_integer_labels(net(x), y).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(net)
    optimizer.update(net, grads)
    return loss

losses = [float(step(net, optimizer, x, y)) for _ in range(20)]
print(json.dumps(losses))
"""


def test_cli_exports_a_run_to_flax_and_onnx(conv_run, tmp_path, cli_main):
    flax_dir, onnx_file = tmp_path / "flax", tmp_path / "best.onnx"
    result = cli_main("export", conv_run, "--flax", flax_dir, "--onnx", onnx_file)
    assert result.returncode == 0, result.stderr
    assert "ONNX model" in result.stdout and "Flax NNX module" in result.stdout
    assert sorted(p.name for p in flax_dir.iterdir()) == ["model.py", "weights.msgpack"]
    predictor = jaxnas.load(conv_run)
    digits = jaxnas.data.load("digits", seed=0)
    raw = (digits.x_test[:64] * predictor.std + predictor.mean).astype(np.float32)
    expected = predictor.logits(raw)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    for batch in (64, 3):
        chex.assert_trees_all_close(session.run(["logits"], {"x": raw[:batch]})[0],
                                    expected[:batch], rtol=1e-4, atol=1e-4)
    np.save(tmp_path / "x.npy", raw)
    np.save(tmp_path / "y.npy", digits.y_test[:64].astype(np.int32))
    run = subprocess.run([sys.executable, "-I", "-c", _FLAX_USER, str(flax_dir),
                          str(tmp_path / "x.npy"), str(tmp_path / "y.npy"),
                          str(tmp_path / "logits.npy")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    chex.assert_trees_all_close(np.load(tmp_path / "logits.npy"), expected, rtol=1e-5,
                                atol=1e-5)
    losses = json.loads(run.stdout.splitlines()[-1])
    assert losses[-1] < 0.95 * losses[0], losses


def test_export_errors_are_one_line_and_write_nothing(conv_run, tmp_path, cli_main,
                                                      monkeypatch):
    target = tmp_path / "best.onnx"
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # the onnx extra is not installed
    result = cli_main("export", conv_run, "--onnx", target, "--flax", tmp_path / "flax")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "jaxnas: error: exporting to ONNX needs torch, onnx and onnxscript "
        "(pip install 'jaxnas[onnx]')"]
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    (tmp_path / "taken").write_text("")
    result = cli_main("export", conv_run, "--flax", tmp_path / "taken")
    assert result.returncode == 2 and "not a directory" in result.stderr
    result = cli_main("export", conv_run)
    assert result.returncode == 2 and "--onnx FILE" in result.stderr
