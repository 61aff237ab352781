"""The strategies' operators on their own, against expectations worked out by hand."""

from __future__ import annotations

import copy
import math
import pickle
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import spaces, strategies
from jaxnas.arch import PAD, Arch, prune, stack
from jaxnas.strategies import _bananas, _evolution, _halving, _local, _reinforce, _seeded
from jaxnas.strategies._base import Strategy, improve, initial_best, score
from jaxnas.strategies._decisions import Decisions, decisions
from jaxnas.strategies._population import repeats, set_rows, take, top_unique

NB201 = spaces.get("nasbench201")
INF = np.inf


def cell(*ops: int) -> Arch:
    """The nasbench201 cell of six edge ops."""
    return NB201._build(jnp.asarray(ops, jnp.int32))


def cells(*rows) -> Arch:
    """A population of nasbench201 cells, one row of six edge ops each."""
    return jax.tree_util.tree_map(jnp.asarray, stack([cell(*row) for row in rows]))


# --- the shared base ------------------------------------------------------------------


def test_strategy_and_info_are_built_by_keyword_with_defaults():
    info = strategies.Info(name="x", batch_size=3)
    assert (info.objectives, info.jittable, info.multi_fidelity, info.vector_fitness,
            info.max_asks) == (1, True, False, False, None)
    strategy = Strategy(init=len, ask=len, tell=len, best=len, space=NB201, info=info)
    assert (strategy.default_params, strategy.fidelity, strategy.lineage,
            strategy.fresh) == (None, None, None, None)
    with pytest.raises(TypeError, match="needs best, space"):
        Strategy(init=len, ask=len, tell=len, info=info)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert copy.deepcopy(info) == info and pickle.loads(pickle.dumps(info)) == info
        assert copy.copy(strategy) == strategy and info._replace(objectives=2).objectives == 2
    with pytest.raises(TypeError):
        Strategy(len, len, len, len, None, {"a": 1}, NB201, info)


def test_score_and_improve_treat_non_finite_fitness_as_inf():
    weights = jnp.array([0.75, 0.25])
    np.testing.assert_array_equal(
        score(jnp.array([[1.0, 3.0], [2.0, jnp.nan], [4.0, 0.0]]), weights), [1.5, INF, 3.0])
    np.testing.assert_array_equal(score(jnp.array([1.0, jnp.nan, -jnp.inf]), weights[:1]),
                                  [1.0, INF, INF])
    archs = cells((0, 0, 0, 0, 0, 0), (1, 1, 1, 1, 1, 1), (2, 2, 2, 2, 2, 2))
    incumbent = cell(3, 3, 3, 3, 3, 3)
    arch, fitness = improve(incumbent, jnp.float32(0.5), archs, jnp.array([jnp.nan, 0.2, 0.7]),
                            jnp.ones(1))
    assert float(fitness) == pytest.approx(0.2) and arch.ops.tolist() == archs.ops[1].tolist()
    arch, fitness = improve(incumbent, jnp.float32(0.1), archs, jnp.array([jnp.nan, 0.2, 0.7]),
                            jnp.ones(1))
    assert float(fitness) == pytest.approx(0.1) and arch.ops.tolist() == incumbent.ops.tolist()


def test_initial_best_is_one_arch_or_an_archive():
    first = cell(0, 1, 2, 3, 4, 0)
    arch, fitness = initial_best(first, 2)
    assert arch is first and fitness.shape == (2,) and np.isposinf(fitness).all()
    archive, fitness = initial_best(first, 2, archive_size=5)
    assert archive.ops.shape == (5, 8) and fitness.shape == (5, 2)


def test_make_strategy_adds_the_bookkeeping():
    calls = []

    class State(dict):
        def replace(self, **fields):
            return State(self, **fields)

        __getattr__ = dict.__getitem__

    def init(key, params):
        arch, fitness = initial_best(cell(0, 0, 0, 0, 0, 0), 1)
        return State(params=params, best_arch=arch, best_fitness=fitness, count=0)

    def tell(key, state, archs, fitness):
        calls.append(fitness.dtype)
        return state, {"seen": 1}

    strategy = strategies.make_strategy("mine", NB201, batch_size=2, init=init, ask=None,
                                        tell=tell, default_params="defaults")
    assert strategy.info == strategies.Info(name="mine", batch_size=2)
    state = strategy.init(None)
    assert state.params == "defaults" and strategy.init(None, "other").params == "other"
    archs = cells((1, 1, 1, 1, 1, 1), (2, 2, 2, 2, 2, 2))
    state, metrics = strategy.tell(None, state, archs, np.array([np.nan, 3.0], np.float64))
    assert list(metrics) == ["count", "seen"] and metrics["count"] == 2 == state.count
    assert calls == [jnp.float32]
    arch, fitness = strategy.best(state)
    assert float(fitness) == 3.0 and arch.ops.tolist() == archs.ops[1].tolist()
    with pytest.raises(ValueError, match=r"mine: fitness must have shape \(2,\)"):
        strategy.tell(None, state, archs, np.zeros(3))


def test_population_helpers():
    archs = cells((0,) * 6, (1,) * 6, (0,) * 6, (2,) * 6)
    np.testing.assert_array_equal(repeats(archs), [False, False, True, False])
    # the best score 9 sits on a repeat of member 0, so member 3 (score 2) comes in instead
    chosen = top_unique(jnp.array([5.0, 1.0, 9.0, 2.0]), archs, 3)
    assert sorted(chosen.tolist()) == [1, 2, 3]
    replaced = set_rows(archs, jnp.array([3, 0]), cells((4,) * 6, (3,) * 6))
    assert replaced.ops[:, 1].tolist() == [3, 1, 0, 4]
    assert take(archs, jnp.array([[3]])).ops.shape == (1, 1, 8)


# --- regularised evolution ---------------------------------------------------------------


def test_tournament_order_ranks_filled_members_first():
    fitness = jnp.array([3.0, jnp.nan, jnp.inf, 1.0, 5.0])
    filled = jnp.array([True, True, True, True, False])
    np.testing.assert_array_equal(_evolution.tournament_order(fitness, filled),
                                  np.float32([3.0, 3e38, 3e38, 1.0, INF]))
    # two objectives: members 0 and 1 are the front (rank 0, key < 2), member 2 is rank 1
    pareto = jnp.array([[1.0, 2.0], [2.0, 1.0], [3.0, 3.0], [0.0, 0.0]])
    order = _evolution.tournament_order(pareto, jnp.array([True, True, True, False]))
    assert order[0] < 2 and order[1] < 2 and 2 <= order[2] < 4 and np.isposinf(order[3])


def test_tournament_draws_without_replacement_among_filled_members():
    order = jnp.array([3.0, 1.0, 2.0, -5.0])  # member 3 is not filled: never drawn
    filled = jnp.array([True, True, True, False])
    keys = jax.random.split(jax.random.key(0), 3000)
    run = jax.jit(jax.vmap(_evolution.tournament, in_axes=(0, None, None, None)))
    wins = np.bincount(run(keys, order, filled, 2), minlength=4) / len(keys)
    # of the three filled members two are drawn: the best (1) unless both others are
    # drawn, 2/3; the second (2) when drawn with the worst, 1/3; the worst never
    np.testing.assert_allclose(wins, [0, 2 / 3, 1 / 3, 0], atol=0.03)
    assert set(np.asarray(run(keys[:50], order, filled, 3)).tolist()) == {1}
    assert set(np.asarray(run(keys, order, filled, 1)).tolist()) == {0, 1, 2}


def test_mutate_applies_at_least_one_move():
    parent = cell(0, 1, 2, 3, 4, 0)
    for moves, changed in ((0, {1}), (1, {1}), (3, {0, 1, 2, 3})):
        for key in jax.random.split(jax.random.key(moves), 5):
            child = _evolution.mutate(key, NB201, parent, jnp.int32(moves))
            assert int(jnp.sum(child.ops != parent.ops)) in changed  # a move changes one op


def test_seeds_fill_the_first_rows_of_asks_that_take_them():
    own = cells(*[(0,) * 6] * 4)
    seeds = cells((1,) * 6, (2,) * 6, (3,) * 6)
    archs, mask = _seeded.place(own, seeds, jnp.int32(0), True)
    assert archs.ops[:, 1].tolist() == [1, 2, 3, 0] and mask.tolist() == [1, 1, 1, 0]
    archs, mask = _seeded.place(own, seeds, jnp.int32(2), True)  # two were asked before
    assert archs.ops[:, 1].tolist() == [3, 0, 0, 0] and mask.tolist() == [1, 0, 0, 0]
    archs, mask = _seeded.place(own, seeds, jnp.int32(0), jnp.array(False))
    assert archs.ops[:, 1].tolist() == [0, 0, 0, 0] and not mask.any()
    host = jax.device_get((own, seeds))
    archs, mask = _seeded.place(*host, np.int32(1), True, xp=np)
    assert isinstance(archs.ops, np.ndarray) and archs.ops[:, 1].tolist() == [2, 3, 0, 0]


# --- successive halving and Hyperband ------------------------------------------------------


def test_halving_schedule_tables():
    chunks, divisor = _halving._tables([(2, 1)], 2)
    np.testing.assert_array_equal(chunks, [[4, 2, 1]])
    np.testing.assert_array_equal(divisor, [[4, 2, 1]])
    chunks, divisor = _halving._tables([(2, 1), (1, 2), (0, 3)], 3)
    np.testing.assert_array_equal(chunks, [[9, 3, 1], [6, 2, 0], [3, 0, 0]])
    np.testing.assert_array_equal(divisor, [[9, 3, 1], [3, 1, 1], [1, 1, 1]])
    assert int(_halving.rung_steps(jnp.int32(27), 9)) == 3
    assert int(_halving.rung_steps(jnp.int32(2), 4)) == 1


@pytest.mark.parametrize("steps, value, best_steps, best_value, expected", [
    (4, 5.0, 2, 1.0, True),     # a higher fidelity wins even with a worse score
    (2, 0.5, 2, 1.0, True),     # the same fidelity, a lower score
    (2, 1.5, 2, 1.0, False),
    (1, 0.1, 2, 1.0, False),    # a lower fidelity never
    (4, INF, 2, 1.0, False),    # nor a non-finite score
])
def test_halving_prefers_the_highest_fidelity(steps, value, best_steps, best_value, expected):
    assert bool(_halving.prefers(jnp.int32(steps), jnp.float32(value), jnp.int32(best_steps),
                                 jnp.float32(best_value))) is expected


def test_halving_promotes_the_best_of_the_active_rows():
    members = cells(*[(i,) * 6 for i in range(4)])
    promoted = _halving.promote(members, jnp.array([3.0, 1.0, INF, 0.0]),
                                jnp.array([True, True, True, False]))
    assert promoted.ops[:, 1].tolist() == [1, 0, 2, 3]


# --- BANANAS ---------------------------------------------------------------------------


def test_bananas_encoding_is_edge_bits_then_one_hot_ops():
    arch = Arch(adj=jnp.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]], jnp.int8),
                ops=jnp.array([-1, 1, -2], jnp.int32))
    np.testing.assert_array_equal(_bananas.encode(arch, num_ops=2), [1, 1, 1, 0, 1, 0])
    padded = Arch(adj=arch.adj, ops=jnp.array([-1, PAD, -2], jnp.int32))
    np.testing.assert_array_equal(_bananas.encode(padded, num_ops=2), [1, 1, 1, 0, 0, 1])


def test_standardise_fills_non_finite_scores_with_the_worst_finite_one():
    scores = jnp.array([1.0, 3.0, INF, 7.0])
    filled = jnp.array([True, True, True, False])
    # targets 1, 3, 3 (inf -> worst finite): mean 7/3, standard deviation sqrt(8/9)
    root2 = math.sqrt(2)
    np.testing.assert_allclose(_bananas.standardise(scores, filled)[:3],
                               [-root2, 1 / root2, 1 / root2], rtol=1e-5)
    np.testing.assert_array_equal(_bananas.standardise(jnp.full(4, INF), filled), np.zeros(4))


def test_acquisition_functions():
    mean, std = jnp.array([1.0, 2.0, 0.0]), jnp.array([0.5, 0.0, 2.0])
    np.testing.assert_allclose(_bananas.acquire(None, mean, std, "ucb", jnp.float32(2.0)),
                               [0.0, 2.0, -4.0])
    draws = _bananas.acquire(jax.random.key(0), jnp.zeros(20000), jnp.full(20000, 2.0), "its",
                             None)
    assert abs(float(draws.mean())) < 0.05 and float(draws.std()) == pytest.approx(2.0, 0.03)
    exact = _bananas.acquire(jax.random.key(0), mean, jnp.zeros(3), "its", None)
    np.testing.assert_array_equal(exact, mean)


def test_told_archs_replace_empty_rows_first_then_the_worst():
    scores = jnp.array([5.0, INF, 1.0, 9.0])
    filled = jnp.array([True, True, True, False])
    assert _bananas.slots_to_replace(scores, filled, 2).tolist() == [3, 1]
    assert _bananas.slots_to_replace(scores, filled, 3).tolist() == [3, 1, 0]


def test_ensemble_mlps():
    layers = _bananas.init_ensemble(jax.random.key(0), (50, 400, 1), 3)
    (w1, b1), (w2, b2) = layers
    assert w1.shape == (3, 50, 400) and b2.shape == (3, 1) and not np.any(b1)
    assert float(w1.std()) == pytest.approx(math.sqrt(2 / 50), rel=0.05)  # He-normal
    identity = [(jnp.eye(2), jnp.array([0.0, -1.0])), (jnp.ones((2, 1)), jnp.array([0.5]))]
    x = jnp.array([[2.0, 3.0], [-1.0, 0.5]])
    np.testing.assert_allclose(_bananas.apply_mlp(identity, x), [2 + 2 + 0.5, 0 + 0 + 0.5])
    constant = [(jnp.zeros((2, 2, 1)), jnp.array([[1.0], [3.0]]))]
    mean, std = _bananas.predict(constant, x)
    np.testing.assert_allclose(mean, [2.0, 2.0]) and np.testing.assert_allclose(std, [1.0, 1.0])


def test_fit_mlp_learns_a_linear_target_on_the_masked_rows():
    x = jax.random.normal(jax.random.key(1), (32, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5])
    mask = jnp.arange(32) < 24
    y = jnp.where(mask, y, 100.0)  # rows off the mask must not count
    start = [(w[0], b[0]) for w, b in _bananas.init_ensemble(jax.random.key(2), (3, 16, 1), 1)]
    _, first = _bananas.fit_mlp(start, x, y, mask, jnp.float32(0.01), steps=1)
    _, last = _bananas.fit_mlp(start, x, y, mask, jnp.float32(0.01), steps=300)
    assert float(last) < 0.05 * float(first)


def _buffer(scores, filled):
    strategy = strategies.get("bananas", NB201, batch_size=2, capacity=4, num_parents=2,
                              mutants_per_parent=2, random_candidates=2)
    state = strategy.init(jax.random.key(0))
    return state.replace(archs=cells(*[(i,) * 6 for i in range(4)]),
                         scores=jnp.array(scores, jnp.float32), filled=jnp.array(filled))


def test_the_buffer_stores_told_archs_in_empty_rows_then_over_the_worst():
    state = _bananas.store(_buffer([1.0, 5.0, INF, INF], [True, True, False, False]),
                           cells((4,) * 6, (4,) * 6), jnp.array([7.0, 8.0]))
    np.testing.assert_array_equal(state.scores, [1, 5, 7, 8])
    assert state.filled.all() and state.archs.ops[:, 1].tolist() == [0, 1, 4, 4]
    state = _bananas.store(state, cells((3,) * 6), jnp.array([0.0]))
    np.testing.assert_array_equal(state.scores, [1, 5, 7, 0])


def test_the_candidate_pool_mutates_the_best_told_archs():
    state = _buffer([3.0, 1.0, 2.0, 0.0], [True, True, True, False])
    extra = cells((4,) * 6)
    pool, parent_of = _bananas.candidate_pool(jax.random.key(0), NB201, state, 2, 3, extra)
    assert parent_of.tolist() == [1, 1, 1, 2, 2, 2]  # row 3 is empty, whatever its score
    assert pool.ops.shape == (7, 8) and pool.ops[6].tolist() == extra.ops[0].tolist()
    parents = state.archs.ops[parent_of]
    assert (jnp.sum(pool.ops[:6] != parents, -1) == 1).all()  # one mutation each


# --- REINFORCE ----------------------------------------------------------------------------


def test_advantages_standardise_rewards_against_the_baseline():
    root = math.sqrt(8 / 9)  # the standard deviation of rewards 1, 3, 1
    reward, previous, advantage = _reinforce.advantages(jnp.array([1.0, 3.0, -INF]),
                                                        jnp.float32(0.0), jnp.array(False))
    np.testing.assert_allclose(reward, [1, 3, 1])
    assert float(previous) == pytest.approx(5 / 3)  # no baseline yet: the batch mean
    np.testing.assert_allclose(advantage, (np.array([1, 3, 1]) - 5 / 3) / root, rtol=1e-5)
    _, previous, advantage = _reinforce.advantages(jnp.array([1.0, 3.0, -INF]),
                                                   jnp.float32(2.0), jnp.array(True))
    assert float(previous) == 2.0
    np.testing.assert_allclose(advantage, np.array([-1, 1, -1]) / root, rtol=1e-5)
    reward, _, advantage = _reinforce.advantages(jnp.full(3, -INF), jnp.float32(2.0),
                                                 jnp.array(True))
    np.testing.assert_array_equal(reward, [2, 2, 2])
    np.testing.assert_array_equal(advantage, [0, 0, 0])


def test_policy_objective_and_its_gradient():
    mask = jnp.array([[True, True, True], [True, True, False]])
    logits = jnp.zeros((2, 3))
    choices, used = jnp.array([[0, 1]]), jnp.array([[True, False]])
    loss, entropy = _reinforce.policy_objective(logits, mask, choices, used, jnp.array([2.0]),
                                                jnp.float32(0.5))
    assert float(entropy) == pytest.approx((math.log(3) + math.log(2)) / 2)
    # only decision 0 is used: log p = log 1/3
    assert float(loss) == pytest.approx(2 * math.log(3) - 0.5 * float(entropy), rel=1e-6)
    grads = jax.grad(lambda z: _reinforce.policy_objective(
        z, mask, choices, used, jnp.array([2.0]), jnp.float32(0.0))[0])(logits)
    # d(-a log p_c)/dz_j = a (p_j - [j == c]) with p = 1/3
    np.testing.assert_allclose(grads, [[2 * (1 / 3 - 1), 2 / 3, 2 / 3], [0, 0, 0]], atol=1e-6)


def test_reinforce_update_takes_one_adam_step_and_moves_the_baseline():
    strategy = strategies.get("reinforce", NB201, batch_size=2, learning_rate=0.1,
                              baseline_decay=0.9)
    state = strategy.init(jax.random.key(0))
    mask = jnp.ones((6, 5), bool)
    choices = jnp.array([[0] * 6, [1] * 6])
    used = jnp.ones((2, 6), bool)
    new, metrics = _reinforce.update(state, mask, choices, used, jnp.array([1.0, 3.0]))
    # rewards -1, -3: mean -2 is the first baseline; advantages +1, -1: choice 0 gains and
    # choice 1 loses probability everywhere, and Adam's first step is lr * sign(gradient)
    np.testing.assert_allclose(new.logits[:, 0], 0.1, rtol=1e-3)
    np.testing.assert_allclose(new.logits[:, 1], -0.1, rtol=1e-3)
    assert float(new.baseline) == pytest.approx(-2.0) and bool(new.has_baseline)
    assert float(metrics["mean_reward"]) == -2.0
    again, _ = _reinforce.update(new, mask, choices, used, jnp.array([0.0, 0.0]))
    assert float(again.baseline) == pytest.approx(0.9 * -2.0 + 0.1 * 0.0)


def test_draw_redraws_invalid_archs_then_falls_back():
    table = decisions(NB201)
    fallback = cell(1, 1, 1, 1, 1, 1)
    certain = jnp.where(jnp.arange(5) == 3, 50.0, 0.0)[None].repeat(6, 0)
    choices, arch, used = _reinforce.draw(jax.random.key(0), table, certain, None, fallback, 4)
    assert choices.tolist() == [3] * 6 and arch.ops[1:7].tolist() == [3] * 6 and used.all()
    checked = Decisions(table.mask, table.decode, True, table.encode)
    never = lambda arch: jnp.array(False)  # noqa: E731
    choices, arch, used = _reinforce.draw(jax.random.key(0), checked, certain, never, fallback,
                                          4)
    assert arch.ops.tolist() == fallback.ops.tolist() and not used.any()
    always = lambda arch: jnp.array(True)  # noqa: E731
    _, arch, used = _reinforce.draw(jax.random.key(0), checked, certain, always, fallback, 4)
    assert arch.ops[1:7].tolist() == [3] * 6 and used.all()


@pytest.mark.parametrize("name", ["nasbench201", "mlp", "dag", "nasbench101"])
def test_decisions_decode_what_they_encode(name):
    space = spaces.get(name)
    table = decisions(space)
    archs = space.sample(jax.random.key(0), 8)
    choices, used = jax.vmap(table.encode)(archs)
    decoded, used_again = jax.vmap(table.decode)(choices)
    np.testing.assert_array_equal(used, used_again)
    # every used decision takes a choice it has, and decoding gives back the arch (pruned)
    rows = np.arange(table.mask.shape[0])
    assert np.all(table.mask[rows, np.asarray(choices)] | ~np.asarray(used))
    pruned = jax.vmap(prune)(archs)
    np.testing.assert_array_equal(decoded.ops, pruned.ops)
    np.testing.assert_array_equal(decoded.adj, pruned.adj)


# --- local search --------------------------------------------------------------------------


def _local_state(space, current: Arch, **fields):
    strategy = strategies.get("local", space, batch_size=4)
    state = strategy.init(jax.random.key(0)).replace(current=current, **fields)
    return state


def test_memory_lookup_finds_exact_encodings():
    memory = np.array([[1, 2], [3, 4], [5, 6]])
    keys = np.array([[3, 4], [4, 3], [1, 2]])
    assert _local._lookup(keys, memory).tolist() == [1, -1, 0]
    assert _local._lookup(keys, memory[:0]).tolist() == [-1, -1, -1]
    archs = jax.device_get(cells((1,) * 6, (2,) * 6))
    assert _local._encode(archs).shape == (2, 8 + 64)


def test_next_batch_takes_the_queue_then_random_fill():
    queue = jax.device_get(cells((1,) * 6, (2,) * 6, (3,) * 6))
    fill = jax.device_get(cells(*[(0,) * 6] * 5))
    archs, rest, asked = _local.next_batch(queue, fill)
    assert archs.ops[:, 1].tolist() == [1, 2, 3, 0, 0] and len(rest.ops) == 0
    assert asked.tolist() == [True, True, True, False, False]
    archs, rest, asked = _local.next_batch(queue, jax.device_get(cells((0,) * 6, (0,) * 6)))
    assert archs.ops[:, 1].tolist() == [1, 2] and rest.ops[:, 1].tolist() == [3]


def test_a_step_queues_unknown_neighbours_and_moves_when_all_are_known():
    start = jax.device_get(cell(0, 0, 0, 0, 0, 0))
    state = _local_state(NB201, start)
    fresh = _local.start_step(NB201, state, start, 1.0)
    assert len(fresh.queue.ops) == 24 and bool(fresh.climbing)  # 6 edges x 4 other ops
    assert float(fresh.current_score) == 1.0 and np.isposinf(fresh.step_score)

    neighbours = NB201.neighbours(start)
    scores = np.linspace(0.0, 2.3, 24).astype(np.float32)[::-1].copy()  # the last is best
    known = state.replace(memory=_local._encode(neighbours), memory_score=scores)
    moved = _local.start_step(NB201, known, start, 1.0)
    best = np.asarray(neighbours.ops)[23]
    assert moved.current.ops.tolist() == best.tolist()
    assert float(moved.current_score) == 0.0
    # of its 24 neighbours, the start is unknown, the 3 that differ from it on the same
    # edge are known (scores 0.3, 0.2, 0.1: the step's best so far) and 20 are new
    assert len(moved.queue.ops) == 21
    assert float(moved.step_score) == pytest.approx(0.1)
    assert moved.step_arch.ops.tolist() == np.asarray(neighbours.ops)[22].tolist()


def test_a_climb_ends_at_a_local_optimum_and_restarts_from_the_best_told():
    start = jax.device_get(cell(0, 0, 0, 0, 0, 0))
    state = _local_state(NB201, start, current_score=np.float32(0.5),
                         step_score=np.float32(0.5), climbing=np.bool_(True))
    assert not _local.finish_step(NB201, state).climbing
    archs = jax.device_get(cells((1,) * 6, (2,) * 6, (3,) * 6, (4,) * 6))
    restarted = _local.learn(NB201, state.replace(climbing=np.bool_(False)), archs,
                             np.float32([3.0, 0.5, INF, 2.0]))
    assert int(restarted.restarts) == 1 and bool(restarted.climbing)
    assert restarted.current.ops.tolist() == np.asarray(archs.ops)[1].tolist()
    assert len(restarted.memory) == 4 and len(restarted.queue.ops) == 24
