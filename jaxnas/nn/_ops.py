"""The op bank: op names parsed into static specs, and the array functions behind them.

Feature arrays are channels-last: ``(B, D)`` in dense spaces, ``(B, *spatial, C)``
in spatial spaces (one spatial axis for sequences, two for images).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np

NORM_EPS = 1e-5
# PyTorch's BatchNorm defaults: running = (1 - momentum) * running + momentum * batch.
BN_MOMENTUM = 0.1

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    # Exact erf form: PyTorch's nn.GELU default, so the twin matches to float32 precision.
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),
    "linear": lambda z: z,
}
_ACTIVATION_ALIASES = {"identity": "linear", "none": "linear"}


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """What one op name means.

    Attributes:
      kind: "linear" (a dense layer or a convolution), "pool", "skip" or "zero".
      kernel: kernel size per spatial axis of a convolution or pooling; 1 for dense ops.
      width: output units of a dense op named with a width ("dense64-relu"); None means
        ``ModelConfig.width``.
      bias: dense ops add a bias; convolutions rely on the normalisation's shift.
      pre_relu: NAS-Bench-201's relu-conv-norm order applies relu to the input first.
      norm: a channel normalisation follows the linear map.
      activation: key of ``ACTIVATIONS`` applied last.
      pool: "max" or "avg" for pooling ops.
      spatial: the op needs spatial structure (convolutions and pooling).
    """

    kind: str
    kernel: int = 1
    width: int | None = None
    bias: bool = False
    pre_relu: bool = False
    norm: bool = False
    activation: str = "linear"
    pool: str = ""
    spatial: bool = False


def _square(name: str, sizes: tuple[str | None, ...]) -> int:
    given = {int(s) for s in sizes if s is not None}
    if len(given) != 1:
        raise ValueError(f"op {name!r}: only square kernels (k or kxk) are supported")
    kernel = given.pop()
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"op {name!r}: kernel size must be odd for 'same' padding; got {kernel}")
    return kernel


def parse_op(name: str) -> OpSpec:
    """Parses an op name of a space into its spec; raises ValueError for unknown names."""
    if name in ("skip", "skip_connect", "identity"):
        return OpSpec("skip")
    if name in ("zero", "none"):
        return OpSpec("zero")
    match = re.fullmatch(r"dense(\d*)-(\w+)", name)
    if match:
        activation = _ACTIVATION_ALIASES.get(match[2], match[2])
        if activation not in ACTIVATIONS:
            raise ValueError(f"op {name!r}: unknown activation {match[2]!r}; choose one of "
                             f"{', '.join(ACTIVATIONS)}")
        width = int(match[1]) if match[1] else None
        if width == 0:
            raise ValueError(f"op {name!r}: a dense layer needs a positive width")
        return OpSpec("linear", width=width, bias=True, activation=activation)
    match = re.fullmatch(r"conv(\d+)(?:x(\d+))?-bn-relu", name)
    if match:
        return OpSpec("linear", kernel=_square(name, match.groups()), norm=True,
                      activation="relu", spatial=True)
    match = re.fullmatch(r"nor_conv_(\d+)(?:x(\d+))?", name)
    if match:
        return OpSpec("linear", kernel=_square(name, match.groups()), pre_relu=True, norm=True,
                      spatial=True)
    match = re.fullmatch(r"(max|avg)_?pool_?(\d+)(?:x(\d+))?", name)
    if match:
        return OpSpec("pool", kernel=_square(name, match.groups()[1:]), pool=match[1],
                      spatial=True)
    raise ValueError(
        f"unknown op {name!r}; the interpreter knows dense[<width>]-<relu|tanh|gelu|linear>, "
        "conv<k>x<k>-bn-relu, nor_conv_<k>x<k>, maxpool<k>x<k>, avg_pool_<k>x<k>, skip, "
        "skip_connect, zero and none"
    )


def offsets(kernel: int, rank: int) -> list[tuple[int, ...]]:
    """The kernel**rank tap offsets of a 'same' window, row-major like a conv kernel."""
    return list(itertools.product(range(kernel), repeat=rank))


def tap_mask(kernel: int, max_kernel: int, rank: int) -> np.ndarray:
    """(max_kernel**rank,) float32: which taps of the big kernel a smaller kernel uses."""
    margin = (max_kernel - kernel) // 2
    return np.array([all(margin <= o < margin + kernel for o in offset)
                     for offset in offsets(max_kernel, rank)], np.float32)


@jax.checkpoint
def conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 'same' convolution (cross-correlation, like PyTorch) as one matmul.

    Rematerialised (``jax.checkpoint``): the backward pass rebuilds the im2col patches
    from x instead of keeping them, a kernel**rank times larger array, from the forward
    pass (copies, no FLOPs): a vmapped chunk's working memory is dominated by them.

    Args:
      x: (B, *spatial, C_in) features.
      kernel: (T, C_in, C_out) taps in row-major offset order, T = k**rank.

    Returns:
      (B, *spatial, C_out).
    """
    taps = kernel.shape[0]
    if taps == 1:
        return x @ kernel[0]
    rank = x.ndim - 2
    size = round(taps ** (1 / rank))
    half = size // 2
    padded = jnp.pad(x, [(0, 0)] + [(half, half)] * rank + [(0, 0)])
    spatial = x.shape[1:-1]
    views = [padded[(slice(None),) + tuple(slice(o, o + n) for o, n in zip(offset, spatial,
                                                                           strict=True))]
             for offset in offsets(size, rank)]
    # im2col: vmapped over a population this is one batched matmul per node, which XLA's
    # CPU backend runs faster than the grouped convolution vmap makes of lax.conv, and
    # faster than a sum of per-tap matmuls (see the jaxnas.nn._model docstring).
    patches = jnp.concatenate(views, axis=-1)
    return patches @ kernel.reshape(-1, kernel.shape[-1])


_SPATIAL = {1: "W", 2: "HW", 3: "DHW"}


def native_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``conv`` as XLA's own convolution, for one architecture that is not vmapped (the
    branching nodes of the CPU trainer): same arguments, same function.

    Its gradient is written out as two convolutions in the canonical form that XLA's CPU
    backend hands to its convolution library (batch first, channels last, kernel
    spatial-in-out). The gradients that autodiff derives have other dimension orders,
    which that backend runs as naive loops inside a ``lax.scan`` (the training loop):
    4 conv-norm-relu layers of kernel 5 on 8x8 images took 93 ms a step that way, 7.4
    ms this way and 12 ms as im2col matmuls (docs/performance.md). Under vmap it would
    become a grouped convolution, far slower on CPU than ``conv``'s batched matmuls.
    """
    if kernel.shape[0] == 1:
        return x @ kernel[0]
    return _native_conv(x, kernel)


def _lax_conv(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
    """Stride-1 convolution of channels-last x with a (*window, C_in, C_out) kernel."""
    spatial = _SPATIAL[x.ndim - 2]
    specs = ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")
    return jax.lax.conv_general_dilated(x, kernel, (1,) * (x.ndim - 2), padding,
                                        dimension_numbers=specs)


def _window(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The (T, C_in, C_out) taps as a (k, ..., k, C_in, C_out) window for x's rank."""
    rank = x.ndim - 2
    size = round(kernel.shape[0] ** (1 / rank))
    return kernel.reshape((size,) * rank + kernel.shape[1:])


@jax.custom_vjp
def _native_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return _lax_conv(x, _window(x, kernel), "SAME")


def _native_conv_fwd(x: jax.Array, kernel: jax.Array):
    return _native_conv(x, kernel), (x, kernel)


def _native_conv_bwd(residuals, grad):
    x, kernel = residuals
    window = _window(x, kernel)
    rank = x.ndim - 2
    spatial = tuple(range(rank))
    # d x: the 'same' convolution of grad with the window flipped and its channels swapped.
    flipped = jnp.swapaxes(jnp.flip(window, spatial), -1, -2)
    d_x = _lax_conv(grad, flipped, "SAME")
    # d kernel[o, c, d] = sum over (b, p) of x_padded[b, p + o, c] grad[b, p, d]: a
    # convolution with the input channels as the batch and the batch as the channels,
    # whose window is the whole grad.
    half = window.shape[0] // 2
    lhs = jnp.moveaxis(x, (0, x.ndim - 1), (x.ndim - 1, 0))     # (C_in, *spatial, B)
    rhs = jnp.moveaxis(grad, 0, rank)                            # (*spatial, B, C_out)
    d_window = _lax_conv(lhs, rhs, [(half, half)] * rank)       # (C_in, *window, C_out)
    return d_x, jnp.moveaxis(d_window, 0, rank).reshape(kernel.shape)


_native_conv.defvjp(_native_conv_fwd, _native_conv_bwd)


def pool(x: jax.Array, kind: str, kernel: int) -> jax.Array:
    """Stride-1 'same' pooling over the spatial axes of x (B, *spatial, C).

    Padding never wins a max and is not counted in an average (PyTorch's
    ``count_include_pad=False``, NAS-Bench-201's setting). Both pools are
    separable, one axis after the other: a chain of element-wise maxima
    differentiates far faster on XLA's CPU backend than a max over stacked windows
    or ``reduce_window`` (whose gradient is a select-and-scatter).
    """
    if kernel == 1:
        return x
    spatial_axes = range(1, x.ndim - 1)
    if kind == "max":
        for axis in spatial_axes:
            x = _window_along(x, axis, kernel, -jnp.inf, jnp.maximum)
        return x
    for axis in spatial_axes:
        x = _window_along(x, axis, kernel, 0.0, jnp.add)
    return x / jnp.asarray(_window_sizes(x.shape[1:-1], kernel))[None, ..., None]


def _window_along(x: jax.Array, axis: int, kernel: int, fill: float, combine) -> jax.Array:
    """Combines the ``kernel`` 'same'-padded shifts of x along one axis."""
    half = kernel // 2
    padding = [(0, 0)] * x.ndim
    padding[axis] = (half, half)
    padded = jnp.pad(x, padding, constant_values=fill)
    size = x.shape[axis]
    out = jax.lax.slice_in_dim(padded, 0, size, axis=axis)
    for offset in range(1, kernel):
        out = combine(out, jax.lax.slice_in_dim(padded, offset, offset + size, axis=axis))
    return out


def _window_sizes(spatial: tuple[int, ...], kernel: int) -> np.ndarray:
    """(*spatial,) float32: how many in-bounds positions each 'same' window covers."""
    padded = np.pad(np.ones(spatial, np.float32), kernel // 2)
    return sum(padded[tuple(slice(o, o + n) for o, n in zip(offset, spatial, strict=True))]
               for offset in offsets(kernel, len(spatial)))


def norm(z: jax.Array, scale: jax.Array, shift: jax.Array) -> jax.Array:
    """Layer norm over the channel axis with a learned scale and shift (stateless;
    ``ModelConfig(norm="layer")``); ``var + NORM_EPS`` keeps the value and gradient
    finite even on all-zero inputs of padding nodes."""
    mean = jnp.mean(z, axis=-1, keepdims=True)
    centred = z - mean
    var = jnp.mean(centred * centred, axis=-1, keepdims=True)
    return centred * jax.lax.rsqrt(var + NORM_EPS) * channels(scale, z.ndim) + channels(shift,
                                                                                      z.ndim)


def batch_norm(z: jax.Array, scale: jax.Array, shift: jax.Array, mean: jax.Array,
               var: jax.Array, train: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Batch norm of channels-last z (B, *spatial, C), as PyTorch's ``BatchNorm*d``.

    Training (``train``) normalises with the statistics of this batch over every axis but
    the channels (the biased variance) and returns the running statistics updated with
    ``BN_MOMENTUM`` (the unbiased variance); evaluation normalises with the running
    ``mean`` and ``var`` (C,) and returns them unchanged.

    Returns:
      (normalised z, new running mean (C,), new running var (C,)).
    """
    axes = tuple(range(z.ndim - 1))
    if train:
        batch_mean = jnp.mean(z, axis=axes)
        centred = z - channels(batch_mean, z.ndim)
        batch_var = jnp.mean(centred * centred, axis=axes)
        count = math.prod(z.shape[:-1])
        mean = (1 - BN_MOMENTUM) * mean + BN_MOMENTUM * batch_mean
        var = (1 - BN_MOMENTUM) * var + BN_MOMENTUM * batch_var * (count / max(count - 1, 1))
        scaled = centred * channels(jax.lax.rsqrt(batch_var + NORM_EPS), z.ndim)
    else:
        scaled = (z - channels(mean, z.ndim)) * channels(jax.lax.rsqrt(var + NORM_EPS), z.ndim)
    out = scaled * channels(scale, z.ndim) + channels(shift, z.ndim)
    return out, mean, var


def channels(vector: jax.Array, ndim: int) -> jax.Array:
    """Reshapes a (C,) per-channel vector to broadcast against channels-last arrays of ndim."""
    return vector.reshape((1,) * (ndim - 1) + vector.shape)
