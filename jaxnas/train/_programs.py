"""The compiled whole-population programs behind ``make_train``.

Every program shards the population axis over a 1-D device mesh with ``shard_map``
(candidates never communicate, so each device runs its share alone). A training
program walks its share as a ``lax.map`` over chunks; each chunk runs every optimiser
step in a ``lax.scan`` over its candidates in ``vmap`` and ends with a vectorised
validation pass. Programs are cached per (space, static config, layout, devices) and
jit caches them per data shapes; architectures, keys and swept numbers are traced.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as Spec

from jaxnas.arch import Arch
from jaxnas.nn import Model, ModelConfig, compact, compute_nodes, make_model, with_stats
from jaxnas.spaces import Space
from jaxnas.train._config import Hyperparams, TrainConfig, make_optimizer
from jaxnas.train._layout import PopulationLayout

AXIS = "population"
KEY_IMPL = "threefry2x32"


class TrainState(NamedTuple):
    """Everything a later ``train(..., state=state)`` call continues from.

    Attributes:
      params: model parameters, every leaf with leading axis P.
      opt_state: optax state, every leaf with leading axis P.
      batch_key: (P, 2) uint32 raw threefry key data of the minibatch order (rows all
        equal with shared batches). Raw data, not a typed key: the order is meant to be
        re-derived (``fold_in`` per epoch) by every later call.
      diverged: (P,) bool, a training loss was NaN or infinite at some step.
      step: () int32, optimiser steps done so far (the schedule's position).
    """

    params: Any
    opt_state: Any
    batch_key: jax.Array
    diverged: jax.Array
    step: jax.Array

    def candidates(self) -> dict[str, Any]:
        """The per-candidate fields (every leaf with leading axis P), by name."""
        return {name: getattr(self, name) for name in _CANDIDATE_FIELDS}

    def map_candidates(self, fn: Callable[[jax.Array], jax.Array]) -> TrainState:
        """The state with ``fn`` applied to every per-candidate leaf; ``step`` is kept."""
        return self._replace(**jax.tree.map(fn, self.candidates()))


_CANDIDATE_FIELDS = ("params", "opt_state", "batch_key", "diverged")


def pad_rows(leaf, size: int):
    """``leaf`` (P, ...) padded to (size, ...) with copies of row 0, so padding
    candidates are real ones (numpy in, numpy out; jax in, a new jax array out)."""
    xp = np if isinstance(leaf, np.ndarray) else jnp
    return xp.concatenate([leaf, xp.repeat(leaf[:1], size - leaf.shape[0], axis=0)])


def take_candidates(state: TrainState, index) -> TrainState:
    """Candidates of a population state: ``index`` an int (one candidate, no leading
    axis) or an array of rows; ``step`` is shared."""
    return state.map_candidates(lambda leaf: leaf[index])


def stack_candidates(states: list[TrainState]) -> TrainState:
    """One population state of single-candidate states (``take_candidates(s, i)``); the
    step is the first's."""
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *(s.candidates() for s in states))
    return states[0]._replace(**stacked)


@functools.lru_cache(maxsize=16)
def mesh_of(devices: tuple[jax.Device, ...]) -> jax.sharding.Mesh:
    """The 1-D mesh whose only axis carries the population."""
    return jax.sharding.Mesh(np.asarray(devices), (AXIS,))


@functools.lru_cache(maxsize=32)
def model_of(space: Space, input_shape: tuple[int, ...], num_classes: int,
             config: ModelConfig) -> Model:
    return make_model(space, input_shape, num_classes, config)


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


def _zero_hyper() -> Hyperparams:
    zero = jnp.zeros((), jnp.float32)
    return Hyperparams(zero, zero, zero)


def _candidate_keys(init_key_data: jax.Array, batch_key_data: jax.Array,
                    shared_batches: bool) -> tuple[jax.Array, jax.Array]:
    """(C,) typed initialisation keys and (C, 2) raw minibatch key data of C candidates.

    Args:
      init_key_data: (C, 2) uint32 raw key data, one per candidate.
      batch_key_data: (2,) uint32 raw key data of the minibatch order.
      shared_batches: every candidate gets the same minibatch key (else fold_in(key, i)).
    """
    init_keys = jax.random.wrap_key_data(init_key_data, impl=KEY_IMPL)
    size = init_key_data.shape[0]
    if shared_batches:
        batch_keys = jnp.broadcast_to(batch_key_data, (size, 2))
    else:
        batch_key = jax.random.wrap_key_data(batch_key_data, impl=KEY_IMPL)
        batch_keys = jax.random.key_data(
            jax.vmap(jax.random.fold_in, (None, 0))(batch_key, jnp.arange(size)))
    return init_keys, batch_keys


def _init_candidates(model: Model, optimizer: str, init_keys: jax.Array, batch_keys: jax.Array):
    """Fresh (params, opt_state, batch_keys, diverged) of C candidates from their keys."""
    params = jax.vmap(model.init)(init_keys)
    opt = make_optimizer(TrainConfig(optimizer=optimizer), _zero_hyper(),
                         jnp.zeros((), jnp.int32))
    opt_state = jax.vmap(opt.init)(params)
    return params, opt_state, batch_keys, jnp.zeros(init_keys.shape, bool)


def _shard(fn, mesh, in_specs, out_specs):
    # Candidates never communicate; the model's loops start from unvarying constants,
    # which shard_map's varying-axis check would reject.
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                         check_vma=False)


@functools.lru_cache(maxsize=64)
def init_program(space: Space, model_config: ModelConfig, optimizer: str, shared_batches: bool,
                 input_shape: tuple[int, ...], num_classes: int,
                 devices: tuple[jax.Device, ...], size: int):
    """Jitted (init key data (size, 2), batch key data (2,)) -> fresh padded TrainState."""
    model = model_of(space, input_shape, num_classes, model_config)
    mesh = mesh_of(devices)
    by_candidate = Spec(AXIS)

    def per_device(init_keys, batch_keys):
        return _init_candidates(model, optimizer, init_keys, batch_keys)

    sharded = _shard(per_device, mesh, (by_candidate, by_candidate), by_candidate)

    def init(init_key_data, batch_key_data):
        keys = _candidate_keys(init_key_data, batch_key_data, shared_batches)
        return TrainState(*sharded(*keys), step=jnp.zeros((), jnp.int32))

    return jax.jit(init)


@functools.lru_cache(maxsize=64)
def derive_keys_program(size: int):
    """Jitted: one key's raw data (2,) -> (init key data (size, 2), batch key data (2,)).

    Candidate i's initial key is ``fold_in(init_key, i)``, so it does not depend on the
    padded size or the layout.
    """

    def derive(key_data):
        init_key, batch_key = jax.random.split(jax.random.wrap_key_data(key_data,
                                                                         impl=KEY_IMPL))
        init_keys = jax.vmap(jax.random.fold_in, (None, 0))(init_key, jnp.arange(size))
        return jax.random.key_data(init_keys), jax.random.key_data(batch_key)

    return jax.jit(derive)


@functools.lru_cache(maxsize=64)
def train_program(space: Space, config: TrainConfig, input_shape: tuple[int, ...],
                  num_classes: int, devices: tuple[jax.Device, ...], layout: PopulationLayout,
                  from_key: bool, program: Program):
    """The jitted training program for one static setting.

    Args (of the returned function): ``start_from`` (a padded TrainState, donated; or,
    with ``from_key``, the raw key data (init (size, 2), batch (2,)) from which candidates
    are initialised chunk by chunk), archs (padded), chunk_templates ((devices *
    num_chunks,) int32: each chunk's template in ``program.templates``, or
    ``len(program.templates)`` for a chunk of padding only, which runs nothing; zeros
    without templates), Hyperparams, x_train, y_train, x_val, y_val.

    Returns:
      ((val_loss, val_acc, curve), state): metrics replicated on every device, state
      sharded by candidate, None without ``config.keep_state``.
    """
    model = model_of(space, input_shape, num_classes, config.model)
    mesh = mesh_of(devices)
    steps = config.steps
    curve_points = min(config.curve_points, steps)
    segment = np.arange(steps) * curve_points // steps
    segment_size = np.bincount(segment, minlength=curve_points).astype(np.float32)

    def train_chunk(candidates, archs, start, hyper, data, template=None):
        """Trains one chunk through every step; candidates lead with the chunk axis."""
        params, opt_state, batch_keys, diverged = candidates
        x_train, y_train, x_val, y_val, weights = data
        n = x_train.shape[0]
        keys = jax.random.wrap_key_data(batch_keys, impl=KEY_IMPL)
        if config.shared_batches:
            indices = batch_indices(keys[0], start, steps, n, config.batch_size)
            batch_axis = None
        else:
            indices = jax.vmap(batch_indices, (0, None, None, None, None), 1)(
                keys, start, steps, n, config.batch_size)
            batch_axis = 0

        def candidate_step(params, opt_state, arch, x, y, step):
            (loss, stats), grads = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)(
                model, params, arch, x, y, branch=program.branch, template=template)
            optimizer = make_optimizer(config, hyper, step)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            # Running statistics are not trained: what the optimiser made of their zero
            # gradients (weight decay) is replaced by the batch's update.
            params = with_stats(optax.apply_updates(params, updates), stats)
            return params, opt_state, loss

        def step_fn(carry, inputs):
            params, opt_state, diverged = carry
            step, index = inputs
            params, opt_state, loss = over_candidates(
                candidate_step, (0, 0, 0, batch_axis, batch_axis, None), program.branch)(
                params, opt_state, archs, x_train[index], y_train[index], step)
            return (params, opt_state, diverged | ~jnp.isfinite(loss)), loss

        step_numbers = start + jnp.arange(steps, dtype=jnp.int32)
        (params, opt_state, diverged), losses = jax.lax.scan(
            step_fn, (params, opt_state, diverged), (step_numbers, indices))
        # segment_sum keeps a non-finite step inside its own segment of the curve.
        curve = jax.ops.segment_sum(losses, segment, curve_points) / segment_size[:, None]
        val_loss, val_acc = validate(model, params, archs, x_val, y_val, weights,
                                     branch=program.branch, template=template)
        failed = diverged | ~jnp.isfinite(val_loss)
        metrics = (jnp.where(failed, jnp.inf, val_loss), jnp.where(failed, 0.0, val_acc),
                   curve.T)
        return (params, opt_state, batch_keys, diverged), metrics

    def idle(candidates, archs, start, hyper, data):
        """A chunk of padding candidates: nothing runs."""
        del archs, start, hyper, data
        size = layout.chunk
        return candidates, (jnp.full(size, jnp.inf), jnp.zeros(size),
                            jnp.zeros((size, curve_points)))

    branches = [functools.partial(train_chunk, template=t) for t in program.branches]

    def per_device(candidates, archs, which, start, hyper, data):
        """This device's share of the population as a lax.map over chunks."""
        def chunked(tree):
            return jax.tree.map(
                lambda a: a.reshape(layout.num_chunks, layout.chunk, *a.shape[1:]), tree)

        def flat(tree):
            return jax.tree.map(lambda a: a.reshape(layout.per_device, *a.shape[2:]), tree)

        def run_chunk(inputs):
            candidates, archs, which = inputs
            if from_key:
                candidates = _init_candidates(model, config.optimizer, *candidates)
            arguments = (candidates, archs, start, hyper, data)
            if program.templates is None:
                candidates, metrics = branches[0](*arguments)
            else:  # one template's program runs per chunk: a switch is not vmapped here
                candidates, metrics = jax.lax.switch(which, branches + [idle], *arguments)
            return (candidates if config.keep_state else None), metrics

        candidates, metrics = jax.lax.map(run_chunk, (*chunked((candidates, archs)), which))
        return flat(candidates), flat(metrics)

    by_candidate = Spec(AXIS)
    sharded = _shard(per_device, mesh,
                     (by_candidate, by_candidate, by_candidate, Spec(), Spec(), Spec()),
                     (by_candidate, by_candidate))
    replicated = NamedSharding(mesh, Spec())

    def run(start_from, archs, chunk_templates, hyper, x_train, y_train, x_val, y_val):
        # Vmapped chunks evaluate at most a training batch at a time: never more memory
        # than a training step.
        eval_batch = (config.eval_batch_size if program.branch
                      else min(config.eval_batch_size, config.batch_size))
        data = (x_train, y_train, *eval_batches(x_val, y_val, eval_batch))
        if from_key:
            candidates = _candidate_keys(*start_from, config.shared_batches)
            start = jnp.zeros((), jnp.int32)
        else:
            candidates = (start_from.params, start_from.opt_state, start_from.batch_key,
                          start_from.diverged)
            start = start_from.step
        candidates, metrics = sharded(candidates, archs, chunk_templates, start, hyper, data)
        # Metrics are small: gather them on every device (every process, several hosts).
        metrics = jax.lax.with_sharding_constraint(metrics, replicated)
        if not config.keep_state:
            return metrics, None
        return metrics, TrainState(*candidates, step=start + steps)

    return jax.jit(run, donate_argnums=() if from_key else (0,))


@functools.lru_cache(maxsize=16)
def gather_program(devices: tuple[jax.Device, ...]):
    """Jitted: (a state, rows (R,) int32) -> a fresh state of those rows, sharded by
    candidate over ``devices`` (R a multiple of their number); the step is kept.

    The output never aliases the input, so the training program may donate it.
    """
    mesh = mesh_of(devices)
    by_candidate = NamedSharding(mesh, Spec(AXIS))

    def gather(state: TrainState, index: jax.Array) -> TrainState:
        rows = take_candidates(state, index)
        return rows._replace(step=jnp.asarray(state.step, jnp.int32) + 0)

    shardings = TrainState(by_candidate, by_candidate, by_candidate, by_candidate,
                           NamedSharding(mesh, Spec()))
    return jax.jit(gather, out_shardings=shardings)


@functools.lru_cache(maxsize=4)
def rows_program():
    """Jitted: (a state, rows (R,) int32) -> a state of those R candidates."""

    def rows(state: TrainState, index: jax.Array) -> TrainState:
        return take_candidates(state, index)

    return jax.jit(rows)


@functools.lru_cache(maxsize=4)
def merge_program():
    """Jitted: (states of consecutive groups, order (P,) int32) -> one state whose row i
    is row ``order[i]`` of the groups' concatenation."""

    def merge(states: tuple[TrainState, ...], order: jax.Array) -> TrainState:
        merged = jax.tree.map(lambda *leaves: jnp.concatenate(leaves)[order],
                              *(s.candidates() for s in states))
        return states[0]._replace(**merged)

    return jax.jit(merge)


@functools.lru_cache(maxsize=16)
def compute_nodes_program(model: Model):
    """Jitted population -> (P,) int32 compute nodes (``jaxnas.nn._compact``)."""
    return jax.jit(jax.vmap(lambda arch: compute_nodes(model.layout, arch)))


@functools.lru_cache(maxsize=64)
def compact_program(model: Model, size: int):
    """Jitted population -> its ``Compact`` forms with ``size`` slots."""
    return jax.jit(jax.vmap(lambda arch: compact(model.layout, arch, size)))


@functools.lru_cache(maxsize=16)
def evaluate_program(model: Model, eval_batch_size: int, chunk: int):
    """Jitted (params, archs, x, y) -> (loss (P,), accuracy (P,)), ``chunk`` candidates
    at a time (a ``lax.map``), so memory does not grow with P."""

    def run(params, archs, x, y):
        batches = eval_batches(x, y, eval_batch_size)
        size = archs.ops.shape[0]
        count = -(-size // chunk)

        def split(a):  # padded with copies of candidate 0, dropped below
            return pad_rows(a, count * chunk).reshape(count, chunk, *a.shape[1:])

        loss, acc = jax.lax.map(lambda part: validate(model, *part, *batches, branch=chunk == 1),
                                jax.tree.map(split, (params, archs)))
        return loss.reshape(-1)[:size], acc.reshape(-1)[:size]

    return jax.jit(run)


@functools.lru_cache(maxsize=16)
def validity_program(space: Space):
    """Jitted population -> (P,) bool validity."""
    return jax.jit(jax.vmap(space.is_valid))


def chunk_memory(model: Model, config: TrainConfig) -> tuple[int, int]:
    """(bytes per candidate, fixed bytes) of a vmapped chunk's working memory.

    From XLA's own memory analysis of one compiled training step (value, gradient and
    optimiser update) and one evaluation batch, vmapped over chunks of 2 and 4
    candidates in the padded select program: every slot the largest kernel, the most
    that any chunk of the accelerator program runs.
    """
    params = jax.eval_shape(model.init, jax.random.key(0))
    n = model.layout.num_nodes
    arch = Arch(adj=jax.ShapeDtypeStruct((n, n), jnp.int8),
                ops=jax.ShapeDtypeStruct((n,), jnp.int32))
    input_shape = model.layout.input_shape
    optimizer = make_optimizer(config, _zero_hyper(), jnp.zeros((), jnp.int32))

    def train_step(params, opt_state, arch, x, y):
        (_, stats), grads = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)(
            model, params, arch, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return with_stats(optax.apply_updates(params, updates), stats), opt_state

    def evaluate(params, arch, x):
        return model.apply(params, arch, x)

    def peak(chunk: int) -> int:
        def stacked(tree):
            return jax.tree.map(lambda s: jax.ShapeDtypeStruct((chunk, *s.shape), s.dtype),
                                tree)

        batch = config.batch_size
        x = jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32)
        y = jax.ShapeDtypeStruct((batch,), jnp.int32)
        opt_state = jax.eval_shape(optimizer.init, params)
        total = 0
        for fn, args in ((jax.vmap(train_step, (0, 0, 0, None, None)),
                          (stacked(params), stacked(opt_state), stacked(arch), x, y)),
                         (jax.vmap(evaluate, (0, 0, None)), (stacked(params), stacked(arch), x))):
            stats = jax.jit(fn).lower(*args).compile().memory_analysis()
            total = max(total, stats.argument_size_in_bytes + stats.output_size_in_bytes
                        + stats.temp_size_in_bytes - stats.alias_size_in_bytes)
        return total

    two, four = peak(2), peak(4)
    per_candidate = max((four - two) // 2, 1)
    return per_candidate, max(two - 2 * per_candidate, 0)
