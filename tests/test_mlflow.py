"""``jaxnas search --track mlflow DIR``, read back by MLflow's own client.

One tiny joint search (the learning rate searched with the architecture), stopped
after its second generation; one of its candidate runs is then left unfinished, as a
process killed while logging it leaves it; the search is resumed with the same DIR.
The store then holds each log line once, the unfinished run deleted, and the search's
run its configuration, progress and test figures.
"""

import json
import sys

import pytest
from mlflow import MlflowClient
from mlflow.artifacts import load_dict

import jaxnas

OPS = ("dense32-relu", "dense32-tanh", "dense32-gelu", "dense64-relu", "dense64-tanh",
       "dense64-gelu", "dense128-relu", "dense128-tanh", "dense128-gelu")
SETTINGS = dict(space="mlp", data="digits", budget=12, population=4, steps=20,
                final_steps=20, batch_size=32, cells=2, seed=7,
                hyperparameters={"learning_rate": "1e-3:1e-2:log"})


class _Stop(Exception):
    pass


def _stop_after_two_generations(figures: dict) -> None:
    if figures["evaluations"] >= 8:
        raise _Stop


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    out, store = root / "run", root / "store"
    with pytest.raises(_Stop):
        jaxnas.search(**SETTINGS, out=out, track=("mlflow", store),
                      progress=_stop_after_two_generations)
    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    experiment = client.get_experiment_by_name("jaxnas/mlp").experiment_id
    [stopped] = client.search_runs([experiment], "tags.`jaxnas.search` != ''")
    children = _children(client, experiment, stopped.info.run_id)
    assert len(children) == 8 and stopped.info.status == "KILLED"
    unfinished = max(children, key=lambda run: int(run.data.tags["jaxnas.line"])).info.run_id
    client.update_run(unfinished, status="RUNNING")
    jaxnas.search(out=out, resume=True, track=("mlflow", store))
    [search] = client.search_runs([experiment], "tags.`jaxnas.search` != ''")
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {"client": client, "experiment": experiment, "search": search, "log": log,
            "out": out, "store": store, "unfinished": unfinished,
            "children": _children(client, experiment, search.info.run_id)}


def _children(client, experiment: str, parent: str) -> list:
    return client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}'")


def test_every_candidate_is_one_run_with_the_logs_figures(tracked):
    log, client = tracked["log"], tracked["client"]
    runs = sorted(tracked["children"], key=lambda run: int(run.data.tags["jaxnas.line"]))
    assert len(log) == 12
    assert [run.info.run_name for run in runs] == [
        f"candidates/{i + 1:05d}-{line['hash'][:8]}" for i, line in enumerate(log)]
    for line, run in zip(log, runs, strict=True):
        assert run.info.status == "FINISHED" and run.data.tags["jaxnas.hash"] == line["hash"]
        ops = [op for op in line["arch"]["nodes"] if op in OPS]
        expected = {f"ops/{op}": ops.count(op) for op in OPS}
        expected.update(nodes=len(ops), edges=len(line["arch"]["edges"]),
                        params=line["params"], flops=line["flops"], steps=20,
                        generation=line["generation"])
        expected["hp/learning_rate"] = line["hyperparameters"]["learning_rate"]
        assert {key: float(value) for key, value in run.data.params.items()} == \
            pytest.approx(expected, rel=1e-12)
        assert run.data.metrics == pytest.approx(
            {tag: line[tag] for tag in ("val_loss", "val_acc", "seconds")}, rel=1e-6)
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert [metric.step for metric in history] == [20]
    # The run left unfinished was deleted and its line written again.
    assert client.get_run(tracked["unfinished"]).info.lifecycle_stage == "deleted"
    assert tracked["unfinished"] not in {run.info.run_id for run in runs}


def test_progress_is_a_point_per_generation_once_equal_to_the_log(tracked):
    log, client, search = tracked["log"], tracked["client"], tracked["search"]
    generations = sorted({line["generation"] for line in log})
    assert generations == [0, 1, 2]
    history = {tag: client.get_metric_history(search.info.run_id, f"progress/{tag}")
               for tag in ("best_val_loss", "best_val_acc", "evaluations", "evals_per_s")}
    for tag, points in history.items():
        assert [point.step for point in points] == generations, tag
    for generation in generations:
        seen = [line for line in log if line["generation"] <= generation]
        now = [line for line in log if line["generation"] == generation]
        assert history["evaluations"][generation].value == len(seen)
        assert history["best_val_loss"][generation].value == pytest.approx(
            min(line["val_loss"] for line in seen), rel=1e-6)
        assert history["evals_per_s"][generation].value == pytest.approx(
            len(now) / sum(line["seconds"] for line in now), rel=1e-5)


def test_the_search_run_holds_its_configuration_and_test_figures(tracked):
    search, out = tracked["search"], tracked["out"]
    result = json.loads((out / "result.json").read_text())
    config = load_dict(f"{search.info.artifact_uri}/search.json")
    joint = {"learning_rate": "0.001:0.01:log"}  # SETTINGS' range, as the config holds it
    assert config["seed"] == 7 and config["hyperparameters"] == joint
    assert search.data.params["seed"] == "7" and search.data.params["space"] == "mlp"
    assert json.loads(search.data.params["hyperparameters"]) == joint
    assert search.info.status == "FINISHED"
    assert search.data.metrics["test_accuracy"] == pytest.approx(result["test_accuracy"],
                                                                 rel=1e-6)
    assert search.data.metrics["test_loss"] == pytest.approx(result["test_loss"], rel=1e-6)


def test_refusals_are_one_line_and_exit_2(cli_main, monkeypatch, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine\n")
    result = cli_main("search", "--track", "mlflow", tmp_path / "notes",
                      "--out", tmp_path / "run")
    assert result.returncode == 2, result.stderr
    assert "is not empty and holds no MLflow store (mlflow.db)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
    for name in [name for name in sys.modules if name.split(".")[0] == "mlflow"]:
        monkeypatch.setitem(sys.modules, name, None)
    result = cli_main("search", "--track", "mlflow", tmp_path / "store")
    assert result.returncode == 2
    assert result.stderr.strip() == ("jaxnas: error: --track mlflow needs MLflow: pip install "
                                     "'jaxnas[mlflow]'"), result.stderr
    assert not (tmp_path / "store").exists()
