"""Training-free (zero-cost) proxies of a population of architectures at initialisation.

Every proxy scores a whole population in one vmapped, jittable call: ``proxy(key, model,
archs, x, y) -> (P,)`` float32, higher is better. ``key`` is split into one init key
per candidate (``jax.random.split(key, P)``), so candidate ``p`` always gets the same
params whichever proxy is asked, and ``compute_proxies`` (all five from one init per
candidate) agrees with the single-proxy functions. Non-finite scores (padding,
architectures whose output does not depend on their input, overflow) become -inf.

Batch norm (``ModelConfig(norm="batch")``): ``naswot``, ``grad_norm``, ``snip`` and
``jacob_cov`` run the network in training mode, normalising with the minibatch's
statistics, as the published PyTorch implementations score a network in ``train()``
mode. ``synflow`` runs in evaluation mode on the initial running statistics (mean 0,
variance 1), which leaves every activation unnormalised: the zero-cost proxies'
reference code also scores synflow with batch norm removed, since the statistics of
an all-ones input are degenerate. Running statistics are not parameters: they count
in no proxy's sum.

Proxies (one minibatch x (B, *input_shape), y (B,)):

* ``synflow`` (Tanaka et al. 2020): params replaced by their absolute values, input all
  ones (one example), R = sum of the logits, S = sum |theta * dR/dtheta|. Computed in
  float32 and ALWAYS returned as log(S) (monotone, so the ranking is S's; it keeps deep
  or wide nets from overflowing the returned value; an S that itself overflows is
  non-finite and becomes -inf). An architecture with no input-output path has S = 0
  and scores -inf.
* ``naswot`` (Mellor et al. 2021): binary codes c (B, U) with c = (value > 0) over the
  stem output and the output of every node of every cell (the interpreter does not
  expose each ReLU, so these node outputs stand for the units: in relu-conv-norm cells
  a node output's sign pattern is exactly the next ReLU's activation pattern; dense
  nodes' outputs are post-activation). Dead and padding nodes output zeros, i.e.
  constant codes. K_H = c c^T + (1-c)(1-c)^T = U - Hamming distance; score =
  log|det K_H| (slogdet). K_H is singular (-inf) when U is too small for B.
* ``grad_norm``: the L2 norm of d(mean cross-entropy)/d(all params).
* ``snip``: sum |theta * dL/dtheta| with the same loss.
* ``jacob_cov`` (Mellor et al. 2020, v1): J (B, F) = d(sum of logits)/dx per example,
  flattened; C = correlation matrix of J's rows (B, B) with eigenvalues e (clipped at
  0); score = -sum(log(e + 1e-5) + 1 / (e + 1e-5)). A constant row of J (no input
  dependence on that example) gets a zero row in C instead of NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.arch import Arch
from jaxnas.nn._layout import ModelConfig
from jaxnas.nn._model import Model, make_model
from jaxnas.nn._model import node_values as _model_node_values
from jaxnas.nn._params import STAT_KEYS, Params

PROXIES = ("synflow", "naswot", "grad_norm", "snip", "jacob_cov")
_EPS = 1e-5


def _finite(score: jax.Array) -> jax.Array:
    score = jnp.asarray(score, jnp.float32)
    return jnp.where(jnp.isfinite(score), score, -jnp.inf)


def _tree_sum(tree) -> jax.Array:
    return sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(tree))


def _loss(model: Model, params: Params, arch: Arch, x: jax.Array, y: jax.Array) -> jax.Array:
    logits, _ = model.apply_train(params, arch, x)
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


# --- one candidate: (model, params, arch (one), x, y) -> () -------------------------------

def _synflow_one(model, params, arch, x, y):
    del y
    abs_params = jax.tree_util.tree_map(jnp.abs, params)
    ones = jnp.ones((1,) + x.shape[1:], jnp.float32)
    grads = jax.grad(lambda p: jnp.sum(model.apply(p, arch, ones)))(abs_params)

    def saliency(path, t, g):  # running statistics are not parameters
        return 0.0 if getattr(path[-1], "key", None) in STAT_KEYS else jnp.abs(t * g)

    return jnp.log(_tree_sum(jax.tree_util.tree_map_with_path(saliency, abs_params, grads)))


def _grads(model, params, arch, x, y):
    return jax.grad(lambda p: _loss(model, p, arch, x, y))(params)


def _grad_norm_one(model, params, arch, x, y):
    grads = _grads(model, params, arch, x, y)
    return jnp.sqrt(_tree_sum(jax.tree_util.tree_map(jnp.square, grads)))


def _snip_one(model, params, arch, x, y):
    grads = _grads(model, params, arch, x, y)
    return _tree_sum(jax.tree_util.tree_map(lambda t, g: jnp.abs(t * g), params, grads))


def _jacob_cov_one(model, params, arch, x, y):
    del y
    jac = jax.grad(lambda xs: jnp.sum(model.apply_train(params, arch, xs)[0]))(x)
    jac = jac.reshape(x.shape[0], -1)
    centred = jac - jac.mean(axis=1, keepdims=True)
    # A constant Jacobian row (e.g. every unit dead on that example) has no correlation:
    # its row of C is zero rather than NaN, so the score is finite and very low.
    norms = jnp.maximum(jnp.sqrt(jnp.sum(centred * centred, axis=1)), 1e-12)
    unit = centred / norms[:, None]
    corr = unit @ unit.T
    eig = jnp.maximum(jnp.linalg.eigvalsh(corr), 0.0)  # PSD: negatives are rounding
    return -jnp.sum(jnp.log(eig + _EPS) + 1.0 / (eig + _EPS))


def node_values(model: Model, params: Params, arch: Arch,
                x: jax.Array) -> tuple[list[jax.Array], jax.Array]:
    """Every hidden value of one architecture and its logits (``jaxnas.nn.node_values``)."""
    return _model_node_values(model.layout, params, arch, x)


def naswot_kernel(codes: jax.Array) -> jax.Array:
    """K_H = N_units - Hamming distance of binary codes (B, U) -> (B, B) float32."""
    c = codes.astype(jnp.float32)
    return c @ c.T + (1.0 - c) @ (1.0 - c).T


def naswot_codes(model: Model, params: Params, arch: Arch, x: jax.Array) -> jax.Array:
    """The binary codes (B, U) NASWOT uses: (value > 0) of ``node_values``, flattened."""
    values, _ = node_values(model, params, arch, x)
    return jnp.concatenate([(v > 0).reshape(x.shape[0], -1) for v in values], axis=1)


def _naswot_one(model, params, arch, x, y):
    del y
    _, logdet = jnp.linalg.slogdet(naswot_kernel(naswot_codes(model, params, arch, x)))
    return logdet


_ONE: dict[str, Callable] = {
    "synflow": _synflow_one,
    "naswot": _naswot_one,
    "grad_norm": _grad_norm_one,
    "snip": _snip_one,
    "jacob_cov": _jacob_cov_one,
}


def _population(names: tuple[str, ...], key: jax.Array, model: Model, archs: Arch,
                x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
    pop = archs.ops.shape[0]
    params = jax.vmap(model.init)(jax.random.split(key, pop))
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.int32)

    def one(p, arch):
        return {name: _ONE[name](model, p, arch, x, y) for name in names}

    scores = jax.vmap(one)(params, archs)
    return {name: _finite(scores[name]) for name in names}


def compute_proxies(key: jax.Array, model: Model, archs: Arch, x: jax.Array,
                    y: jax.Array) -> dict[str, jax.Array]:
    """All five proxies of a population from one init per candidate.

    Args:
      key: PRNG key, split into P init keys.
      model: from ``make_model``.
      archs: population, leading axis P.
      x: (B, *input_shape) float32 minibatch.
      y: (B,) int labels.

    Returns:
      {name: (P,) float32} for ``PROXIES``; non-finite scores are -inf.
    """
    return _population(PROXIES, key, model, archs, x, y)


def _make_proxy(name: str):
    def proxy(key: jax.Array, model: Model, archs: Arch, x: jax.Array,
              y: jax.Array) -> jax.Array:
        return _population((name,), key, model, archs, x, y)[name]

    proxy.__name__ = name
    proxy.__doc__ = (f"The {name} proxy of a population (see the module docstring).\n\n"
                     "Args: key (split into P init keys), model, archs (leading axis P),\n"
                     "x (B, *input_shape), y (B,). Returns (P,) float32, -inf if non-finite.")
    return proxy


synflow = _make_proxy("synflow")
naswot = _make_proxy("naswot")
grad_norm = _make_proxy("grad_norm")
snip = _make_proxy("snip")
jacob_cov = _make_proxy("jacob_cov")


def make_score_fn(space, data, proxy: str = "naswot", batch_size: int = 64,
                  model_config: ModelConfig = ModelConfig(width=16),  # noqa: B008 (frozen)
                  ) -> Callable[[jax.Array, Arch], jax.Array]:
    """A jittable ``score_fn(key, archs (P,)) -> (P,)`` for ``strategies.zero_cost``.

    Args:
      space: the search space.
      data: a ``jaxnas.data.Dataset``; the first ``batch_size`` training examples are
        the fixed minibatch.
      proxy: one of ``PROXIES``.
      batch_size: B.
      model_config: the scored networks (the ones the search trains, for a proxy
        that ranks what will be trained).

    Returns:
      score_fn; higher is better, non-finite scores are -inf.
    """
    if proxy not in _ONE:
        raise ValueError(f"unknown proxy {proxy!r}; expected one of {PROXIES}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2; got {batch_size}")
    model = make_model(space, tuple(data.input_shape), data.num_classes, model_config)
    x = jnp.asarray(np.asarray(data.x_train[:batch_size], np.float32))
    y = jnp.asarray(np.asarray(data.y_train[:batch_size], np.int32))

    def score_fn(key: jax.Array, archs: Arch) -> jax.Array:
        return _population((proxy,), key, model, archs, x, y)[proxy]

    return score_fn
