"""The population trainer: results, one compilation, continuation, isolation, chunking."""

import contextlib
import dataclasses
import logging
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_worker import CONFIG, SPACE

from jaxnas import data, spaces
from jaxnas.arch._encoding import Arch, ArchError
from jaxnas.nn import ModelConfig
from jaxnas.nn._compact import compute_nodes
from jaxnas.train import (
    TrainConfig,
    TrainState,
    _memory,
    _programs,
    batch_indices,
    evaluate,
    make_train,
    pad_rows,
    population_layout,
    put_data,
    stack_candidates,
    take_candidates,
    train_population,
)
from jaxnas.train._config import Hyperparams, make_optimizer, schedule_factor
from jaxnas.train._layout import round_up
from tests.traces import programs_traced_once  # noqa: F401 (autouse)


@pytest.fixture(scope="module", autouse=True)
def check_key_reuse():
    # Module-wide, so every test shares the programs compiled under the checker.
    with jax.debug_key_reuse(True):
        yield


@pytest.fixture(scope="module")
def dataset():
    return data.load("digits")


@pytest.fixture(scope="module")
def device_data(dataset):
    return put_data(dataset)


@pytest.fixture(scope="module")
def pool():
    return SPACE.enumerate().to_numpy()


def population(pool, indices):
    return Arch(adj=pool.adj[list(indices)], ops=pool.ops[list(indices)])


@pytest.fixture(scope="module")
def first_run(pool, device_data):
    """P=5 trained for CONFIG.steps steps from key 0."""
    return train_population(jax.random.key(0), SPACE, population(pool, range(5)), device_data,
                            CONFIG)


@contextlib.contextmanager
def compiled_programs(caplog):
    """Collects the names of the programs XLA compiles inside the block."""
    names = []
    with caplog.at_level(logging.WARNING), jax.log_compiles(True):
        caplog.clear()
        yield names
        names.extend(record.getMessage().split()[4] for record in caplog.records
                     if record.getMessage().startswith("Finished XLA compilation"))


def tree_close(a, b, **tolerance):
    """chex's tree comparison: a failure names the leaf's path and what differs."""
    chex.assert_trees_all_close(a, b, **tolerance)


def test_result_shapes_and_learning(first_run):
    result = first_run
    assert result.val_loss.shape == result.val_acc.shape == (5,)
    assert result.train_curve.shape == (5, 3)
    assert np.isfinite(result.val_loss).all()
    assert ((result.val_acc >= 0) & (result.val_acc <= 1)).all()
    assert all(leaf.shape[0] == 5 for leaf in jax.tree.leaves(result.params))
    assert int(result.state.step) == CONFIG.steps
    # Six adam steps at lr 1e-2 already lower the loss (minibatches of 16 are noisy).
    assert result.train_curve[:, -1].mean() < result.train_curve[:, 0].mean()
    assert (result.val_loss < math.log(10)).all()


def test_new_populations_reuse_one_compilation(pool, device_data, first_run, caplog):
    train = make_train(SPACE, CONFIG)
    with compiled_programs(caplog) as names:
        other = train(jax.random.key(0), population(pool, range(5, 10)), device_data)
    assert names == [], names
    assert not np.allclose(other.val_loss, first_run.val_loss)
    # P=6 pads to the same size as P=5 (chunks of one on CPU: 6 of them).
    with compiled_programs(caplog) as names:
        six = train(jax.random.key(0), population(pool, range(10, 16)), device_data)
    assert six.val_loss.shape == (6,)
    assert set(names) <= {"jit(rows)"}  # the six rows back from the padded state


def test_learning_rate_is_traced(pool, device_data, first_run, caplog):
    config = dataclasses.replace(CONFIG, learning_rate=3e-3, weight_decay=1e-4)
    with compiled_programs(caplog) as names:
        result = train_population(jax.random.key(0), SPACE, population(pool, range(5)),
                                  device_data, config)
    assert names == []
    assert not np.allclose(result.val_loss, first_run.val_loss)


def test_per_candidate_keys_follow_their_candidate(pool, device_data):
    # Raw key data: these keys are deliberately used twice, for the two populations.
    keys = np.asarray(jax.random.key_data(jax.random.split(jax.random.key(5), 6)))
    batch_key = np.asarray(jax.random.key_data(jax.random.key(6)))
    five = train_population(keys[:5], SPACE, population(pool, range(5)), device_data, CONFIG,
                            batch_key=batch_key)
    # The same candidates behind a new first one, each with its own key: same results.
    six = train_population(np.concatenate([keys[5:], keys[:5]]), SPACE,
                           population(pool, [5, 0, 1, 2, 3, 4]), device_data, CONFIG,
                           batch_key=batch_key)
    np.testing.assert_allclose(six.val_loss[1:], five.val_loss, rtol=1e-6)


def test_continuing_equals_training_straight(pool, device_data, first_run):
    archs = population(pool, range(5))
    continued = train_population(jax.random.key(1), SPACE, archs, device_data, CONFIG,
                                 state=first_run.state)
    straight = train_population(jax.random.key(0), SPACE, archs, device_data,
                                dataclasses.replace(CONFIG, steps=2 * CONFIG.steps))
    assert int(continued.state.step) == 2 * CONFIG.steps
    np.testing.assert_allclose(continued.val_loss, straight.val_loss, rtol=1e-6)
    tree_close(continued.params, straight.params, rtol=1e-5, atol=1e-6)
    # The state passed in is not consumed, and a host copy (a checkpoint) works too.
    host_state = jax.tree.map(np.asarray, first_run.state)
    again = train_population(jax.random.key(2), SPACE, archs, device_data, CONFIG,
                             state=host_state)
    np.testing.assert_array_equal(again.val_loss, continued.val_loss)


def clone_candidate(state, index, population_size):
    """A state whose every candidate is a copy of candidate ``index``."""
    def copy(leaf):
        return jnp.repeat(leaf[index:index + 1], population_size, axis=0)

    return state.map_candidates(copy)


def test_every_candidate_sees_the_same_minibatches(pool, device_data, first_run):
    keys = np.asarray(first_run.state.batch_key)
    assert keys.shape == (5, 2) and (keys == keys[0]).all()
    # Identical candidates stay identical only if they see identical batches.
    archs = population(pool, [2] * 5)
    result = train_population(jax.random.key(1), SPACE, archs, device_data, CONFIG,
                              state=clone_candidate(first_run.state, 2, 5))
    np.testing.assert_array_equal(result.val_loss, result.val_loss[0])
    # Trained fresh, the same five architectures differ: each has its own initial key.
    fresh = train_population(jax.random.key(1), SPACE, archs, device_data, CONFIG)
    assert len(set(fresh.val_loss.tolist())) == 5


def test_unshared_minibatches_differ_per_candidate(pool, device_data, first_run):
    state = clone_candidate(first_run.state, 2, 5)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(7), jnp.arange(5))
    state = state._replace(batch_key=jax.random.key_data(keys))
    config = dataclasses.replace(CONFIG, shared_batches=False)
    result = train_population(jax.random.key(1), SPACE, population(pool, [2] * 5),
                              device_data, config, state=state)
    assert len(set(result.val_loss.tolist())) == 5


def test_a_diverging_candidate_is_isolated(pool, device_data, first_run):
    archs = population(pool, range(5))
    state = first_run.state
    poisoned = state._replace(params=jax.tree.map(lambda p: p.at[1].set(jnp.nan), state.params))
    clean = train_population(jax.random.key(1), SPACE, archs, device_data, CONFIG, state=state)
    broken = train_population(jax.random.key(1), SPACE, archs, device_data, CONFIG,
                              state=poisoned)
    assert broken.val_loss[1] == np.inf and broken.val_acc[1] == 0.0
    assert bool(broken.state.diverged[1]) and not np.asarray(broken.state.diverged)[[0, 2]].any()
    others = [0, 2, 3, 4]
    np.testing.assert_array_equal(broken.val_loss[others], clean.val_loss[others])
    np.testing.assert_array_equal(broken.train_curve[others], clean.train_curve[others])


def test_chunked_padded_metrics_only_run_agrees(pool, device_data, first_run):
    # One compilation checks three layouts that must not change a candidate's result:
    # chunks of 2 instead of one chunk of 8, a sixth candidate in the population
    # (candidate i's keys come from fold_in(key, i)), and initialisation inside each
    # chunk without keeping the state (the path of very large populations).
    config = dataclasses.replace(CONFIG, chunk_size=2, keep_state=False)
    result = train_population(jax.random.key(0), SPACE, population(pool, range(6)),
                              device_data, config)
    assert result.state is None and result.params is None
    np.testing.assert_allclose(result.val_loss[:5], first_run.val_loss, rtol=1e-5)
    np.testing.assert_allclose(result.val_acc[:5], first_run.val_acc, atol=1e-6)
    np.testing.assert_allclose(result.train_curve[:5], first_run.train_curve, rtol=1e-5)


@pytest.mark.parametrize("chunk_size,program", [(None, "auto"), (2, "auto"), (None, "select")])
def test_evaluate_matches_validation(pool, dataset, first_run, chunk_size, program):
    # Chunks of 2 split the 5 candidates unevenly: the padding copies are dropped. The
    # select program's chunk from a vast memory budget is cut to the 5 candidates (it
    # used to pad them with copies up to the memory's chunk, here millions).
    config = dataclasses.replace(CONFIG, chunk_size=chunk_size, program=program,
                                 memory_budget_mb=2**24)
    loss, acc = evaluate(SPACE, population(pool, range(5)), first_run.params, dataset.x_val,
                         dataset.y_val, dataset.num_classes, config)
    np.testing.assert_allclose(loss, first_run.val_loss, rtol=1e-5)
    np.testing.assert_allclose(acc, first_run.val_acc, atol=1e-6)


def test_batch_indices_walk_epochs():
    key = jax.random.key(3)
    n, size = 10, 3  # three steps per epoch, one example dropped each epoch
    indices = jax.jit(batch_indices, static_argnums=(2, 3, 4))
    whole = np.asarray(indices(key, jnp.int32(0), 7, n, size))
    later = np.asarray(indices(key, jnp.int32(4), 7, n, size))
    assert whole.shape == (7, 3)
    for epoch in range(2):
        seen = whole[3 * epoch:3 * epoch + 3].ravel()
        assert len(set(seen)) == 9 and seen.max() < n
    assert not np.array_equal(whole[:3], whole[3:6])
    np.testing.assert_array_equal(later[:3], whole[4:7])


def test_rounded_layouts():
    assert [round_up(n, 1) for n in (1, 2, 3, 5, 7, 8, 9)] == [1, 2, 4, 8, 8, 8, 16]
    assert [round_up(n, 2) for n in (5, 7, 9, 13)] == [6, 8, 12, 16]
    assert round_up(11, 0) == 11
    assert population_layout(5, 8, 1, 2) == population_layout(7, 8, 1, 2)
    assert population_layout(5, 8, 1, 2).size == 8
    layout = population_layout(100, 8, 2, 1)
    assert (layout.devices, layout.num_chunks, layout.chunk) == (2, 8, 8)
    assert layout.size == 128
    assert population_layout(80, 8, 2, 2).size == 2 * 6 * 8  # 5 chunks a device -> 6
    assert population_layout(3, 8, 4, 2).size == 4
    assert population_layout(5, 8, 1, 0).size == 5


def test_schedules_resume_over_calls():
    def factors(config, steps):
        return np.asarray(jax.vmap(lambda t: schedule_factor(config, t))(jnp.arange(steps)))

    constant = factors(TrainConfig(), 4)
    np.testing.assert_allclose(constant, 1.0)
    cosine = TrainConfig(steps=5, schedule="warmup_cosine", warmup_steps=2,
                         schedule_steps=10)
    values = factors(cosine, 12)
    np.testing.assert_allclose(values[:2], [0.5, 1.0])
    # Cosine from step 2 (end of warmup) to the horizon at step 10, then flat at 0.
    assert values[2] == 1.0 and (np.diff(values[2:11]) < 0).all()
    np.testing.assert_allclose(values[10:], 0.0, atol=1e-7)
    linear = factors(TrainConfig(schedule="linear", schedule_steps=4,
                                 final_lr_fraction=0.5), 5)
    np.testing.assert_allclose(linear, [1.0, 0.875, 0.75, 0.625, 0.5])


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_optimizers_use_traced_numbers(optimizer):
    config = TrainConfig(optimizer=optimizer)
    params = {"w": jnp.ones(3)}

    @jax.jit
    def update(learning_rate, momentum):
        hyper = Hyperparams(learning_rate, jnp.float32(0.1), momentum)
        opt = make_optimizer(config, hyper, jnp.int32(0))
        state = opt.init(params)
        updates, state = opt.update(params, state, params)
        updates, _ = opt.update(params, state, params)
        return updates["w"]

    small, large = update(jnp.float32(1e-3), jnp.float32(0.9)), update(jnp.float32(1e-2),
                                                                        jnp.float32(0.9))
    np.testing.assert_allclose(large, 10 * small, rtol=1e-5)
    if optimizer == "sgd":
        assert not np.allclose(update(jnp.float32(1e-3), jnp.float32(0.0)), small)


def test_memory_budget_sets_the_chunk(dataset):
    tight = dataclasses.replace(CONFIG.static(), memory_budget_mb=1, batch_size=8192)
    roomy = dataclasses.replace(CONFIG.static(), memory_budget_mb=10_000)
    shape, classes = dataset.input_shape, dataset.num_classes
    device = jax.devices()[0]
    with pytest.raises(MemoryError, match="more than the 1 MiB budget"):
        _memory.chunk_size_for(SPACE, tight, shape, classes, "select", device)
    assert _memory.chunk_size_for(SPACE, roomy, shape, classes, "select", device) > 1000
    # The CPU program runs candidates one at a time (branching nodes), whatever the budget.
    assert _memory.chunk_size_for(SPACE, roomy, shape, classes, "cpu", device) == 1


def test_bad_input_is_named(pool, device_data, first_run):
    train = make_train(SPACE, CONFIG)
    archs = population(pool, range(5))
    bad = Arch(adj=archs.adj.copy(), ops=archs.ops.copy())
    bad.ops[3, 1] = 99
    with pytest.raises(ArchError, match="architecture 3: op id 99"):
        train(jax.random.key(0), bad, device_data)
    with pytest.raises(ArchError, match=r"adj \(P, 4, 4\)"):
        train(jax.random.key(0), Arch(adj=archs.adj[:, :3, :3], ops=archs.ops[:, :3]),
              device_data)
    with pytest.raises(ValueError, match="state holds 5 candidates but the population has 4"):
        train(jax.random.key(0), population(pool, range(4)), device_data, first_run.state)
    with pytest.raises(ValueError, match="batch_size 4096 exceeds"):
        make_train(SPACE, dataclasses.replace(CONFIG, batch_size=4096))(
            jax.random.key(0), archs, device_data)
    with pytest.raises(ValueError, match="needs threefry2x32 keys"):
        train(jax.random.key(0, impl="rbg"), archs, device_data)
    with pytest.raises(ValueError, match="need a batch_key"):
        train(jax.random.split(jax.random.key(0), 5), archs, device_data)
    with pytest.raises(ValueError, match="one key or 5 keys"):
        train(jax.random.split(jax.random.key(0), 4), archs, device_data)


@pytest.mark.parametrize("change, message", [
    ({"steps": 0}, "steps must be at least 1"),
    ({"optimizer": "lion"}, "unknown optimizer"),
    ({"schedule": "step"}, "unknown schedule"),
    ({"schedule": "warmup_cosine"}, "needs warmup_steps"),
    ({"learning_rate": float("nan")}, "learning_rate must be finite"),
    ({"chunk_size": 0}, "chunk_size must be at least 1"),
])
def test_bad_config_is_named(change, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**change)


def test_accelerator_program_equals_the_padded_program(dataset, device_data, caplog):
    """The accelerator program (compacted archs in typed slot templates, a switch per
    chunk) equals the padded select program, candidate by candidate, through a continued
    call too; a new population of the same size compiles no new training program."""
    space = spaces.dag(max_nodes=6)
    archs = space.sample(jax.random.key(4), 12).to_numpy()
    config = TrainConfig(steps=4, batch_size=16, learning_rate=1e-2, weight_decay=1e-3,
                         curve_points=2, eval_batch_size=256, model=ModelConfig(width=8),
                         program="select", chunk_size=4)
    typed = dataclasses.replace(config, program="accelerator", templates=4)
    counts = np.asarray(jax.vmap(lambda a: compute_nodes(
        _programs.model_of(space, dataset.input_shape, dataset.num_classes,
                           config.model).layout, a))(archs))
    assert counts.min() <= 1 < counts.max(), "the sample should use two templates or more"
    results = {}
    for setting in (config, typed):
        first = train_population(jax.random.key(0), space, archs, device_data, setting)
        results[setting.program] = first, train_population(
            jax.random.key(1), space, archs, device_data, setting, state=first.state)
    for padded, compacted in zip(results["select"], results["accelerator"], strict=True):
        np.testing.assert_allclose(compacted.val_loss, padded.val_loss, rtol=1e-5)
        np.testing.assert_allclose(compacted.train_curve, padded.train_curve, rtol=1e-5)
        tree_close(compacted.state, padded.state, rtol=1e-4, atol=1e-6)
    other = space.sample(jax.random.key(5), 12).to_numpy()
    with compiled_programs(caplog) as names:
        train_population(jax.random.key(0), space, other, device_data, typed)
    assert not any("run" in name for name in names), names


def test_program_default_by_platform():
    # CPU candidates branch one at a time; accelerators run vmapped chunks of typed slots.
    assert TrainConfig().program_for("cpu") == "cpu"
    assert TrainConfig().program_for("gpu") == TrainConfig().program_for("tpu") == "accelerator"
    assert TrainConfig(program="select").program_for("gpu") == "select"
    with pytest.raises(ValueError, match="unknown program"):
        TrainConfig(program="fast")


def test_candidates_are_taken_stacked_and_padded_by_field():
    state = TrainState(params={"w": np.arange(6.0).reshape(3, 2)}, opt_state=(np.arange(3),),
                       batch_key=np.arange(6, dtype=np.uint32).reshape(3, 2),
                       diverged=np.array([False, True, False]), step=np.int32(7))
    rows = [take_candidates(state, i) for i in range(3)]
    assert bool(rows[1].diverged) and int(rows[1].step) == 7
    np.testing.assert_array_equal(rows[2].params["w"], [4.0, 5.0])
    back = stack_candidates(rows[::-1])
    np.testing.assert_array_equal(back.params["w"], state.params["w"][::-1])
    np.testing.assert_array_equal(back.batch_key, state.batch_key[::-1])
    padded = state.map_candidates(lambda leaf: pad_rows(leaf, 5))
    np.testing.assert_array_equal(padded.opt_state[0], [0, 1, 2, 0, 0])
    np.testing.assert_array_equal(padded.diverged, [False, True, False, False, False])
    assert int(padded.step) == 7
