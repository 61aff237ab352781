"""What a chunk runs per step and per evaluation batch: the loss, the candidate map, the
minibatch order and the validation pass."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxnas.arch import Arch
from jaxnas.nn import (
    Model,
)


class Program(NamedTuple):
    """How a chunk runs its candidates (static; see ``TrainConfig.program``).

    Attributes:
      branch: one candidate at a time, not vmapped, each node running only its own op
        under ``lax.switch`` (the CPU program; chunks of one).
      templates: the typed slot templates of the accelerator program (candidates are
        ``Compact`` forms placed for their chunk's template), or None: the padded
        select program (every slot the largest kernel; ``Arch`` or ``Compact``).
    """

    branch: bool = False
    templates: tuple[tuple[int, ...], ...] | None = None

    @property
    def branches(self) -> tuple[tuple[int, ...] | None, ...]:
        return (None,) if self.templates is None else self.templates


def loss_fn(model: Model, params: Any, arch: Arch, x: jax.Array, y: jax.Array, *,
            branch: bool = False, template: tuple[int, ...] | None = None
            ) -> tuple[jax.Array, Any]:
    """(Mean cross-entropy of one architecture on a batch x (B, ...), y (B,) in training
    mode, the updated running statistics of its batch norms)."""
    logits, stats = model.apply_train(params, arch, x, branch=branch, template=template)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), stats


def over_candidates(fn, in_axes: tuple, branch: bool):
    """``fn`` of one candidate mapped over a chunk of candidates (axis 0 of the arguments
    whose ``in_axes`` entry is 0, and of every output).

    With ``branch`` the chunk holds one candidate, run without vmap so the model can
    branch (``apply(..., branch=True)``): each node then runs only its own op, which on
    a CPU beats any batching of the chunk's different ops (see ``docs/performance.md``).
    """
    if not branch:
        return jax.vmap(fn, in_axes)

    def one(*args):
        args = [jax.tree.map(lambda a: a[0], arg) if axis == 0 else arg
                for arg, axis in zip(args, in_axes, strict=True)]
        return jax.tree.map(lambda a: a[None], fn(*args))

    return one


def batch_indices(key: jax.Array, start: jax.Array, steps: int, num_examples: int,
                  batch_size: int) -> jax.Array:
    """(steps, batch_size) int32 example indices of global steps start..start+steps-1.

    Epoch e is the permutation drawn from ``fold_in(key, e)``; step t takes the
    (t mod steps_per_epoch)-th slice of epoch t // steps_per_epoch (the remainder of an
    epoch is dropped). The order depends only on (key, t), so a run continued over
    several calls sees the same minibatches as one long run, and this function gives
    the trainer's minibatches for a ``TrainState.batch_key`` (or ``train``'s
    ``batch_key``) whatever the caller's ``jax.threefry_partitionable`` setting.
    """
    per_epoch = num_examples // batch_size
    first_epoch = start // per_epoch
    # A window of `steps` consecutive steps touches at most this many epochs.
    num_epochs = (steps - 1) // per_epoch + 2
    epochs = first_epoch + jnp.arange(num_epochs)

    def permutation(epoch):
        # One sort of random bits (a stable argsort, so ties still give a permutation)
        # compiles far smaller than jax.random.permutation's repeated shuffles. The bits
        # are the trainer's (its non-partitionable threefry) wherever this is called.
        with jax.threefry_partitionable(False):
            bits = jax.random.bits(jax.random.fold_in(key, epoch), (num_examples,),
                                   jnp.uint32)
        return jnp.argsort(bits)

    perms = jax.vmap(permutation)(epochs)
    step = start + jnp.arange(steps)
    rows = (step // per_epoch - first_epoch)[:, None]
    cols = ((step % per_epoch) * batch_size)[:, None] + jnp.arange(batch_size)[None, :]
    return perms[rows, cols].astype(jnp.int32)


def eval_batches(x: jax.Array, y: jax.Array, eval_batch_size: int):
    """Splits a split into equal batches: x (nb, eb, ...), y (nb, eb), weight (nb, eb)."""
    n = x.shape[0]
    size = min(eval_batch_size, n)
    count = -(-n // size)
    extra = count * size - n
    x = jnp.pad(x, [(0, extra)] + [(0, 0)] * (x.ndim - 1))
    y = jnp.pad(y, (0, extra))
    weight = (jnp.arange(count * size) < n).astype(jnp.float32)
    return (x.reshape(count, size, *x.shape[1:]), y.reshape(count, size),
            weight.reshape(count, size))


def validate(model: Model, params: Any, archs: Arch, x_batches: jax.Array,
             y_batches: jax.Array, weights: jax.Array, *, branch: bool,
             template: tuple[int, ...] | None = None) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy and accuracy, each (C,), of C candidates over ``eval_batches``
    (``branch``, ``template``: as for ``Model.apply``)."""

    def one(params, arch, x, y):
        logits = model.apply(params, arch, x, branch=branch, template=template)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return loss, (jnp.argmax(logits, -1) == y).astype(jnp.float32)

    def body(totals, batch):
        x, y, weight = batch
        loss, correct = over_candidates(one, (0, 0, None, None), branch)(params, archs, x, y)
        # Padding rows may hold any value; `where` keeps them out even if not finite.
        loss = jnp.where(weight[None, :] > 0, loss, 0.0).sum(-1)
        correct = (correct * weight[None, :]).sum(-1)
        return (totals[0] + loss, totals[1] + correct), None

    zeros = jnp.zeros(archs.ops.shape[:1], jnp.float32)
    (loss, correct), _ = jax.lax.scan(body, (zeros, zeros), (x_batches, y_batches, weights))
    total = weights.sum()
    return loss / total, correct / total
