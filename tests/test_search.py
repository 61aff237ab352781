"""The search driver and the CLI: outputs, determinism, resume after SIGKILL, bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import searching

import jaxnas
from jaxnas.search import SearchError, read_log

TINY = ["--space", "mlp", "--population", "4", "--budget-evals", "12", "--steps", "20",
        "--final-steps", "20", "--batch-size", "32", "--cells", "2", "--seed", "3"]


# Searches run as the console script in subprocesses (tests/searching.py) and share the
# session's compilation cache. Commands that stop before training run in this process
# (the cli_main fixture); the console entry's own errors are checked by the subprocess
# searches below (lock, Ctrl-C).








@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "reference"
    result = jaxnas.search(space="mlp", strategy="evolution", data="digits", budget=12,
                           seed=3, out=out, population=4, steps=20, final_steps=20,
                           batch_size=32, cells=2)
    return out, result


def test_search_writes_a_complete_run_directory(finished_run):
    out, result = finished_run
    records = read_log(out)
    assert len(records) == 12
    assert len({r.hash for r in records}) == 12  # no architecture trained twice
    generations = sorted({r.generation for r in records})
    assert generations[0] == 0 and len(generations) >= 3
    saved = json.loads((out / "result.json").read_text())
    for key in ("best", "val_loss", "val_acc", "test_accuracy", "config", "versions", "device",
                "wall_seconds", "unique_evaluations"):
        assert key in saved
    assert saved["best"]["hash"] == min(records, key=lambda r: r.val_loss).hash
    assert saved["test_accuracy"] == pytest.approx(result.test_accuracy)
    assert 0.5 < result.test_accuracy <= 1.0
    for plot in ("best_vs_evaluations.png", "best_vs_time.png", "accuracy_vs_params.png"):
        assert (out / "plots" / plot).read_bytes()[:4] == b"\x89PNG"
    arch = json.loads((out / "best" / "arch.json").read_text())
    assert arch["space"] == "mlp"
    assert "best architecture (mlp" in result.summary()


def test_loaded_model_predicts_like_the_retrained_one(finished_run):
    out, result = finished_run
    predictor = jaxnas.load(out)
    digits = jaxnas.data.load("digits", seed=3)
    predicted = predictor.predict(digits.x_test, normalised=True)
    assert np.mean(predicted == digits.y_test) == pytest.approx(result.test_accuracy, abs=1e-6)
    raw = digits.x_test * digits.std + digits.mean
    np.testing.assert_array_equal(predictor.predict(raw), predicted)


def test_same_seed_gives_the_same_log(finished_run, tmp_path):
    out, _ = finished_run
    again = tmp_path / "again"
    jaxnas.search(space="mlp", strategy="evolution", data="digits", budget=12, seed=3,
                  out=again, population=4, steps=20, final_steps=20, batch_size=32, cells=2)
    assert searching.log_without_time(again) == searching.log_without_time(out)


def test_sigkill_then_resume_loses_nothing_and_ends_the_same(finished_run, tmp_path,
                                                             cli_main):
    reference, _ = finished_run
    out = tmp_path / "killed"
    searching.kill_after(TINY, out, 4)
    finished_before_kill = len(read_log(out))
    assert 4 <= finished_before_kill < 12
    assert not (out / "result.json").exists()
    # Resumed in this process, whose programs finished_run compiled.
    assert cli_main("search", "--resume", out, "--quiet").returncode == 0
    assert searching.log_without_time(out) == searching.log_without_time(reference)
    resumed = json.loads((out / "result.json").read_text())
    expected = json.loads((reference / "result.json").read_text())
    assert resumed["best"] == expected["best"]
    assert resumed["test_accuracy"] == pytest.approx(expected["test_accuracy"])




def test_batch_norm_halving_resumes_exactly_and_exports_running_statistics(tmp_path, cli_main):
    """Successive halving continues survivors (with their batch-norm statistics) at the
    next rung; a run killed in between and resumed logs exactly what an uninterrupted
    run logs, and its export is a PyTorch state dict with the running statistics."""
    # Population 2, budget 12: rungs of 6 archs at 5 steps and their best 2 at 16 steps,
    # then a new bracket; killed after the first rung, resumed before the second.
    args = ["--space", "nasbench201", "--strategy", "halving", "--population", "2",
            "--budget-evals", "12", "--steps", "16", "--final-steps", "8", "--width", "4",
            "--batch-size", "32", "--seed", "1"]
    # The reference and the resume run in this process, the killed search in a
    # subprocess (from the session's compilation cache).
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert cli_main("search", *args, "--out", reference, "--quiet").returncode == 0
    rungs = {line["steps"] for line in searching.log_without_time(reference)}
    assert len(rungs) > 1, "survivors must be continued at a higher fidelity"
    searching.kill_after(args, killed, 6)
    assert cli_main("search", "--resume", killed, "--quiet").returncode == 0
    assert searching.log_without_time(killed) == searching.log_without_time(reference)
    predictor = jaxnas.load(reference)
    assert predictor.model_config.norm == "batch"
    # predict uses the running statistics: the retrained model's test accuracy again.
    test = jaxnas.data.load("digits", seed=1)
    accuracy = (predictor.predict(test.x_test, normalised=True) == test.y_test).mean()
    result = json.loads((reference / "result.json").read_text())
    assert accuracy == pytest.approx(result["test_accuracy"], abs=1e-6)
    stem = predictor.params["stem"]
    assert not np.allclose(stem["mean"], 0) and not np.allclose(stem["var"], 1)
    torch = pytest.importorskip("torch", reason="the torch export needs torch")
    target = tmp_path / "state.pt"
    assert cli_main("export", reference, "--state-dict", target).returncode == 0
    state = torch.load(target)
    np.testing.assert_allclose(state["stem.1.running_mean"].numpy(), stem["mean"], rtol=1e-6)
    np.testing.assert_allclose(state["stem.1.running_var"].numpy(), stem["var"], rtol=1e-6)


def test_ctrl_c_writes_the_checkpoint_and_says_how_to_resume(tmp_path, finished_run, cli_main):
    out = tmp_path / "interrupted"
    env = searching.env()
    process = subprocess.Popen(
        [sys.executable, "-m", "jaxnas.cli", "search", *TINY, "--out", str(out), "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "log.jsonl").exists():
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    assert f"jaxnas search --resume {out}" in stderr
    assert "Traceback" not in stderr
    done = len(read_log(out))
    assert 4 <= done < 12
    assert cli_main("search", "--resume", out, "--quiet").returncode == 0  # finished_run's programs
    assert len(read_log(out)) == 12


@pytest.mark.parametrize("args, message", [
    (["--dataset", "missing.npz"], "missing.npz"),
    (["--dataset", "bogus"], "bogus"),
    (["--lr", "-1"], "--lr must be a positive number"),
    (["--budget-evals", "0"], "must be at least 1"),
    (["--space", "nope"], "invalid choice: 'nope'"),
])
def test_bad_options_give_one_line_and_write_nothing(tmp_path, cli_main, args, message):
    out = tmp_path / "never"
    result = cli_main("search", *args, "--out", out)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_bad_dataset_file_and_existing_directory_are_refused(tmp_path, cli_main):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((10, 3)), y=np.zeros(9))
    result = cli_main("search", "--dataset", bad, "--out", tmp_path / "r")
    assert result.returncode == 2 and "x has 10 rows but y has 9" in result.stderr
    assert result.stderr.count("\n") == 1
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    result = cli_main("search", "--out", existing)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (existing / "keep.txt").read_text() == "mine"


def test_corrupt_checkpoint_and_wrong_directories_are_refused(finished_run, tmp_path, cli_main):
    reference, _ = finished_run
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "state.msgpack").write_bytes(b"\x00garbage")
    (run / "log.jsonl").write_text("")
    result = cli_main("search", "--resume", run)
    assert result.returncode == 2 and "not a checkpoint" in result.stderr
    result = cli_main("search", "--resume", tmp_path)
    assert result.returncode == 2 and "not a run directory" in result.stderr
    result = cli_main("search", "--resume", reference)
    assert result.returncode == 2 and "finished search" in result.stderr
    with pytest.raises(SearchError, match="not a run directory"):
        read_log(tmp_path)


def test_report_prints_the_top_architectures(finished_run, cli_main):
    out, _ = finished_run
    result = cli_main("report", out, "--top", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["rank", "hash", "val_loss"]
    assert len([line for line in lines if line.strip()[:1].isdigit()]) == 3
    assert "test accuracy" in result.stdout


def test_space_commands(cli_main):
    result = cli_main("space", "count", "nasbench201", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"space": "nasbench201", "valid": 15625, "unique": 6466}
    result = cli_main("space", "count", "nasbench101", "--max-nodes", "9")
    assert result.returncode == 2 and "between 2 and 7" in result.stderr


def test_space_show(finished_run, tmp_path, cli_main):
    out, _ = finished_run
    result = cli_main("space", "show", out / "best" / "arch.json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("mlp architecture, hash ")
    assert "node 0: input" in result.stdout
    broken = tmp_path / "broken.json"
    broken.write_text('{"nodes": ["input", "output"], "edges": [[1, 0]]}')
    result = cli_main("space", "show", broken)
    assert result.returncode == 2 and "Traceback" not in result.stderr


_PLAIN_TORCH = """
import sys
sys.modules["jaxnas"] = sys.modules["jax"] = None  # plain PyTorch: neither can be imported
try:
    import jaxnas
except ImportError:
    pass
else:
    raise SystemExit("jaxnas was importable")
import numpy as np
import torch
program = torch.export.load(sys.argv[1]).module()
with torch.no_grad():
    np.save(sys.argv[3], program(torch.from_numpy(np.load(sys.argv[2]))).numpy())
"""


def test_export_to_torch_gives_the_same_predictions(finished_run, tmp_path, cli_main):
    torch = pytest.importorskip("torch", reason="the torch export needs torch")
    from jaxnas import export

    out, _ = finished_run
    program, state = tmp_path / "best.pt2", tmp_path / "state.pt"
    result = cli_main("export", out, "--torch", program, "--state-dict", state)
    assert result.returncode == 0, result.stderr
    assert "torch.export program" in result.stdout and "tensors" in result.stdout
    predictor = jaxnas.load(out)
    x = jaxnas.data.load("digits", seed=3).x_test[:50]
    raw = x * predictor.std + predictor.mean
    np.save(tmp_path / "x.npy", raw)
    subprocess.run([sys.executable, "-I", "-c", _PLAIN_TORCH, str(program),
                    str(tmp_path / "x.npy"), str(tmp_path / "logits.npy")],
                   check=True, timeout=300, cwd=tmp_path)
    expected = predictor.logits(raw)
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), expected, rtol=1e-5, atol=1e-5)
    module = export.seed_module(predictor.space, predictor.arch, predictor.params,
                                predictor.input_shape, predictor.num_classes,
                                predictor.model_config)
    module.load_state_dict(torch.load(state))
    with torch.no_grad():
        logits = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, predictor.logits(x, normalised=True), rtol=1e-5,
                               atol=1e-5)


def test_cli_gives_each_core_an_xla_cpu_device():
    from jaxnas.cli import host_devices_flag

    assert host_devices_flag("", 2) == "--xla_force_host_platform_device_count=2"
    assert host_devices_flag("--xla_dump_to=x", 4) == (
        "--xla_dump_to=x --xla_force_host_platform_device_count=4")
    chosen = "--xla_force_host_platform_device_count=1"
    assert host_devices_flag(chosen, 8) == chosen
    assert host_devices_flag("", 1) == ""


def _hold_lock(directory: Path):
    """Locks a run directory as a running search does; returns the open lock."""
    import fcntl

    directory.mkdir(exist_ok=True)
    lock = open(directory / ".lock", "a+")  # noqa: SIM115 - the caller closes it
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def test_run_directory_is_locked_while_a_search_writes_it(tmp_path, finished_run, cli_main):
    """In this process (flock locks conflict between open files of one process too), whose
    programs finished_run compiled."""
    fresh, used = tmp_path / "fresh", tmp_path / "used"
    shutil.copytree(finished_run[0], used)
    (used / "result.json").unlink()  # as if stopped before its final retraining
    for directory, args in ((fresh, [*TINY, "--out", str(fresh)]), (used, ["--resume", str(used)])):
        with _hold_lock(directory):
            before = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
            result = cli_main("search", "--quiet", *args)
            assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
            assert f"in use by another search (process {os.getpid()})" in result.stderr
            assert {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()} == before
    # The OS drops a lock with its holder: both can be used again.
    assert "test accuracy" in cli_main("search", "--quiet", "--resume", used).stdout
    assert "test accuracy" in cli_main("search", "--quiet", *TINY, "--out", fresh).stdout


@pytest.mark.parametrize("where", ["/proc/x", "/dev/null/x", "FILE/x"])
def test_uncreatable_run_directory_is_one_line(tmp_path, cli_main, where):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = where.replace("FILE", str(blocker))
    result = cli_main("search", "--quiet", *TINY, "--out", out)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "cannot use" in result.stderr
