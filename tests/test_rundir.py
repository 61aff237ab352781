"""The run directory's one owner: damaged files are one line and change nothing,
checkpoints restore by field name, and a run of the previous format resumes exactly."""

import json
import shutil
from pathlib import Path

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

import jaxnas
from jaxnas.search import RunDir, RunDirectoryError, SearchConfig, SearchError, Snapshot
from jaxnas.search import checkpoint as checkpoint_lib

TINY = dict(space="mlp", data="digits", budget=8, population=4, steps=12, width=8,
            final_steps=5, compile_cache=False)
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rundir") / "run"
    jaxnas.search(out=out, **TINY)
    return out


def _copy(source: Path, target: Path, finished: bool = True) -> Path:
    shutil.copytree(source, target)
    if not finished:  # as if stopped before its final retraining
        (target / "result.json").unlink()
        shutil.rmtree(target / "best")
        shutil.rmtree(target / "plots")
    return target


def _files(directory: Path) -> dict:
    return {path: path.read_bytes() for path in directory.rglob("*") if path.is_file()}


def _garble_line(run: Path) -> None:
    lines = (run / "log.jsonl").read_bytes().split(b"\n")
    lines[1] = b"#" * len(lines[1])  # same length: the checkpoint's byte count still holds
    (run / "log.jsonl").write_bytes(b"\n".join(lines))


def _cut_mid_line(run: Path) -> None:
    log = run / "log.jsonl"
    log.write_bytes(log.read_bytes()[:-20])


def _cut_in_half(run: Path) -> None:
    lines = (run / "log.jsonl").read_text().splitlines(keepends=True)
    (run / "log.jsonl").write_text("".join(lines[:len(lines) // 2]))


def _garble_checkpoint(run: Path) -> None:
    (run / "checkpoint" / "state.msgpack").write_bytes(b"\x00garbage")


def _garble_config(run: Path) -> None:
    path = run / "checkpoint" / "state.msgpack"
    payload = serialization.msgpack_restore(path.read_bytes())
    payload["config"] = json.dumps({**json.loads(payload["config"]), "population": 0})
    path.write_bytes(serialization.msgpack_serialize(payload))


def _garble_result(run: Path) -> None:
    result = run / "result.json"
    result.write_text(result.read_text()[:100])


def _garble_params(run: Path) -> None:
    (run / "best" / "params.msgpack").write_bytes(b"\x93garbage")


DAMAGE = {  # name: (damage, file named, words of the message)
    "unreadable line": (_garble_line, "log.jsonl", "line 2 is not an evaluation record"),
    "cut mid-line": (_cut_mid_line, "log.jsonl", "cut short"),
    "shorter than the checkpoint": (_cut_in_half, "log.jsonl", "the checkpoint says"),
    "checkpoint": (_garble_checkpoint, "state.msgpack", "not a checkpoint"),
    "configuration": (_garble_config, "state.msgpack", "damaged configuration"),
    "result": (_garble_result, "result.json", "not valid JSON"),
    "model": (_garble_params, "params.msgpack", "is damaged"),
}
FINISHED_COMMANDS = {
    "report": lambda run, tmp: ("report", run),
    "serve": lambda run, tmp: ("serve", run, "--port", "0"),
    "export": lambda run, tmp: ("export", run, "--state-dict", tmp / "model.pt"),
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("command", FINISHED_COMMANDS)
def test_a_damaged_finished_run_is_one_line_and_changes_nothing(finished, tmp_path, cli_main,
                                                                damage, command):
    if damage == "model" and command != "export":
        pytest.skip("only export and load read the trained model")
    make_damage, name, words = DAMAGE[damage]
    run = _copy(finished, tmp_path / "run")
    make_damage(run)
    before = _files(run)
    result = cli_main(*FINISHED_COMMANDS[command](run, tmp_path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("jaxnas: error: ")
    assert name in result.stderr and words in result.stderr
    assert _files(run) == before
    assert not (tmp_path / "model.pt").exists()


@pytest.mark.parametrize("damage", DAMAGE)
def test_load_of_a_damaged_run_raises_one_line_naming_the_file(finished, tmp_path, damage):
    make_damage, name, words = DAMAGE[damage]
    run = _copy(finished, tmp_path / "run")
    make_damage(run)
    with pytest.raises(RunDirectoryError, match=words) as raised:
        jaxnas.load(run)
    assert name in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("damage", [d for d in DAMAGE if d not in ("result", "model")])
def test_resume_of_a_damaged_run_is_one_line_and_changes_nothing(finished, tmp_path, cli_main,
                                                                 damage):
    make_damage, name, words = DAMAGE[damage]
    run = _copy(finished, tmp_path / "run", finished=False)
    make_damage(run)
    before = _files(run)
    result = cli_main("search", "--resume", run)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and name in result.stderr and words in result.stderr
    assert _files(run) == before  # no NUL bytes pad a short log


def test_reading_a_run_that_is_still_writing_leaves_out_the_unfinished_line(finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    complete = RunDir(run).records()
    with open(run / "log.jsonl", "ab") as log:
        log.write(b'{"generation": 2, "ha')  # past the checkpoint: a generation being logged
    assert RunDir(run).records() == complete


@flax.struct.dataclass
class _Saved:
    count: jnp.ndarray
    head: jnp.ndarray
    population: jnp.ndarray


@flax.struct.dataclass
class _Reordered:
    head: jnp.ndarray
    population: jnp.ndarray
    count: jnp.ndarray


@flax.struct.dataclass
class _Renamed:
    count: jnp.ndarray
    tail: jnp.ndarray
    population: jnp.ndarray


def _header(state) -> checkpoint_lib.Header:
    snapshot = Snapshot(generation=3, elapsed=1.5, key=jax.random.key(7), strategy=state)
    return checkpoint_lib.decode_header(checkpoint_lib.encode(snapshot, SearchConfig(), 0))


def _like(state) -> Snapshot:
    return Snapshot(generation=0, elapsed=0.0, key=jax.random.key(0), strategy=state)


def test_a_state_whose_fields_were_reordered_restores_by_name():
    saved = _Saved(count=jnp.int32(3), head=jnp.int32(5), population=jnp.arange(4.0))
    like = _Reordered(head=jnp.int32(0), population=jnp.zeros(4), count=jnp.int32(0))
    restored = checkpoint_lib.decode_snapshot(_header(saved), _like(like), fixed_shapes=True)
    assert isinstance(restored.strategy, _Reordered)
    assert int(restored.strategy.count) == 3 and int(restored.strategy.head) == 5
    np.testing.assert_array_equal(restored.strategy.population, np.arange(4.0))
    assert restored.generation == 3 and restored.elapsed == 1.5


@pytest.mark.parametrize("like, words", [
    (_Renamed(count=jnp.int32(0), tail=jnp.int32(0), population=jnp.zeros(4)),
     "field .tail is missing"),
    (_Saved(count=jnp.int32(0), head=jnp.int32(0), population=jnp.zeros(5)),
     "field .population has shape (4,); expected (5,)"),
    (_Saved(count=jnp.float32(0), head=jnp.int32(0), population=jnp.zeros(4)),
     "field .count has dtype int32; expected float32"),
    ({"count": jnp.int32(0)}, "field ['count'] is missing"),
])
def test_a_state_that_does_not_fit_is_refused_naming_the_field(like, words):
    saved = _Saved(count=jnp.int32(3), head=jnp.int32(5), population=jnp.arange(4.0))
    with pytest.raises(checkpoint_lib.CheckpointMismatch) as raised:
        checkpoint_lib.decode_snapshot(_header(saved), _like(like), fixed_shapes=True)
    assert words in str(raised.value)


def test_resume_names_the_strategy_field_that_does_not_fit(finished, tmp_path):
    run = _copy(finished, tmp_path / "run", finished=False)
    before = _files(run)
    rundir = RunDir(run)
    with pytest.raises(RunDirectoryError, match=r"state.msgpack does not fit this strategy's "
                       r"state: field \['nothing'\] is missing"):
        rundir.reopen(_like({"nothing": jnp.zeros(())}), fixed_shapes=True)
    assert _files(run) == before


@pytest.mark.parametrize("strategy", ["evolution", "local"])
def test_a_run_of_the_previous_format_resumes_exactly(tmp_path, strategy):
    run = _copy(FIXTURES / f"v1_{strategy}", tmp_path / "run")
    expected = [json.loads(line) for line in (run / "expected_log.jsonl").read_text().splitlines()]
    (run / "expected_log.jsonl").unlink()
    assert RunDir(run).header().version == 1
    jaxnas.search(out=run, resume=True, compile_cache=False)
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("seconds")
    assert lines == expected
    assert RunDir(run).header().version == checkpoint_lib.FORMAT_VERSION


def test_a_newer_format_is_one_line(finished, tmp_path, cli_main):
    run = _copy(finished, tmp_path / "run", finished=False)
    path = run / "checkpoint" / "state.msgpack"
    payload = serialization.msgpack_restore(path.read_bytes())
    path.write_bytes(serialization.msgpack_serialize({**payload, "version": 99}))
    result = cli_main("search", "--resume", run)
    assert result.returncode == 2 and "format version 99" in result.stderr
    assert result.stderr.count("\n") == 1


def _unregister(run: Path) -> None:
    """Makes ``run`` a run of a space this process has not registered."""
    for name in ("result.json", "best/arch.json", "best/model.json"):
        blob = json.loads((run / name).read_text())
        if "config" in blob:
            blob["config"]["space"] = "tiny_cells"
        else:
            blob["space"] = "tiny_cells"
        (run / name).write_text(json.dumps(blob))


@pytest.mark.parametrize("args", [("report", "{run}", "--draw", "1"),
                                  ("report", "{run}", "--importance"),
                                  ("space", "show", "{run}/best/arch.json")])
def test_a_space_that_is_not_registered_says_how_to_load_it(finished, tmp_path, cli_main, args):
    run = _copy(finished, tmp_path / "run")
    _unregister(run)
    before = _files(run)
    result = cli_main(*[arg.format(run=run) for arg in args])
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "'tiny_cells'" in result.stderr and "--import MODULE" in result.stderr
    assert _files(run) == before
    with pytest.raises(SearchError, match="tiny_cells.*--import MODULE"):
        jaxnas.load(run)


def test_errors_name_what_the_caller_passed(tmp_path, cli_main):
    with pytest.raises(SearchError, match="^learning_rate must be a positive number"):
        jaxnas.search(learning_rate=-1, out=tmp_path / "a", **TINY)
    with pytest.raises(SearchError, match="^budget must be at least 1"):
        jaxnas.search(**{**TINY, "budget": 0})
    with pytest.raises(SearchError, match="^batch_size 100000 is larger than the training "
                       "split"):
        jaxnas.search(out=tmp_path / "b", **{**TINY, "batch_size": 100000})
    result = cli_main("search", "--batch-size", "100000", "--out", tmp_path / "c")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--batch-size 100000 is larger than the training split" in result.stderr
    assert not any((tmp_path / name).exists() for name in "abc")
