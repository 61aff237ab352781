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

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as Spec

from jaxnas.nn import Model, ModelConfig, compact, make_model, with_stats
from jaxnas.spaces import Space
from jaxnas.train._config import Hyperparams, TrainConfig, make_optimizer
from jaxnas.train._layout import PopulationLayout
from jaxnas.train._state import AXIS, KEY_IMPL, TrainState, mesh_of, pad_rows
from jaxnas.train._steps import (
    Program,
    batch_indices,
    eval_batches,
    loss_fn,
    over_candidates,
    validate,
)


def jit_program(fn, **options):
    """``jax.jit(fn, **options)`` for the training and evaluation programs: the one place
    they are jitted, where tests count the traces of ``fn`` (``chex.assert_max_traces``)."""
    return jax.jit(fn, **options)


@functools.lru_cache(maxsize=32)
def model_of(space: Space, input_shape: tuple[int, ...], num_classes: int,
             config: ModelConfig) -> Model:
    return make_model(space, input_shape, num_classes, config)


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


def _chunk_trainer(model: Model, config: TrainConfig, program: Program):
    """``train_chunk(candidates, archs, start, hyper, data, template=None)``: trains one
    chunk (candidates lead with the chunk axis) through every step of ``config`` and
    validates it; returns (candidates, (val_loss, val_acc, curve))."""
    steps = config.steps
    curve_points = min(config.curve_points, steps)
    segment = np.arange(steps) * curve_points // steps
    segment_size = np.bincount(segment, minlength=curve_points).astype(np.float32)

    def train_chunk(candidates, archs, start, hyper, data, template=None):
        """Trains one chunk through every step; candidates and hyper (``Hyperparams`` of
        (chunk,) values) lead with the chunk axis."""
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

        def candidate_step(params, opt_state, arch, hyper, x, y, step):
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
                candidate_step, (0, 0, 0, 0, batch_axis, batch_axis, None), program.branch)(
                params, opt_state, archs, hyper, x_train[index], y_train[index], step)
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

    return train_chunk


def training_programs_built() -> int:
    """How many training programs this process has built (distinct static settings of
    ``train_program``: each is one compilation, or one read of the compilation cache)."""
    return train_program.cache_info().misses


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
    without templates), Hyperparams of padded (size,) values (each program row's
    candidate's), x_train, y_train, x_val, y_val.

    Returns:
      ((val_loss, val_acc, curve), state): metrics replicated on every device, state
      sharded by candidate, None without ``config.keep_state``.
    """
    model = model_of(space, input_shape, num_classes, config.model)
    mesh = mesh_of(devices)
    curve_points = min(config.curve_points, config.steps)
    train_chunk = _chunk_trainer(model, config, program)

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
            candidates, archs, hyper, which = inputs
            if from_key:
                candidates = _init_candidates(model, config.optimizer, *candidates)
            arguments = (candidates, archs, start, hyper, data)
            if program.templates is None:
                candidates, metrics = branches[0](*arguments)
            else:  # one template's program runs per chunk: a switch is not vmapped here
                candidates, metrics = jax.lax.switch(which, branches + [idle], *arguments)
            return (candidates if config.keep_state else None), metrics

        candidates, metrics = jax.lax.map(run_chunk,
                                          (*chunked((candidates, archs, hyper)), which))
        return flat(candidates), flat(metrics)

    by_candidate = Spec(AXIS)
    sharded = _shard(per_device, mesh,
                     (by_candidate, by_candidate, by_candidate, Spec(), by_candidate, Spec()),
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
        return metrics, TrainState(*candidates, step=start + config.steps)

    return jit_program(run, donate_argnums=() if from_key else (0,))


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

    return jit_program(run)


@functools.lru_cache(maxsize=16)
def validity_program(space: Space):
    """Jitted population -> (P,) bool validity."""
    return jax.jit(jax.vmap(space.is_valid))
