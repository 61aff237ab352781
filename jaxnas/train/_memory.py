"""How many candidates a vmapped chunk holds: XLA's memory analysis against the device."""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import optax

from jaxnas.arch import Arch
from jaxnas.nn import Compact, Model, with_stats
from jaxnas.spaces import Space
from jaxnas.train import _programs
from jaxnas.train._config import TrainConfig, make_optimizer
from jaxnas.train._programs import _zero_hyper
from jaxnas.train._steps import loss_fn


def chunk_memory(model: Model, config: TrainConfig,
                 program: str = "select") -> tuple[int, int]:
    """(bytes per candidate, fixed bytes) of a vmapped chunk's working memory (see
    ``_chunk_memory``); the budget and chunk settings of ``config`` do not change it."""
    return _chunk_memory(model, dataclasses.replace(
        config, chunk_size=None, memory_budget_mb=None, memory_fraction=1.0), program)


@functools.lru_cache(maxsize=32)
def _chunk_memory(model: Model, config: TrainConfig, program: str) -> tuple[int, int]:
    """(bytes per candidate, fixed bytes) of a vmapped chunk's working memory.

    From XLA's own memory analysis of one compiled training step (value, gradient and
    optimiser update) and one evaluation batch, vmapped over chunks of 2 and 4
    candidates, in the program's own form: the padded select program's, or, for the
    accelerator program, its full template's (every slot of the largest class: the most
    that any of its chunks runs).
    """
    params = jax.eval_shape(model.init, jax.random.key(0))
    n = model.layout.num_nodes
    if program == "accelerator":
        template = (max(model.layout.slot_classes),) * model.layout.num_stacked
        arch = Compact(adj=jax.ShapeDtypeStruct((n, n), jnp.float32),
                       ops=jax.ShapeDtypeStruct((n,), jnp.int32),
                       node=jax.ShapeDtypeStruct((n,), jnp.int32))
    else:
        template = None
        arch = Arch(adj=jax.ShapeDtypeStruct((n, n), jnp.int8),
                    ops=jax.ShapeDtypeStruct((n,), jnp.int32))
    input_shape = model.layout.input_shape
    optimizer = make_optimizer(config, _zero_hyper(), jnp.zeros((), jnp.int32))

    def train_step(params, opt_state, arch, x, y):
        (_, stats), grads = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)(
            model, params, arch, x, y, template=template)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return with_stats(optax.apply_updates(params, updates), stats), opt_state

    def evaluate(params, arch, x):
        return model.apply(params, arch, x, template=template)

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


@functools.lru_cache(maxsize=32)
def chunk_size_for(space: Space, config: TrainConfig, input_shape: tuple[int, ...],
                num_classes: int, program: str, device: jax.Device) -> int:
    """The configured chunk; else 1 for the "cpu" program (each candidate runs alone and
    its nodes branch), else the largest chunk whose working memory fits the budget."""
    if config.chunk_size is not None:
        return config.chunk_size
    if program == "cpu":
        return 1
    model = _programs.model_of(space, input_shape, num_classes, config.model)
    per_candidate, fixed = chunk_memory(model, config, program)
    budget = memory_budget(config, device)
    if budget < fixed + per_candidate:
        raise MemoryError(
            f"one candidate needs about {(fixed + per_candidate) / 2**20:.0f} MiB of working "
            f"memory, more than the {budget / 2**20:.0f} MiB budget on {device.platform}; "
            "lower the batch size or the width, or raise TrainConfig.memory_budget_mb")
    return int((budget - fixed) // per_candidate)


def memory_budget(config: TrainConfig, device: jax.Device) -> int:
    """Bytes a chunk may use on ``device``: ``config.memory_budget_mb``, else
    ``config.memory_fraction`` of the device allocator's limit (of the machine's memory
    on a CPU) less what is in use."""
    if config.memory_budget_mb is not None:
        return config.memory_budget_mb * 2**20
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
        return int(config.memory_fraction * stats["bytes_limit"]) - stats.get("bytes_in_use", 0)
    return int(config.memory_fraction * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
