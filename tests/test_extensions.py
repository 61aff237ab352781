"""A space, a strategy and a dataset of the user's run through jaxnas.search and the CLI,
and strategy options from Python and the command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import extension_plugin
import numpy as np
import pytest

import jaxnas
from jaxnas.data import DataError
from jaxnas.search import RunDir, SearchError, read_log

HERE = Path(__file__).parent
SMALL = dict(budget=6, population=3, steps=10, final_steps=10, batch_size=32, width=8)


def _cli(*args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "jaxnas.cli", *args], capture_output=True,
                          text=True, env=env, timeout=600, cwd=HERE)


@pytest.fixture
def own_registries(monkeypatch):
    """Registries that ``register`` may add to within one test: copies of the real ones,
    which are back in place after it."""
    from jaxnas import spaces, strategies
    from jaxnas.data import _datasets

    monkeypatch.setattr(spaces, "_REGISTRY", dict(spaces._REGISTRY))
    monkeypatch.setattr(strategies, "_REGISTRY", dict(strategies._REGISTRY))
    monkeypatch.setattr(_datasets, "_BUILTINS", dict(_datasets._BUILTINS))


def test_objects_of_the_user_run_through_search():
    result = jaxnas.search(space=extension_plugin.tiny_cells(),
                           strategy=extension_plugin.mutate_best, data=extension_plugin.blobs(),
                           seed=1, strategy_options={"mutations": 2}, **SMALL)
    assert len(result.history) == 6
    assert result.space.name == "tiny_cells" and result.config.strategy == "mutate_best"
    assert result.config.strategy_options == {"mutations": 2}


def test_registered_names_run_through_search_and_load(tmp_path, own_registries):
    jaxnas.spaces.register("tiny_cells", extension_plugin.tiny_cells)
    jaxnas.strategies.register("mutate_best", extension_plugin.mutate_best)
    jaxnas.data.register("blobs", extension_plugin.blobs)
    result = jaxnas.search(space="tiny_cells", strategy="mutate_best", data="blobs", seed=1,
                           out=tmp_path / "run", strategy_options={"mutations": 2}, **SMALL)
    assert len(read_log(tmp_path / "run")) == 6
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["config"]["strategy_options"] == {"mutations": 2}
    assert saved["config"]["dataset"] == "blobs"
    predictor = jaxnas.load(tmp_path / "run")  # finds the space by its registered name
    test = jaxnas.data.load("blobs", seed=1)
    accuracy = (predictor.predict(test.x_test, normalised=True) == test.y_test).mean()
    assert accuracy == pytest.approx(result.test_accuracy, abs=1e-6)


def test_registered_space_strategy_and_data_run_through_the_cli(tmp_path):
    out = tmp_path / "run"
    result = _cli("--import", "extension_register", "search", "--space", "tiny_cells",
                  "--strategy", "mutate_best", "--dataset", "blobs",
                  "--strategy-option", "mutations=2", "--budget-evals", "6",
                  "--population", "3", "--steps", "10", "--final-steps", "10",
                  "--width", "8", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tiny_cells architecture" in result.stdout or "(tiny_cells" in result.stdout
    assert len(read_log(out)) == 6
    config = json.loads((out / "result.json").read_text())["config"]
    assert config["strategy_options"] == {"mutations": 2}


def test_a_bad_strategy_option_lists_the_valid_ones(tmp_path, cli_main):
    out = tmp_path / "never"
    result = cli_main("search", "--strategy", "evolution", "--strategy-option",
                      "tournament=3", "--out", out)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "'tournament'" in result.stderr
    for name in ("population_size", "tournament_size", "mutations", "archive_size"):
        assert name in result.stderr
    assert not out.exists()
    result = cli_main("search", "--strategy-option", "batch_size=3", "--out", out)
    assert result.returncode == 2 and "set by the search itself" in result.stderr
    result = cli_main("search", "--strategy-option", "oops", "--out", out)
    assert result.returncode == 2 and "KEY=VALUE" in result.stderr


def test_strategy_options_reach_the_factory_and_survive_a_resume(tmp_path):
    with pytest.raises(SearchError, match="tournament_size"):
        jaxnas.search(strategy="evolution", strategy_options={"tournament_size": 0}, **SMALL)
    options = {"population_size": 3, "tournament_size": 2}
    out = tmp_path / "run"
    first = jaxnas.search(strategy="evolution", data=extension_plugin.blobs(), seed=2, out=out,
                          generations=1, strategy_options=options, **SMALL)
    assert first.config.strategy_options == options and len(first.history) == 3
    # Unfinish the run: a resume rebuilds the strategy from the checkpoint's options, and
    # restoring its state (a population of 3, not the default 20) needs exactly them.
    (out / "result.json").unlink()
    assert RunDir(out).unfinished_config().strategy_options == options
    resumed = jaxnas.search(data=extension_plugin.blobs(), out=out, resume=True)
    assert resumed.config.strategy_options == options
    assert [r.hash for r in resumed.history] == [r.hash for r in first.history]


def test_a_registered_dataset_loads_and_a_bad_loader_is_named(own_registries):
    jaxnas.data.register("blobs", extension_plugin.blobs)
    blobs = jaxnas.data.load("blobs", seed=1)
    assert blobs.num_classes == 3 and blobs.input_shape == (8,)
    assert "blobs" in jaxnas.data.names()
    jaxnas.data.register("three_arrays", lambda: (np.zeros((9, 2)), np.zeros(9), np.zeros(3)))
    with pytest.raises(DataError, match="must return"):
        jaxnas.data.load("three_arrays")
