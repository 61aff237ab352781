"""The accelerator program in the trainer: it trains like the CPU program, and its
chunks are sized from memory."""

import dataclasses

import chex
import jax
import numpy as np
import pytest

import jaxnas.spaces
from jaxnas import data
from jaxnas.nn import ModelConfig, make_model
from jaxnas.train import (
    TrainConfig,
    _plans,
    chunk_memory,
    chunk_size_for,
    program_cost,
    put_data,
    train_population,
)
from tests.traces import programs_traced_once  # noqa: F401 (autouse)

DIGITS = (8, 8, 1)
CLASSES = 10


@pytest.fixture(scope="module")
def digits():
    return put_data(data.load("digits"))


CONFIG = TrainConfig(steps=3, batch_size=16, curve_points=3, model=ModelConfig(width=4),
                     eval_batch_size=64)


@pytest.mark.parametrize("space_name", ["nasbench201"])
def test_accelerator_program_trains_like_the_cpu_program(space_name, digits):
    """Same candidates and minibatches: the same losses, accuracies, curves, parameters,
    running statistics and optimiser state, fresh and continued; and the accounting
    matches the plan the trainer ran."""
    space = jaxnas.spaces.get(space_name)
    archs = space.sample(jax.random.key(11), 9).to_numpy()
    cpu = dataclasses.replace(CONFIG, program="cpu")
    accelerator = dataclasses.replace(CONFIG, program="accelerator", templates=3, chunk_size=2)
    results = {}
    for config in (cpu, accelerator):
        first = train_population(jax.random.key(0), space, archs, digits, config)
        results[config.program] = first, train_population(
            jax.random.key(0), space, archs, digits, config, state=first.state)
    for expected, got in zip(results["cpu"], results["accelerator"], strict=True):
        for name in ("val_loss", "val_acc", "train_curve"):
            np.testing.assert_allclose(getattr(got, name), getattr(expected, name),
                                       rtol=1e-4, atol=1e-5)
        chex.assert_trees_all_close(got.state.candidates(), expected.state.candidates(),
                                    rtol=1e-3, atol=1e-5)
    cost = program_cost(space, archs, digits, accelerator)
    # The caller's chunk of 2 is kept, with a chunk more for each template's remainder.
    assert cost.program == "accelerator" and cost.layout.chunk == 2
    assert (cost.executed.sum() < 9 * make_model(space, DIGITS, CLASSES,
                                                 CONFIG.model).executed_flops)


def test_chunks_are_sized_from_memory():
    """The compiled step's memory analysis, of the accelerator program's own full
    template, sizes chunks: NAS-Bench-201 cells at width 16, batch 64 on CIFAR-shaped
    inputs get chunks of 256 or more from 80 GB (XLA's CPU analysis); a budget below one
    candidate is one clear line."""
    space = jaxnas.spaces.get("nasbench201")
    config = TrainConfig(batch_size=64, model=ModelConfig(width=16), program="accelerator",
                         memory_budget_mb=int(0.8 * 80e9 / 2**20))
    device = jax.devices()[0]
    chunk = chunk_size_for(space, config, (32, 32, 3), 10, "accelerator", device)
    assert chunk >= 256
    tight = dataclasses.replace(config, memory_budget_mb=8)
    with pytest.raises(MemoryError, match=r"one candidate needs about \d+ MiB"):
        chunk_size_for(space, tight, (32, 32, 3), 10, "accelerator", device)
    model = make_model(space, (32, 32, 3), 10, config.model)
    per_candidate, fixed = chunk_memory(model, config, "accelerator")
    assert chunk == (config.memory_budget_mb * 2**20 - fixed) // per_candidate


def test_a_search_compiles_few_accelerator_programs(digits):
    """A search's generations train 1-16 new candidates; the accelerator program pads
    them to powers of two (its padding chunks run nothing), so they need 5 training
    programs, 6 with the final retraining (a 1,000-evaluation NAS-Bench-201 search built
    6: benchmarks/results/accelerator_programs.md), where 1.5x sizes would need 8 + 1."""
    space = jaxnas.spaces.get("nasbench201")
    config = dataclasses.replace(CONFIG, program="accelerator").static()
    devices = tuple(jax.devices()[:1])
    layouts = {_plans.padded_layout(space, config, digits, devices, size)
               for size in range(1, 17)}
    # Chunks of one (at most a 1 / (4 x templates) share), a chunk more for each
    # template's remainder.
    assert {(layout.num_chunks, layout.chunk) for layout in layouts} == {
        (size + config.templates, 1) for size in (1, 2, 4, 8, 16)}
