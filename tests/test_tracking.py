"""``jaxnas search --track tensorboard DIR``, read back by TensorBoard itself: its event
multiplexer and data provider, and its HParams plugin's own request handlers (what
the dashboard's table, parallel coordinates and scatter views are drawn from).

One tiny search on a Hugging Face dataset saved to disk (tests/hf_datasets.py), killed
after its second generation and resumed with the same DIR: the tracked runs and
progress points equal the log, each once.
"""

import json
import sys
from collections import Counter

import pytest
from tensorboard import context
from tensorboard.backend.event_processing import (
    data_provider,
    event_file_loader,
    plugin_event_multiplexer,
)
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import (
    api_pb2,
    backend_context,
    get_experiment,
    list_session_groups,
)
from tensorboard.util import tensor_util

from tests import hf_datasets, searching

saved = hf_datasets.saved  # the fixture of the saved datasets
TINY = ["--space", "mlp", "--population", "4", "--budget-evals", "12", "--steps", "20",
        "--final-steps", "20", "--batch-size", "32", "--cells", "2", "--seed", "7"]
OPS = ("dense32-relu", "dense32-tanh", "dense32-gelu", "dense64-relu", "dense64-tanh",
       "dense64-gelu", "dense128-relu", "dense128-tanh", "dense128-gelu")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, saved):
    root = tmp_path_factory.mktemp("tracked")
    out, logdir = root / "run", root / "tb"
    args = [*TINY, "--dataset", f"hf:{saved['images']}", "--track", "tensorboard", logdir]
    searching.kill_after(args, out, 5)
    searching.cli("search", "--resume", out, "--track", "tensorboard", logdir, "--quiet")
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    hparams = backend_context.Context(base_plugin.TBContext(
        logdir=str(logdir), multiplexer=multiplexer, data_provider=provider))
    return {"log": log, "logdir": logdir, "out": out, "multiplexer": multiplexer,
            "hparams": hparams, "args": args}


def _session_groups(hparams) -> list:
    request = api_pb2.ListSessionGroupsRequest(
        allowed_statuses=[api_pb2.STATUS_UNKNOWN], start_index=0, slice_size=1000,
        include_metrics=True)
    return list(list_session_groups.Handler(context.RequestContext(), hparams, "",
                                            request).run().session_groups)


def test_every_candidate_is_one_hparams_trial_with_the_logs_figures(tracked):
    log = tracked["log"]
    groups = {group.name: group for group in _session_groups(tracked["hparams"])}
    assert len(log) == 12
    assert sorted(groups) == [f"candidates/{i + 1:05d}-{line['hash'][:8]}"
                              for i, line in enumerate(log)]
    for i, line in enumerate(log):
        group = groups[f"candidates/{i + 1:05d}-{line['hash'][:8]}"]
        ops = Counter(line["arch"]["nodes"][1:-1])
        expected = {f"ops/{op}": ops[op] for op in OPS}
        expected.update(nodes=sum(ops[op] for op in OPS), edges=len(line["arch"]["edges"]),
                        params=line["params"], flops=line["flops"], steps=20,
                        generation=line["generation"])
        assert {name: value.number_value for name, value in group.hparams.items()} == expected
        assert {value.training_step for value in group.metric_values} == {20}
        metrics = {value.name.tag: value.value for value in group.metric_values}
        assert metrics == pytest.approx({tag: line[tag] for tag in ("val_loss", "val_acc",
                                                                    "seconds")}, rel=1e-6)


def test_the_experiment_has_the_architecture_as_hparams_and_the_metrics(tracked):
    experiment = get_experiment.Handler(context.RequestContext(), tracked["hparams"], "",
                                        api_pb2.GetExperimentRequest(include_metrics=True)).run()
    assert {info.name for info in experiment.hparam_infos} == {
        *(f"ops/{op}" for op in OPS), "nodes", "edges", "params", "flops", "steps",
        "generation"}
    flops = next(info for info in experiment.hparam_infos if info.name == "flops")
    assert flops.domain_interval.min_value == min(line["flops"] for line in tracked["log"])
    assert {info.name.tag for info in experiment.metric_infos} == {
        "val_loss", "val_acc", "seconds"}


def test_progress_is_a_point_per_generation_once_equal_to_the_log(tracked):
    log, multiplexer = tracked["log"], tracked["multiplexer"]
    generations = sorted({line["generation"] for line in log})
    assert generations == [0, 1, 2]
    for tag in ("best_val_loss", "best_val_acc", "evaluations", "evals_per_s"):
        events = multiplexer.Tensors("search", f"progress/{tag}")
        assert [event.step for event in events] == generations, tag
    values = {tag: [float(tensor_util.make_ndarray(event.tensor_proto))
                    for event in multiplexer.Tensors("search", f"progress/{tag}")]
              for tag in ("best_val_loss", "evaluations", "evals_per_s")}
    for generation in generations:
        seen = [line for line in log if line["generation"] <= generation]
        now = [line for line in log if line["generation"] == generation]
        assert values["evaluations"][generation] == len(seen)
        assert values["best_val_loss"][generation] == pytest.approx(
            min(line["val_loss"] for line in seen), rel=1e-6)
        assert values["evals_per_s"][generation] == pytest.approx(
            len(now) / sum(line["seconds"] for line in now), rel=1e-5)
    # The killed process and the resumed one each wrote an event file; no point twice.
    files = sorted((tracked["logdir"] / "search").glob("events.out.tfevents.*"))
    steps = [event.step for path in files
             for event in event_file_loader.EventFileLoader(str(path)).Load()
             for value in event.summary.value if value.tag == "progress/evaluations"]
    assert sorted(steps) == generations


def test_the_retrained_winners_test_figures_end_the_progress_run(tracked):
    result = json.loads((tracked["out"] / "result.json").read_text())
    for name in ("test_accuracy", "test_loss"):
        [event] = tracked["multiplexer"].Tensors("search", f"result/{name}")
        assert event.step == 2
        assert float(tensor_util.make_ndarray(event.tensor_proto)) == pytest.approx(
            result[name], rel=1e-6)


def test_the_search_configuration_is_tracked(tracked):
    events = tracked["multiplexer"].Tensors(".", "config")
    text = tensor_util.make_ndarray(events[0].tensor_proto).item().decode()
    config = json.loads(text.strip("`\n"))
    assert config["seed"] == 7 and config["dataset"].startswith("hf:")
    assert config == json.loads((tracked["logdir"] / "search.json").read_text())


def test_refusals_are_one_line_and_exit_2(tracked, cli_main, monkeypatch, tmp_path):
    other_seed = [*tracked["args"][:-3], "--seed", "8", "--track", "tensorboard",
                  tracked["logdir"], "--out", tmp_path / "other"]
    for args, message in [
        (("--track", "wandb", tmp_path / "tb"),
         "--track takes tensorboard or mlflow and a directory"),
        (other_seed, "tracks another search (its search.json differs)"),
    ]:
        result = cli_main("search", *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "other").exists()
    for name in [name for name in sys.modules if name.split(".")[0] == "tensorboard"]:
        monkeypatch.setitem(sys.modules, name, None)
    result = cli_main("search", "--track", "tensorboard", tmp_path / "tb")
    assert result.returncode == 2
    assert result.stderr.strip() == ("jaxnas: error: --track tensorboard needs TensorBoard: pip "
                                     "install 'jaxnas[track]'"), result.stderr
    assert not (tmp_path / "tb").exists()

