"""Weight inheritance and repeated evaluations: what a child starts from, what K repeats
log, and that both (with seeds) resume exactly after SIGKILL."""

import json

import jax
import numpy as np
import pytest
import searching

import jaxnas
from jaxnas import spaces
from jaxnas.arch import live_mask
from jaxnas.nn import ModelConfig, make_model
from jaxnas.search import RunDir, read_log
from jaxnas.search.config import kendall_tau
from jaxnas.search.run import arch_keys

SMALL = dict(population=4, steps=20, final_steps=10, batch_size=32, width=8, seed=5)


@pytest.mark.parametrize("name, input_shape", [
    ("mlp", (64,)), ("nasbench201", (8, 8, 1)), ("nasbench101", (8, 8, 1))])
def test_inherit_keeps_the_parents_unchanged_nodes_and_draws_changed_ones_fresh(
        name, input_shape):
    """Node by node, against liveness computed on the host (NAS-Bench-101's pruning):
    live in both with the same op -> the parent's values (running statistics too), any
    other node -> the child's fresh values; stem and head come from the parent."""
    space = spaces.get(name)
    model = make_model(space, input_shape, 10, ModelConfig(width=8))
    inherit = jax.jit(model.inherit)
    sample, mutate = jax.jit(space.sample_one), jax.jit(space.mutate)
    first = model.layout.first_node
    seen = {True: 0, False: 0}
    for seed in range(6):
        k_parent, k_child, k_arch, k_mutate = jax.random.split(jax.random.key(seed), 4)
        parent_params, fresh = model.init(k_parent), model.init(k_child)
        parent = sample(k_arch)
        child = mutate(k_mutate, parent)
        out = inherit(parent_params, parent, fresh, child)
        ops_p, ops_c = np.asarray(parent.ops), np.asarray(child.ops)
        keep = (live_mask(np.asarray(parent.adj)) & live_mask(np.asarray(child.adj))
                & (ops_p == ops_c))
        for node in range(first, space.max_nodes - 1):
            source = parent_params if keep[node] else fresh
            seen[bool(keep[node])] += 1
            for leaf, value in out["cells"][0]["nodes"].items():
                np.testing.assert_array_equal(
                    value[node - first], source["cells"][0]["nodes"][leaf][node - first])
        if "input" in out["cells"][0]:
            source = parent_params if keep[1] else fresh
            for leaf, value in out["cells"][0]["input"].items():
                np.testing.assert_array_equal(value, source["cells"][0]["input"][leaf])
        for part in ("stem", "head"):
            for a, b in zip(jax.tree.leaves(out.get(part)), jax.tree.leaves(
                    parent_params.get(part)), strict=True):
                np.testing.assert_array_equal(a, b)
    assert seen[True] and seen[False]


def test_a_searched_child_starts_from_its_parents_trained_weights(tmp_path):
    """End to end: with a learning rate too small to move the weights, a child's stored
    trained weights are its parent's stored weights on unchanged nodes and its own
    fresh initial weights on changed ones."""
    out = tmp_path / "run"
    result = jaxnas.search(space="mlp", strategy="evolution", data="digits", budget=20,
                           out=out, inherit=True, learning_rate=1e-12,
                           strategy_options={"population_size": 8}, **SMALL)
    space = spaces.get("mlp")
    model = make_model(space, (64,), 10, result.config.model)
    like = jax.eval_shape(model.init, jax.random.key(0))
    weights = RunDir(out).weights()

    def stored(h):  # repeat 0 of the stored rows
        return jax.tree.map(lambda leaf: leaf[0], weights.load(h, like))

    records = {r.hash: r for r in result.history}
    children = [r for r in result.history if r.parent is not None]
    assert children and all(r.generation >= 2 for r in children)
    assert all(r.parent is None for r in result.history[:8])  # the random initial population
    k_weights = jax.random.split(jax.random.key(SMALL["seed"]), 4)[1]
    kept = changed = 0
    for child in children:
        parent = records[child.parent]
        a = jaxnas.arch.from_json(parent.arch, space.op_names)
        b = jaxnas.arch.from_json(child.arch, space.op_names)
        keep = live_mask(np.asarray(a.adj)) & live_mask(np.asarray(b.adj)) & (
            np.asarray(a.ops) == np.asarray(b.ops))
        with jax.threefry_partitionable(False):  # as the trainer draws
            fresh = model.init(arch_keys(k_weights, [child.hash])[0])
        got, before = stored(child.hash), stored(parent.hash)
        nodes = model.layout.first_node
        for node in range(nodes, space.max_nodes - 1):
            source = before if keep[node] else fresh
            kept, changed = kept + bool(keep[node]), changed + (not keep[node])
            for leaf, value in got["cells"][0]["nodes"].items():
                np.testing.assert_allclose(value[node - nodes],
                                           source["cells"][0]["nodes"][leaf][node - nodes],
                                           atol=1e-9, rtol=0)
        source = before if keep[1] else fresh
        np.testing.assert_allclose(got["cells"][0]["input"]["kernel"],
                                   source["cells"][0]["input"]["kernel"], atol=1e-9, rtol=0)
        np.testing.assert_allclose(got["head"]["kernel"], before["head"]["kernel"], atol=1e-9,
                                   rtol=0)
    assert kept and changed


def test_repeat_zero_is_the_plain_run_and_the_log_holds_mean_and_std(tmp_path, cli_main):
    """K = 1 logs exactly the fields it always logged; with K = 3 repeat 0 reproduces
    the K = 1 results bit for bit, the other repeats differ, and the logged values are
    their mean and std."""
    plain = jaxnas.search(space="mlp", strategy="random", budget=8,
                          out=tmp_path / "plain", **SMALL)
    repeated = jaxnas.search(space="mlp", strategy="random", budget=8,
                             out=tmp_path / "repeated", repeats=3, **SMALL)
    lines = [json.loads(line) for line in (tmp_path / "plain/log.jsonl").read_text().splitlines()]
    assert {key for line in lines for key in line} == {
        "generation", "hash", "arch", "val_loss", "val_acc", "params", "flops", "steps",
        "seconds"}
    assert [r.hash for r in plain.history] == [r.hash for r in repeated.history]
    for one, three in zip(plain.history, repeated.history, strict=True):
        assert three.repeat_val_loss[0] == one.val_loss
        assert three.repeat_val_acc[0] == one.val_acc
        assert three.val_loss == pytest.approx(np.mean(three.repeat_val_loss), rel=1e-6)
        assert three.val_acc_std == pytest.approx(np.std(three.repeat_val_acc, ddof=1),
                                                  rel=1e-6)
    losses = np.array([r.repeat_val_loss for r in repeated.history])
    assert not np.any(losses[:, 1:] == losses[:, :1])
    report = cli_main("report", tmp_path / "repeated").stdout
    assert "± " in report and "rank stability over 3 repeats" in report


@pytest.mark.parametrize("strategy", ["random", "halving"])
def test_inherit_with_a_strategy_without_parents_is_one_line_and_writes_nothing(
        tmp_path, cli_main, strategy):
    result = cli_main("search", "--strategy", strategy, "--inherit", "--out", tmp_path / "x")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--inherit would change nothing" in result.stderr
    assert not (tmp_path / "x").exists()


def test_kendall_tau_matches_the_textbook_values():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert kendall_tau(a, a) == 1.0
    assert kendall_tau(a, a[::-1]) == -1.0
    # one discordant pair of 10: (9 - 1) / 10
    assert kendall_tau(a, np.array([1.0, 2.0, 3.0, 5.0, 4.0])) == pytest.approx(0.8)
    # tau-b with a tie: 4 concordant, 1 discordant, 1 tie in y of 6 pairs
    x, y = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 3.0])
    assert kendall_tau(x, y) == pytest.approx(3 / np.sqrt(6 * 5))


def test_seeded_search_with_inheritance_and_repeats_resumes_exactly_after_sigkill(tmp_path,
                                                                                 cli_main):
    """Seeds, inheritance and repeats at once: killed after two generations (the seeds and
    their first children, whose weights are the parents of the third) and resumed, the
    run logs exactly what the uninterrupted run logs, parents included. The reference and
    the resume run in this process (the killed search in a subprocess, from the session's
    compilation cache)."""
    space = spaces.get("mlp")
    seeds = tmp_path / "seeds.json"
    seeds.write_text(json.dumps([jaxnas.arch.to_json(a, space.op_names) for a in
                                 jaxnas.arch.unstack(space.sample(jax.random.key(7), 4))]))
    args = ["--space", "mlp", "--strategy", "evolution", "--inherit", "--repeats", "2",
            "--initial", str(seeds), "--population", "4", "--budget-evals", "12", "--steps",
            "20", "--final-steps", "10", "--batch-size", "32", "--width", "8", "--seed", "2",
            "--strategy-option", "population_size=4"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert cli_main("search", *args, "--out", reference, "--quiet").returncode == 0
    log = searching.log_without_time(reference)
    assert [line["arch"] for line in log[:4]] == json.loads(seeds.read_text())
    assert all(len(line["repeat_val_loss"]) == 2 for line in log)
    assert any(line.get("parent") for line in log[8:]), "children must inherit after the kill"
    searching.kill_after(args, killed, 8)
    assert 8 <= len(read_log(killed)) < 12
    assert cli_main("search", "--resume", killed, "--quiet").returncode == 0
    assert searching.log_without_time(killed) == log
    resumed = json.loads((killed / "result.json").read_text())
    assert resumed["best"] == json.loads((reference / "result.json").read_text())["best"]
