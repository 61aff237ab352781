"""Interface tests of every registered strategy, plus Pareto ranking and the protocols."""

from __future__ import annotations

import collections
import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from objectives import OBJECTIVE, SMALL, SPACE, correlated_score, evaluator

from jaxnas import spaces, strategies
from jaxnas.arch import Arch
from jaxnas.strategies import pareto
from jaxnas.strategies._reinforce import decisions

# Strategies that train on the search's data (darts) are tested through the driver
# (tests/test_darts.py); these see only architectures and fitness.
NAMES = [name for name in strategies.names()
         if "data" not in inspect.signature(strategies.factory(name)).parameters]


class Built:
    """A strategy whose ask/tell count their traces, with jitted versions."""

    def __init__(self, name: str):
        base = strategies.get(name, SPACE, **SMALL.get(name, {}))
        self.traces = collections.Counter()

        def counted(label, fn):
            def wrapper(*args):
                self.traces[label] += 1
                return fn(*args)
            return wrapper

        self.strategy = base._replace(ask=counted("ask", base.ask), tell=counted("tell", base.tell))
        self.info = base.info
        jittable = base.info.jittable
        self.ask = jax.jit(self.strategy.ask) if jittable else self.strategy.ask
        self.tell = jax.jit(self.strategy.tell) if jittable else self.strategy.tell
        self.evaluate = evaluator(base)

    def fitness(self, key, state, archs):
        if self.strategy.fidelity is None:
            return self.evaluate(key, archs)
        return self.evaluate(key, archs, self.strategy.fidelity(state))


@functools.cache
def build(name: str) -> Built:
    """One Built per strategy for the whole module, so each compiles once."""
    return Built(name)


@pytest.fixture(params=NAMES)
def built(request) -> Built:
    return build(request.param)


def _no_nan(tree) -> bool:
    leaves = jax.tree_util.tree_leaves(tree)
    return not any(np.isnan(np.asarray(leaf)).any() for leaf in leaves
                   if np.issubdtype(np.asarray(leaf).dtype, np.floating))


def _trees_equal(a, b, exact: bool = False) -> None:
    """Leaf-wise equality; float leaves up to rounding unless ``exact``."""
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        if exact:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-4)


def test_registry_lists_every_strategy_with_consistent_metadata():
    assert set(NAMES) >= {"random", "evolution", "local", "reinforce", "bananas", "halving",
                          "hyperband", "zero_cost"}
    for name in NAMES:
        strategy = strategies.get(name, "nasbench201", **SMALL.get(name, {}))
        assert strategy.info.name == name
        assert strategy.info.multi_fidelity == (strategy.fidelity is not None)
        assert strategy.space == SPACE
    with pytest.raises(ValueError, match="unknown strategy"):
        strategies.get("annealing", SPACE)


def test_ask_tell_best_shapes_and_validity(built):
    strategy, info = built.strategy, built.info
    k_init, k_ask, k_eval, k_tell = jax.random.split(jax.random.key(0), 4)
    state = strategy.init(k_init)
    archs, state = built.ask(k_ask, state)
    assert archs.adj.shape == (info.batch_size, SPACE.max_nodes, SPACE.max_nodes)
    assert archs.ops.shape == (info.batch_size, SPACE.max_nodes)
    assert bool(jnp.all(jax.vmap(SPACE.is_valid)(archs)))
    fitness = built.fitness(k_eval, state, archs)
    state, metrics = built.tell(k_tell, state, archs, fitness)
    assert all(np.shape(value) == () for value in metrics.values())
    arch, best_fitness = strategy.best(state)
    SPACE.validate(Arch(adj=np.asarray(arch.adj), ops=np.asarray(arch.ops)))
    np.testing.assert_allclose(best_fitness, np.min(fitness), rtol=1e-6)


def test_jitted_and_eager_agree(built):
    if not built.info.jittable:
        pytest.skip("host-side strategy: ask/tell are plain Python")
    strategy = built.strategy
    k_init, k_ask, k_eval, k_tell = jax.random.split(jax.random.key(1), 4)
    state = strategy.init(k_init)
    # ask computes every branch (e.g. tournament and initial population) and selects,
    # so one round covers the code paths
    eager_archs, eager_state = strategy.ask(k_ask, state)
    archs, jit_state = built.ask(k_ask, state)
    np.testing.assert_array_equal(eager_archs.ops, archs.ops)
    np.testing.assert_array_equal(eager_archs.adj, archs.adj)
    fitness = built.fitness(k_eval, state, archs)
    eager_state, eager_metrics = strategy.tell(k_tell, eager_state, archs, fitness)
    state, metrics = built.tell(k_tell, jit_state, archs, fitness)
    _trees_equal(eager_state, state)
    _trees_equal(eager_metrics, metrics)


def test_deterministic_given_key(built):
    runs = [strategies.run_stepwise(jax.random.key(seed), built.strategy, built.evaluate, 3)[1]
            for seed in (7, 7, 8)]
    _trees_equal(runs[0], runs[1], exact=True)
    assert not np.array_equal(runs[0].archs.ops, runs[2].archs.ops)


def test_nan_fitness_counts_as_inf(built):
    strategy = built.strategy
    k_init, k_ask, k_eval, k_tell, k_next = jax.random.split(jax.random.key(2), 5)
    state = strategy.init(k_init)
    archs, state = built.ask(k_ask, state)
    fitness = np.asarray(built.fitness(k_eval, state, archs)).copy()
    winner = int(np.argmin(fitness))
    fitness[winner] = np.nan
    told, _ = built.tell(k_tell, state, archs, jnp.asarray(fitness))
    assert _no_nan(told)
    _, best_fitness = strategy.best(told)
    others = np.delete(fitness, winner)
    np.testing.assert_allclose(best_fitness, others.min(), rtol=1e-6)

    all_nan, _ = built.tell(k_tell, state, archs, jnp.full_like(jnp.asarray(fitness), jnp.nan))
    assert _no_nan(all_nan)
    assert np.isposinf(strategy.best(all_nan)[1])
    archs, all_nan = built.ask(k_next, all_nan)  # the state still works
    assert bool(jnp.all(jax.vmap(SPACE.is_valid)(archs)))


def test_changing_params_does_not_recompile(built):
    if not built.info.jittable:
        pytest.skip("host-side strategy: nothing is compiled")
    strategy = built.strategy

    def changed(leaf):
        leaf = jnp.asarray(leaf)
        return leaf + 1 if jnp.issubdtype(leaf.dtype, jnp.integer) else leaf * 0.5

    other = jax.tree_util.tree_map(changed, strategy.default_params)
    keys = jax.random.split(jax.random.key(3), 6)
    for params, (k_init, k_ask, k_tell) in zip((None, other), (keys[:3], keys[3:]), strict=True):
        state = strategy.init(k_init, params)
        archs, state = built.ask(k_ask, state)
        fitness = built.fitness(k_tell, state, archs)
        built.tell(k_tell, state, archs, fitness)
        if params is None:
            traced = dict(built.traces)
    assert dict(built.traces) == traced


def test_fused_run_matches_stepwise_run(built):
    if not built.info.jittable:
        with pytest.raises(ValueError, match="cannot be fused"):
            strategies.run_fused(jax.random.key(4), built.strategy, built.evaluate, 3)
        return
    key = jax.random.key(4)
    fused_state, fused = strategies.run_fused(key, built.strategy, built.evaluate, 3)
    stepwise_state, stepwise = strategies.run_stepwise(key, built.strategy, built.evaluate, 3)
    np.testing.assert_array_equal(fused.archs.ops, stepwise.archs.ops)
    np.testing.assert_array_equal(fused.archs.adj, stepwise.archs.adj)
    np.testing.assert_allclose(fused.fitness, stepwise.fitness, rtol=1e-5)
    np.testing.assert_allclose(fused.best_fitness, stepwise.best_fitness, rtol=1e-5)
    assert fused.fitness.shape == (3, built.info.batch_size)
    assert (fused.fidelity is None) == (built.strategy.fidelity is None)
    _trees_equal(fused_state, stepwise_state)


@pytest.mark.parametrize("name", ["random", "evolution"])
def test_vector_fitness_keeps_the_pareto_front(name):
    strategy = strategies.get(name, SPACE, objectives=2, archive_size=16,
                              **SMALL[name])
    assert strategy.info.vector_fitness

    def evaluate(key, archs):
        del key
        size = jnp.sum(archs.ops[:, 1:-1] >= 2, 1).astype(jnp.float32)  # conv count
        return jnp.stack([OBJECTIVE(archs), size], 1)

    _, history = strategies.run_fused(jax.random.key(5), strategy, evaluate, 6)
    front_fitness = np.asarray(history.best_fitness[-1])
    told = np.asarray(history.fitness).reshape(-1, 2)
    on_front = np.all(np.isfinite(front_fitness), 1)
    assert on_front.any()
    front = front_fitness[on_front]
    # no told point dominates a front member, and every non-dominated told value is on it
    assert not np.any(np.all(told[:, None] <= front[None], -1)
                      & np.any(told[:, None] < front[None], -1))
    told_front = told[np.asarray(pareto.front_mask(jnp.asarray(told)))]
    assert {tuple(row) for row in told_front} == {tuple(row) for row in front}


def test_scalarised_strategies_take_vector_fitness_with_weights():
    strategy = strategies.get("zero_cost", SPACE, objectives=2, weights=(1.0, 0.0),
                              **SMALL["zero_cost"])
    state = strategy.init(jax.random.key(6))
    archs, state = strategy.ask(jax.random.key(7), state)
    fitness = jnp.stack([jnp.arange(4.0), -jnp.arange(4.0) * 10], 1)
    told, _ = strategy.tell(jax.random.key(8), state, archs, fitness)
    np.testing.assert_array_equal(strategy.best(told)[1], [0.0, 0.0])
    np.testing.assert_array_equal(strategy.best(told)[0].ops, archs.ops[0])
    state = state.replace(params=state.params.replace(weights=jnp.array([0.0, 1.0])))
    told, _ = strategy.tell(jax.random.key(8), state, archs, fitness)
    np.testing.assert_array_equal(strategy.best(told)[1], [3.0, -30.0])
    with pytest.raises(ValueError, match="fitness must have shape"):
        strategy.tell(jax.random.key(8), state, archs, fitness[:, 0])
    np.testing.assert_array_equal(
        strategies.score(jnp.array([[1.0, 2.0], [jnp.nan, 0.0]]), jnp.array([0.5, 0.5])),
        [1.5, np.inf])


def _brute_force_ranks(f: np.ndarray) -> np.ndarray:
    f = np.where(np.isnan(f), np.inf, f)
    ranks = np.full(len(f), -1)
    level = 0
    while (ranks < 0).any():
        remaining = np.flatnonzero(ranks < 0)
        front = [i for i in remaining
                 if not any(np.all(f[j] <= f[i]) and np.any(f[j] < f[i]) for j in remaining)]
        ranks[front] = level
        level += 1
    return ranks


def _brute_force_crowding(f: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    distance = np.zeros(len(f))
    for level in np.unique(ranks):
        members = np.flatnonzero(ranks == level)
        for m in range(f.shape[1]):
            order = members[np.argsort(f[members, m], kind="stable")]
            span = f[order[-1], m] - f[order[0], m]
            distance[order[0]] = distance[order[-1]] = np.inf
            for before, at, after in zip(order, order[1:], order[2:], strict=False):
                if span > 0:
                    distance[at] += (f[after, m] - f[before, m]) / span
    return distance


@jax.jit
def _pareto_summary(f):
    rank = pareto.non_dominated_rank(f)
    finite = jnp.all(jnp.isfinite(f), 1)
    crowd = pareto.crowding_distance(jnp.where(finite[:, None], f, 0.0), rank)
    return rank, pareto.front_mask(f), crowd, pareto.select(f, 3)


def test_pareto_ranks_and_crowding_match_brute_force():
    rng = np.random.default_rng(0)
    for points, objectives in ((24, 2), (24, 3)):
        f = rng.integers(0, 5, (points, objectives)).astype(np.float32)  # ties on purpose
        ranks, front, crowd, chosen = map(np.asarray, _pareto_summary(jnp.asarray(f)))
        np.testing.assert_array_equal(ranks, _brute_force_ranks(f))
        np.testing.assert_array_equal(front, ranks == 0)
        expected = _brute_force_crowding(f, ranks)
        # tied points may be ordered differently: compare the ends and the totals per front
        for level in np.unique(ranks):
            members = ranks == level
            np.testing.assert_array_equal(np.isinf(crowd[members]).sum(),
                                          np.isinf(expected[members]).sum())
            np.testing.assert_allclose(crowd[members & np.isfinite(crowd)].sum(),
                                       expected[members & np.isfinite(expected)].sum(),
                                       rtol=1e-5)
        assert np.all(np.diff(ranks[chosen]) >= 0) and ranks[chosen[0]] == 0
        f[3, 0], f[4, 1] = np.nan, np.inf  # a failed run is dominated by every finite one
        ranks, front, _, _ = map(np.asarray, _pareto_summary(jnp.asarray(f)))
        np.testing.assert_array_equal(ranks, _brute_force_ranks(f))
        np.testing.assert_array_equal(front, ranks == 0)


def test_crowding_distance_exact_without_ties():
    f = np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 1.5], [4.0, 0.0], [3.0, 3.0]], np.float32)
    ranks, _, crowd, _ = map(np.asarray, _pareto_summary(jnp.asarray(f)))
    np.testing.assert_array_equal(ranks, [0, 0, 0, 0, 1])
    np.testing.assert_allclose(crowd, _brute_force_crowding(f, ranks))
    np.testing.assert_allclose(crowd[1], 2 / 4 + 2.5 / 4)


def test_evolution_is_a_fifo_with_tournaments_on_the_population():
    evolution = build("evolution")  # P=8, B=4
    strategy, ask, tell = evolution.strategy, evolution.ask, evolution.tell
    state = strategy.init(jax.random.key(9))
    told = []
    for step in range(4):
        archs, state = ask(jax.random.key(10 + step), state)
        if step < 2:  # the first P asked archs are the initial population
            np.testing.assert_array_equal(archs.ops, state.initial.ops[4 * step:4 * step + 4])
        state, _ = tell(jax.random.key(20 + step), state, archs, OBJECTIVE(archs))
        told.append(np.asarray(archs.ops))
    # the population holds exactly the last P = 8 told archs: the oldest died
    population = {tuple(row) for row in np.asarray(state.population.ops)}
    assert population == {tuple(row) for row in np.concatenate(told[-2:])}
    # a tournament over the whole population picks its best; each child is one mutation away
    params = state.params.replace(tournament_size=jnp.int32(8))
    children, _ = ask(jax.random.key(30), state.replace(params=params))
    champion = np.asarray(state.population.ops)[np.argmin(state.fitness)]
    assert np.all((np.asarray(children.ops) != champion[None]).sum(1) == 1)


def test_evolution_warm_starts_from_top_scored():
    zero_cost = build("zero_cost")  # its ask is top_scored(key, SPACE, correlated_score, 4, 32)
    initial, _ = zero_cost.ask(jax.random.key(11), zero_cost.strategy.init(jax.random.key(0)))
    k_pool, k_score = jax.random.split(jax.random.key(11))
    pool = SPACE.sample(k_pool, 32)
    scores = np.asarray(correlated_score(k_score, pool))
    np.testing.assert_array_equal(initial.ops, np.asarray(pool.ops)[np.argsort(-scores)[:4]])
    evolution = strategies.seeded(build("evolution").strategy, initial[:3])
    state = evolution.init(jax.random.key(12))
    archs, _ = jax.jit(evolution.ask)(jax.random.key(13), state)
    np.testing.assert_array_equal(archs.ops[:3], initial.ops[:3])
    np.testing.assert_array_equal(archs.ops[3], state.inner.initial.ops[3])


def _schedule(name, generations):
    """Runs ask/tell on the exact objective; yields (fidelity, asked ops, fitness, metrics)."""
    built = build(name)
    strategy, ask, tell = built.strategy, built.ask, built.tell
    state = strategy.init(jax.random.key(14))
    for step in range(generations):
        steps = int(strategy.fidelity(state))
        archs, state = ask(jax.random.key(100 + step), state)
        fitness = OBJECTIVE(archs)
        state, metrics = tell(jax.random.key(200 + step), state, archs, fitness)
        yield steps, np.asarray(archs.ops), np.asarray(fitness), metrics


def test_successive_halving_continues_the_best_survivors():
    # B=2, eta=2, 3 rungs: 8 archs at 1 step, their best 4 at 2 steps, best 2 at 4 steps
    records = list(_schedule("halving", 7 + 1))
    steps = [r[0] for r in records]
    assert steps == [1, 1, 1, 1, 2, 2, 4, 1]
    rung0 = np.concatenate([r[1] for r in records[:4]])
    fitness0 = np.concatenate([r[2] for r in records[:4]])
    rung1 = np.concatenate([r[1] for r in records[4:6]])
    fitness1 = np.concatenate([r[2] for r in records[4:6]])
    np.testing.assert_array_equal(rung1, rung0[np.argsort(fitness0, kind="stable")[:4]])
    np.testing.assert_array_equal(records[6][1], rung1[np.argsort(fitness1, kind="stable")[:2]])
    # charged steps assume the survivors continue: 8*1 + 4*(2-1) + 2*(4-2)
    assert int(records[6][3]["training_steps"]) == 8 + 4 + 4
    # max_steps is traced; rungs train R // eta**(rungs-1-i) steps, at least 1
    state = build("halving").strategy.init(jax.random.key(0))
    for max_steps, expected in ((10, 2), (3, 1)):
        params = state.params.replace(max_steps=jnp.int32(max_steps))
        assert int(build("halving").strategy.fidelity(state.replace(params=params))) == expected


def test_hyperband_cycles_its_brackets():
    # eta=2, s_max=2: bracket s=2 (4 asks at 1, 2 at 2, 1 at 4), s=1 (2*2*2 archs at 2 -> 4),
    # s=0 (3 asks at 4); then the cycle restarts at 1 step
    steps = [r[0] for r in _schedule("hyperband", 7 + 6 + 3 + 1)]
    assert steps == [1] * 4 + [2] * 2 + [4] + [2] * 4 + [4] * 2 + [4] * 3 + [1]


def test_local_search_stops_climbs_at_local_optima():
    strategy = build("local").strategy
    state = strategy.init(jax.random.key(15))
    evaluate = jax.jit(OBJECTIVE.__call__)
    stops = 0
    for step in range(30):
        archs, state = strategy.ask(jax.random.key(300 + step), state)
        state, metrics = strategy.tell(jax.random.key(400 + step), state, archs,
                                       evaluate(archs))
        if not state.climbing:
            current = float(OBJECTIVE.value(state.current))
            assert current == pytest.approx(float(state.current_score))
            assert float(np.min(evaluate(SPACE.neighbours(state.current)))) >= current
            stops += 1
    assert stops >= 1 and int(metrics["restarts"]) >= 2


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="batch_size .* must not exceed"):
        strategies.get("evolution", SPACE, population_size=4, batch_size=8)
    with pytest.raises(ValueError, match="acquisition"):
        strategies.get("bananas", SPACE, acquisition="ei")
    with pytest.raises(ValueError, match="score_fn"):
        strategies.get("zero_cost", SPACE, score_fn=None)
    with pytest.raises(ValueError, match="weights must have one entry"):
        strategies.get("reinforce", SPACE, objectives=2, weights=(1.0,))
    with pytest.raises(ValueError, match="eta"):
        strategies.get("hyperband", SPACE, eta=1)


def test_reinforce_controller_draws_valid_archs_in_dag_and_chain_spaces():
    dag = spaces.get("nasbench101")
    strategy = strategies.get("reinforce", dag, batch_size=6)
    archs, state = jax.jit(strategy.ask)(jax.random.key(16), strategy.init(jax.random.key(17)))
    dag.validate_population(archs)
    # a pruned node's op decision is not used; every edge decision is
    edges = dag.max_nodes * (dag.max_nodes - 1) // 2
    np.testing.assert_array_equal(state.used[:, edges:], np.asarray(archs.ops)[:, 1:-1] >= 0)
    assert np.all(state.used[:, :edges])

    chain = spaces.get("mlp", max_layers=3)
    table = decisions(chain)
    assert table.mask.shape == (4, chain.num_ops) and table.mask[0].sum() == 3
    arch, used = table.decode(jnp.array([1, 4, 0, 7], jnp.int32))  # depth 2: ops 4, 0
    chain.validate(Arch(adj=np.asarray(arch.adj), ops=np.asarray(arch.ops)))
    np.testing.assert_array_equal(arch.ops, [-1, 4, 0, -3, -2])
    np.testing.assert_array_equal(used, [True, True, True, False])
