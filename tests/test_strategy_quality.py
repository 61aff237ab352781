"""Search quality on the synthetic nasbench201 objective with a known optimum.

Every strategy runs for 20 seeds at a fixed budget; jittable strategies run
fused, vmapped over the seeds (one compilation each). Regret is the exact
objective of ``best(state)`` minus the optimum found by enumerating all cells.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from objectives import FULL_STEPS, OBJECTIVE, SPACE, correlated_score, optimum, regret

from jaxnas import strategies

SEEDS = 20
BATCH, GENERATIONS = 10, 12  # 120 evaluations for the single-fidelity strategies
NOISE = 0.3  # fitness noise after FULL_STEPS training steps; sqrt(FULL_STEPS) times more at 1


def _fused(strategy, evaluate, generations):
    """Final states and histories of SEEDS fused runs, stacked on a leading seed axis."""

    def run(key):
        k_init, k_run = jax.random.split(key)
        return strategies.make_fused(strategy, evaluate, generations)(k_run, strategy.init(k_init))

    return jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(2024), SEEDS))


def _median_regret(strategy, evaluate=OBJECTIVE.evaluate, generations=GENERATIONS) -> float:
    state, _ = _fused(strategy, evaluate, generations)
    best_arch, _ = jax.vmap(strategy.best)(state)
    return float(np.median(regret(best_arch)))


@functools.cache
def _random_run():
    """Final states and histories of random search: 120 exact evaluations per seed."""
    return _fused(strategies.get("random", SPACE, batch_size=BATCH), OBJECTIVE.evaluate,
                  GENERATIONS)


def _random_regret() -> float:
    state, _ = _random_run()
    return float(np.median(regret(state.best_arch)))


def _random_regret_at_steps(total_steps: int) -> float:
    """Median regret of random search given ``total_steps`` steps, FULL_STEPS per arch.

    Random search's choices do not depend on fitness, so the exact run's archs
    serve: each told value gets the noise of a FULL_STEPS evaluation, the
    noisy argmin is the search's pick, and its exact value gives the regret.
    """
    _, history = _random_run()
    evaluations = total_steps // FULL_STEPS
    exact = np.asarray(history.fitness).reshape(SEEDS, -1)[:, :evaluations]
    noise = np.random.default_rng(0).normal(size=exact.shape)
    picked = np.argmin(exact + NOISE * noise, 1)
    return float(np.median(exact[np.arange(SEEDS), picked]) - optimum())


def test_optimum_is_exact():
    values = np.asarray(jax.jit(OBJECTIVE.__call__)(SPACE.enumerate()))
    assert values.min() == pytest.approx(optimum())
    assert values.std() > 1.0  # the landscape is not flat


@pytest.mark.parametrize("name, config", [
    ("evolution", dict(population_size=20, batch_size=BATCH, tournament_size=5)),
    ("bananas", dict(batch_size=BATCH, capacity=128, train_steps=50)),
    ("zero_cost", dict(batch_size=BATCH, pool_size=100, score_fn=correlated_score)),
])
def test_beats_random_search(name, config):
    strategy = strategies.get(name, SPACE, **config)
    assert _median_regret(strategy) < _random_regret()


def test_local_search_beats_random_search():
    strategy = strategies.get("local", SPACE, batch_size=8)
    evaluate = jax.jit(OBJECTIVE.__call__)
    regrets = []
    for seed in range(SEEDS):  # host-side: one Python loop per seed
        key = jax.random.key(seed)
        state = strategy.init(key)
        for _ in range(15):  # 120 evaluations
            k_ask, k_tell, key = jax.random.split(key, 3)
            archs, state = strategy.ask(k_ask, state)
            state, _ = strategy.tell(k_tell, state, archs, evaluate(archs))
        regrets.append(regret(strategy.best(state)[0]))
    assert np.median(regrets) < _random_regret()


def test_reinforce_improves_over_its_start():
    strategy = strategies.get("reinforce", SPACE, batch_size=BATCH)
    _, history = _fused(strategy, OBJECTIVE.evaluate, 20)
    fitness = np.asarray(history.fitness)  # (seeds, G, B)
    improvement = fitness[:, :3].mean((1, 2)) - fitness[:, -3:].mean((1, 2))
    assert np.median(improvement) > 1.0 and np.mean(improvement > 0) >= 0.9, improvement


@pytest.mark.parametrize("name, generations", [("halving", 80), ("hyperband", 78)])
def test_multi_fidelity_beats_random_at_equal_training_steps(name, generations):
    # eta=3, 4 rungs: 1..27 steps; halving runs 2 brackets, hyperband one full cycle
    strategy = strategies.get(name, SPACE, batch_size=4, eta=3, rungs=4,
                              max_steps=FULL_STEPS)
    state, _ = _fused(strategy, OBJECTIVE.noisy(NOISE, FULL_STEPS), generations)
    total_steps = int(np.asarray(state.training_steps)[0])
    # survivors continue: a bracket with s=3 costs 108*1 + 36*2 + 12*6 + 4*18 = 324 steps
    assert total_steps == {"halving": 2 * 324, "hyperband": 324 + 504 + 360 + 432}[name]
    best_arch, _ = jax.vmap(strategy.best)(state)
    assert np.all(np.asarray(state.best_steps) == FULL_STEPS)
    assert float(np.median(regret(best_arch))) < _random_regret_at_steps(total_steps)
