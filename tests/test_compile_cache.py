"""The persistent compilation cache: a second process compiles nothing."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jaxnas import compile_cache

# Trains a tiny population with the cache at argv[1]; prints the cache events.
WORKER = """
import json, sys
import jax
from jax import monitoring
from jaxnas import compile_cache
counts = {}
monitoring.register_event_listener(
    lambda event, **kwargs: counts.__setitem__(event, counts.get(event, 0) + 1))
compile_cache.enable(sys.argv[1])
sys.path.insert(0, sys.argv[2])
from train_worker import CONFIG, SPACE, population
from jaxnas import data
from jaxnas.train import train_population
digits = data.load("digits", seed=0)
result = train_population(jax.random.key(0), SPACE, population(range(4)), digits, CONFIG)
print(json.dumps({"hits": counts.get("/jax/compilation_cache/cache_hits", 0),
                  "misses": counts.get("/jax/compilation_cache/cache_misses", 0),
                  "val_loss": result.val_loss.tolist()}))
"""


def _run(cache: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", WORKER, str(cache),
                           str(Path(__file__).parent)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_second_process_compiles_nothing(tmp_path):
    first = _run(tmp_path / "cache")
    second = _run(tmp_path / "cache")
    assert first["misses"] > 0 and first["hits"] == 0
    assert second["misses"] == 0 and second["hits"] == first["misses"]
    assert second["val_loss"] == first["val_loss"]


def test_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    assert compile_cache.resolve() == tmp_path / "jaxnas" / "xla"
    assert compile_cache.resolve(True) == tmp_path / "jaxnas" / "xla"
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "mine"))
    assert compile_cache.resolve() == tmp_path / "mine"
    assert compile_cache.resolve("~/x") == Path.home() / "x"
    for off in ("off", "OFF", False):
        assert compile_cache.resolve(off) is None
    monkeypatch.setenv(compile_cache.ENV, "off")
    assert compile_cache.resolve() is None


def test_unusable_directory_is_one_line(tmp_path, cli_main):
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = cli_main("search", "--quiet", "--compile-cache", blocker / "cache",
                    "--budget-evals", "1")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "compilation cache" in lines[0], done.stderr


@pytest.fixture(autouse=True)
def _restore_cache_setting():
    yield
    compile_cache.enable(False)
