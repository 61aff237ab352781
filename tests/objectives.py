"""Shared objectives and small configurations for the strategy tests."""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxnas import spaces
from jaxnas.strategies import objectives

SPACE = spaces.get("nasbench201")
OBJECTIVE = objectives.synthetic(SPACE, seed=0)
FULL_STEPS = 27  # the highest fidelity of the multi-fidelity configurations below


@functools.cache
def optimum() -> float:
    """The exact minimum of OBJECTIVE over all 15,625 cells."""
    return objectives.optimum(OBJECTIVE, SPACE)[1]


def correlated_score(key: jax.Array, archs) -> jax.Array:
    """A training-free score correlated with -OBJECTIVE (noise of std 2, the objective's ~3)."""
    return -(OBJECTIVE(archs) + 2.0 * jax.random.normal(key, (archs.ops.shape[0],)))


def evaluator(strategy):
    """The synthetic evaluate for a strategy: noisy and step-aware if multi-fidelity."""
    if strategy.info.multi_fidelity:
        return OBJECTIVE.noisy(0.3, FULL_STEPS)
    return OBJECTIVE.evaluate


def regret(archs) -> np.ndarray:
    """Regret of one arch, () , or of a population, (P,) (numpy)."""
    if archs.ops.ndim == 1:
        return np.asarray(OBJECTIVE.value(archs)) - optimum()
    return np.asarray(OBJECTIVE(archs)) - optimum()


# Small configurations so the interface tests compile and run fast.
SMALL = {
    "random": dict(batch_size=4),
    "evolution": dict(population_size=8, batch_size=4, tournament_size=3),
    "local": dict(batch_size=8),
    "reinforce": dict(batch_size=4),
    "bananas": dict(batch_size=4, capacity=32, train_steps=20, initial_samples=4,
                    num_parents=3, mutants_per_parent=4, random_candidates=8),
    "halving": dict(batch_size=2, eta=2, rungs=3, max_steps=4),
    "hyperband": dict(batch_size=2, eta=2, rungs=3, max_steps=4),
    "zero_cost": dict(batch_size=4, pool_size=32, score_fn=correlated_score),
}
