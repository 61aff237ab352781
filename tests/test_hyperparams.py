"""Per-candidate training numbers in the trainer, and the joint search of architectures
and training hyper-parameters: genome, driver, run directory, resume and bad input."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import searching

import jaxnas
from jaxnas import spaces, strategies
from jaxnas.search import SearchError, read_log
from jaxnas.strategies import Dimension, HyperSpace
from jaxnas.train import TrainConfig, program_cost, put_data, train_population

SPACE = spaces.mlp(widths=(8,), activations=("relu", "tanh"), max_layers=2)
POPULATION = 3
CONFIG = TrainConfig(steps=5, batch_size=16, curve_points=5, optimizer="sgd",
                     learning_rate=3e-3, program="cpu")
# The vmapped program in chunks of 2: the 3 candidates' numbers follow them into 2 chunks.
# The accelerator program's plan reorders the candidates by template (``population``):
# the numbers follow them.
PROGRAMS = {"cpu": {}, "select": {"program": "select", "chunk_size": 2},
            "accelerator": {"program": "accelerator", "templates": 2}}
NUMBERS = {"learning_rate": np.float32([1e-3, 3e-2, 1e-2]),
           "weight_decay": np.float32([0.0, 1e-3, 1e-2]),
           "momentum": np.float32([0.9, 0.5, 0.0])}
HYPER = HyperSpace((Dimension("learning_rate", 1e-4, 3e-2, log=True),
                    Dimension("weight_decay", 0.0, 1e-3),
                    Dimension("momentum", choices=(0.5, 0.9, 0.99))))


@pytest.fixture(scope="module")
def device_data():
    return put_data(jaxnas.data.load("digits", seed=0))


@pytest.fixture(scope="module")
def population():
    """Three architectures; the accelerator program's plan puts the first, which fits
    the smaller template, last (program rows 1, 2, 0)."""
    archs = SPACE.sample(jax.random.key(1), POPULATION)
    return jax.tree_util.tree_map(lambda leaf: leaf[np.array([2, 0, 1])], archs)


def _keys():
    return jax.random.split(jax.random.key(2), POPULATION), jax.random.key(3)


@pytest.mark.parametrize("program", list(PROGRAMS))
def test_per_candidate_numbers_train_each_candidate_as_alone(program, population, device_data):
    """Each candidate of a population, trained at its own numbers, gets what it gets in
    a training where every candidate has its numbers (one value, the scalar setting).
    Per-candidate keys make a candidate's result independent of the others, and one
    padded size keeps to one compiled program."""
    config = TrainConfig(**{**CONFIG.__dict__, **PROGRAMS[program]})
    if program == "accelerator":
        # Only the smallest candidate, 0, fits the small template, which runs last.
        cost = program_cost(SPACE, population, device_data, config)
        assert list(cost.templates[:3]) == [0, 0, 1] and np.argmin(cost.useful) == 0
    keys, batch_key = _keys()
    together = train_population(keys, SPACE, population, device_data, config,
                                batch_key=batch_key, hyperparams=NUMBERS)
    for i in range(POPULATION):
        alone_config = TrainConfig(**{**config.__dict__,
                                      **{k: float(v[i]) for k, v in NUMBERS.items()}})
        alone = train_population(keys, SPACE, population, device_data, alone_config,
                                 batch_key=batch_key)
        np.testing.assert_allclose(together.val_loss[i], alone.val_loss[i], rtol=1e-5)
        np.testing.assert_allclose(together.train_curve[i], alone.train_curve[i], rtol=1e-5)
        for a, b in zip(jax.tree_util.tree_leaves(together.params),
                        jax.tree_util.tree_leaves(alone.params), strict=True):
            np.testing.assert_allclose(a[i], b[i], rtol=1e-5, atol=1e-7)
    # Different numbers make different candidates of one architecture and one start.
    same = jax.tree_util.tree_map(lambda leaf: jnp.repeat(leaf[:1], POPULATION, 0), population)
    spread = train_population(jnp.stack([keys[0]] * POPULATION), SPACE, same, device_data,
                              config, batch_key=batch_key, hyperparams=NUMBERS)
    assert len(set(spread.val_loss.tolist())) == POPULATION


def test_equal_numbers_are_a_scalar_bit_for_bit(population, device_data):
    """(P,) equal values train exactly as the scalar setting, in every field."""
    keys, batch_key = _keys()
    scalar = train_population(keys, SPACE, population, device_data, CONFIG, batch_key=batch_key)
    equal = {name: np.full(POPULATION, getattr(CONFIG, name), np.float32) for name in NUMBERS}
    arrays = train_population(keys, SPACE, population, device_data, CONFIG,
                              batch_key=batch_key, hyperparams=equal)
    for a, b in zip(jax.tree_util.tree_leaves(scalar), jax.tree_util.tree_leaves(arrays),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(("numbers", "words"), [
    ({"learning_rate": [1e-3, 1e-2]}, "one value per candidate (3)"),
    ({"momentum": -0.1}, "momentum must be finite and >= 0"),
    ({"learning_rate": [1e-3, np.nan, 1e-2]}, "learning_rate must be finite"),
    ({"dropout": 0.1}, "unknown hyperparameter 'dropout'"),
])
def test_bad_per_candidate_numbers_are_named(numbers, words, population, device_data):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        train_population(jax.random.key(0), SPACE, population, device_data, CONFIG,
                         hyperparams=numbers)


def _within(values: np.ndarray) -> None:
    """Every row of (n, 3) values lies in ``HYPER``."""
    assert ((values[:, 0] >= np.float32(1e-4)) & (values[:, 0] <= np.float32(3e-2))).all()
    assert ((values[:, 1] >= 0) & (values[:, 1] <= np.float32(1e-3))).all()
    assert np.isin(values[:, 2], np.float32([0.5, 0.9, 0.99])).all()


def test_genome_sampling_mutation_encoding_respect_the_space():
    units = HYPER.sample(jax.random.key(0), 2000)
    values = HYPER.values(np.asarray(units))
    _within(values)
    # The log range is uniform in the logarithm: about half below the geometric middle.
    assert 0.45 < np.mean(values[:, 0] < np.sqrt(1e-4 * 3e-2)) < 0.55
    assert set(np.unique(values[:, 2])) == set(np.float32([0.5, 0.9, 0.99]))
    mutate = jax.jit(jax.vmap(HYPER.mutate))
    moved = units
    for step in range(20):
        keys = jax.random.split(jax.random.key(step + 1), len(units))
        dims = jax.random.randint(jax.random.key(100 + step), (len(units),), 0, HYPER.size)
        before, moved = moved, mutate(keys, moved, dims)
        changed = np.asarray(moved != before)
        # A move changes only its own dimension (a choice always to another one).
        assert changed[np.arange(len(units)), np.asarray(dims)].mean() > 0.9
        off = np.ones_like(changed)
        off[np.arange(len(units)), np.asarray(dims)] = False
        assert not changed[off].any()
        _within(HYPER.values(np.asarray(moved)))
    features = jax.vmap(HYPER.features)(units)
    assert features.shape == (len(units), HYPER.feature_width()) == (len(units), 5)
    np.testing.assert_array_equal(features[:, 2:].sum(1), 1.0)
    np.testing.assert_allclose(features[:, :2], units[:, :2])
    for row in np.asarray(units[:20]):
        _within(HYPER.values(HYPER.neighbours(row)))


@pytest.mark.parametrize("name", ["random", "evolution", "local", "bananas", "reinforce"])
def test_every_joint_strategy_asks_numbers_in_the_space(name):
    options = {"random": {}, "evolution": {"population_size": 4}, "local": {},
               "reinforce": {},
               "bananas": {"initial_samples": 4, "num_parents": 2, "mutants_per_parent": 2,
                           "train_steps": 5, "capacity": 16, "random_candidates": 4}}[name]
    strategy = strategies.get(name, SPACE, batch_size=4, hyperparameters=HYPER, **options)
    ask = jax.jit(strategy.ask) if strategy.info.jittable else strategy.ask
    tell = jax.jit(strategy.tell) if strategy.info.jittable else strategy.tell
    state = strategy.init(jax.random.key(0))
    asked = []
    for generation in range(3):
        archs, state = ask(jax.random.key(generation + 1), state)
        units = np.asarray(strategy.hyperparameters(state))
        assert units.shape == (4, HYPER.size)
        asked.append(HYPER.values(units))
        # Fitness favours a high learning rate, so learning strategies can follow it.
        fitness = -np.log10(asked[-1][:, 0]) + 0.01 * generation
        state, _ = tell(jax.random.key(50 + generation), state, archs,
                        jnp.asarray(fitness, jnp.float32))
    values = np.concatenate(asked)
    _within(values)
    assert len({tuple(v) for v in values}) > 4


def test_the_architecture_loops_refuse_a_joint_strategy():
    strategy = strategies.get("random", SPACE, batch_size=4, hyperparameters=HYPER)
    for loop in (strategies.run_fused, strategies.run_stepwise):
        with pytest.raises(ValueError, match="also searches training numbers"):
            loop(jax.random.key(0), strategy, lambda key, archs: archs.ops[:, 0], 2)


ARGS = ["--space", "mlp", "--population", "4", "--budget-evals", "8", "--steps", "5",
        "--final-steps", "5", "--batch-size", "32", "--width", "8", "--seed", "5",
        "--optimizer", "sgd",
        "--search-hp", "learning_rate=1e-3:1e-1:log", "--search-hp", "momentum=0.5,0.9"]


@pytest.fixture(scope="module")
def joint_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("joint") / "reference"
    searching.cli("search", *ARGS, "--out", str(out), "--quiet")
    return out


def test_joint_run_records_and_retrains_each_candidates_numbers(joint_run, cli_main):
    records = read_log(joint_run)
    assert len(records) == 8
    for record in records:
        lr, momentum = record.hyperparameters["learning_rate"], record.hyperparameters["momentum"]
        assert 1e-3 <= lr <= 1e-1 and momentum in (0.5, 0.9)
    result = json.loads((joint_run / "result.json").read_text())
    best = min(records, key=lambda r: (r.val_loss, r.identity))
    assert result["best"]["hyperparameters"] == best.hyperparameters
    assert result["hyperparameters"] == {**best.hyperparameters, "weight_decay": 0.0}
    assert result["config"]["hyperparameters"] == {"learning_rate": "0.001:0.1:log",
                                                   "momentum": "0.5,0.9"}
    assert jaxnas.load(joint_run).hyperparameters == result["hyperparameters"]
    kinds = {f["name"] for f in result["importance"]["features"]
             if f["kind"] == "hyperparameter"}
    assert "log10 learning_rate (sd)" in kinds
    report = cli_main("report", joint_run, "--top", "3", "--importance")
    assert report.returncode == 0, report.stderr
    assert "training numbers; architecture" in report.stdout
    assert f"learning_rate={best.hyperparameters['learning_rate']:.4g}" in report.stdout
    assert "hyperparameter  log10 learning_rate" in report.stdout


def test_joint_run_resumes_exactly(joint_run, tmp_path):
    killed = tmp_path / "killed"
    searching.kill_after(ARGS, killed, 4)
    assert 4 <= len(read_log(killed)) < 8
    searching.cli("search", "--resume", str(killed), "--quiet")
    assert searching.log_without_time(killed) == searching.log_without_time(joint_run)
    resumed = json.loads((killed / "result.json").read_text())
    expected = json.loads((joint_run / "result.json").read_text())
    assert resumed["best"] == expected["best"]
    assert resumed["hyperparameters"] == expected["hyperparameters"]
    assert resumed["test_accuracy"] == pytest.approx(expected["test_accuracy"])


@pytest.mark.parametrize(("spec", "words"), [
    ("learning_rate=1e-2:1e-4", "a range needs LOW < HIGH"),
    ("learning_rate=0:1e-2:log", "a learning rate must be positive"),
    ("weight_decay=0:1e-2:log", "a log range needs LOW > 0"),
    ("learning_rate=1e-4:1e-2:ln", "a range is LOW:HIGH or LOW:HIGH:log"),
    ("learning_rate=fast:1e-2", "'fast' is not a number"),
    ("momentum=0.9", "choices are two or more different numbers"),
    ("dropout=0.1,0.2", "unknown hyper-parameter 'dropout'"),
    ("momentum=0.5,0.9", "momentum is used only by the sgd optimizer"),
    ("learning_rate", "--search-hp takes NAME=LOW:HIGH[:log] or NAME=A,B,C"),
])
def test_bad_search_hp_is_one_line_and_exit_2(spec, words, cli_main, tmp_path):
    result = cli_main("search", "--search-hp", spec, "--out", tmp_path / "run", "--quiet")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and words in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_a_strategy_without_joint_search_refuses_in_one_line(cli_main, tmp_path):
    result = cli_main("search", "--strategy", "halving", "--search-hp",
                      "learning_rate=1e-4:1e-2:log", "--out", tmp_path / "run", "--quiet")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "strategy halving cannot search training hyper-parameters" in result.stderr
    assert "random, evolution, local, reinforce, bananas" in result.stderr
    with pytest.raises(SearchError, match="^hyperparameters: learning_rate: a range needs"):
        jaxnas.search(hyperparameters={"learning_rate": (1e-2, 1e-3)})
