"""The whole search (ask, train, tell for G generations) as one compiled program."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxnas import data, spaces, strategies
from jaxnas.nn import ModelConfig
from jaxnas.train import TrainConfig, make_evaluate, train_population

CONFIG = TrainConfig(steps=8, batch_size=16, model=ModelConfig(width=8))


def test_evaluate_matches_the_trainer_and_the_fused_search_matches_the_stepwise_one():
    space = spaces.get("mlp", widths=(8, 16), activations=("relu", "tanh"), max_layers=2)
    digits = data.load("digits")
    evaluate = make_evaluate(space, CONFIG, digits, population=4)
    archs = space.sample(jax.random.key(0), 4)
    direct = train_population(jax.random.key(1), space, archs, digits, CONFIG).val_loss
    np.testing.assert_allclose(jax.jit(evaluate)(jax.random.key(1), archs), direct, rtol=1e-5)

    strategy = strategies.get("evolution", space, batch_size=4, population_size=8)
    _, fused = strategies.run_fused(jax.random.key(2), strategy, evaluate, generations=3)
    _, stepwise = strategies.run_stepwise(jax.random.key(2), strategy, jax.jit(evaluate),
                                          generations=3)
    np.testing.assert_array_equal(np.asarray(fused.archs.ops), np.asarray(stepwise.archs.ops))
    np.testing.assert_allclose(np.asarray(fused.fitness), np.asarray(stepwise.fitness),
                               rtol=1e-5)
    assert np.isfinite(np.asarray(fused.fitness)).all()
    assert (np.diff(np.asarray(fused.best_fitness)) <= 0).all()


def test_the_accelerator_program_is_refused_by_the_traced_evaluate():
    space = spaces.get("dag", max_nodes=4)
    with pytest.raises(ValueError, match="not 'accelerator'"):
        make_evaluate(space, dataclasses.replace(CONFIG, program="accelerator"),
                      data.load("digits"), 4)
