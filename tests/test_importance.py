"""Importance on synthetic objectives whose answer is known, and architecture drawings."""

import xml.etree.ElementTree as ET

import jax
import numpy as np
import pytest

from jaxnas import spaces
from jaxnas.arch import PAD, Arch, to_json, unstack
from jaxnas.drawing import arch_png, arch_svg
from jaxnas.importance import MIN_EVALUATIONS, arch_features, position_labels, run_importance


def _evaluations(space, loss_of, count=96, seed=0, steps=20):
    """Records of ``count`` sampled architectures scored by ``loss_of(json) + noise``."""
    rng = np.random.default_rng(seed)
    archs = unstack(space.sample(jax.random.key(seed), count))
    records = []
    for arch in archs:
        arch_json = to_json(arch, space.op_names)
        records.append({"arch": arch_json, "steps": steps,
                        "val_loss": loss_of(arch_json) + 0.05 * rng.standard_normal()})
    return records


def _live_ops(arch_json):
    return [name for name in arch_json["nodes"][1:-1] if name != "pad"]


def _first(importance, kind):
    return next(f for f in importance["features"] if f["kind"] == kind)


@pytest.mark.parametrize("space_name, good_op", [
    ("dag", "dense-tanh"), ("mlp", "dense64-gelu"), ("nasbench201", "nor_conv_3x3"),
    ("conv", "maxpool3"), ("nasbench101", "conv1x1-bn-relu")])
def test_the_op_that_lowers_the_loss_ranks_first(space_name, good_op):
    space = spaces.get(space_name)
    records = _evaluations(space, lambda a: 1.0 - 0.3 * _live_ops(a).count(good_op))
    importance = run_importance(records, space.op_names, edge_labelled=space.edge_labelled)
    best = _first(importance, "op")
    assert best["name"] == good_op
    assert best["high"] < 0  # the whole 90% interval says it helps
    assert best["effect"] == pytest.approx(-0.3, abs=0.1)
    assert importance["groups"]["op"]["r2"] > 0.5
    others = [f for f in importance["features"] if f["kind"] == "op" and f["name"] != good_op]
    assert all(abs(f["effect"]) < 0.1 for f in others)


def test_the_op_that_raises_the_loss_ranks_last():
    space = spaces.dag()
    records = _evaluations(space, lambda a: 0.5 + 0.4 * _live_ops(a).count("zero"))
    ops = [f for f in run_importance(records, space.op_names)["features"] if f["kind"] == "op"]
    assert ops[-1]["name"] == "zero" and ops[-1]["low"] > 0


def test_a_position_ranks_first_when_only_that_layer_matters():
    space = spaces.mlp()
    records = _evaluations(space, lambda a: 1.0 - 0.5 * (a["nodes"][1] == "dense128-relu"),
                           count=160)
    assert _first(run_importance(records, space.op_names), "position")["name"] == (
        "node 1: dense128-relu")


def test_nasbench201_positions_are_named_by_cell_edge():
    space = spaces.nasbench201()
    # Node 3 of the node-op form is cell edge 2<-1 (NAS-Bench-201's string order).
    records = _evaluations(space, lambda a: 1.0 - 0.5 * (a["nodes"][3] == "skip_connect"))
    importance = run_importance(records, space.op_names, edge_labelled=True)
    assert _first(importance, "position")["name"] == "edge 2<-1: skip_connect"
    assert "edge" not in importance["groups"] or all(  # the topology never changes
        "->" in f["name"] for f in importance["features"] if f["kind"] == "edge")


def test_an_edge_between_two_ops_ranks_first_when_it_alone_matters():
    space = spaces.dag()

    def loss(a):
        names = a["nodes"]
        pairs = [(names[i], names[j]) for i, j in a["edges"]]
        return 1.0 - 0.4 * pairs.count(("input", "dense-relu"))

    records = _evaluations(space, loss, count=160)
    assert _first(run_importance(records, space.op_names), "edge")["name"] == (
        "input -> dense-relu")


def test_dead_nodes_are_not_features():
    # input -> a -> output, and b hangs off the input with no path to the output.
    arch = {"nodes": ["input", "a", "b", "output"], "edges": [[0, 1], [0, 2], [1, 3]]}
    groups = arch_features([arch, {**arch, "nodes": ["input", "b", "a", "output"]}] * 2,
                           ("a", "b"))
    for kind, expected in (("op", ["a", "b"]), ("position", ["node 1: a", "node 1: b"])):
        matrix, names = groups[kind]  # counting dead nodes would make "a" and "b" constant
        assert names == expected
        np.testing.assert_array_equal(matrix, [[1, 0], [0, 1], [1, 0], [0, 1]])


def test_mixed_fidelities_and_diverged_candidates_are_handled():
    space = spaces.dag()
    records = _evaluations(space, lambda a: 1.0 - 0.3 * _live_ops(a).count("dense-tanh"))
    for i, record in enumerate(records):  # a low fidelity adds a large, known offset
        if i % 3 == 0:
            record.update(steps=5, val_loss=record["val_loss"] + 2.0)
    records[1]["val_loss"] = float("nan")
    importance = run_importance(records, space.op_names)
    assert _first(importance, "op")["name"] == "dense-tanh"
    assert all(np.isfinite([f["effect"], f["low"], f["high"]]).all()
               for f in importance["features"])


def test_too_few_evaluations_give_none():
    space = spaces.dag()
    records = _evaluations(space, lambda a: 1.0, count=MIN_EVALUATIONS - 1)
    assert run_importance(records, space.op_names) is None


def test_position_labels():
    assert position_labels(8, True)[1:7] == ["edge 1<-0", "edge 2<-0", "edge 2<-1", "edge 3<-0",
                                             "edge 3<-1", "edge 3<-2"]
    assert position_labels(3, False) == ["node 0", "node 1", "node 2"]


@pytest.mark.parametrize("space_name", spaces.names())
def test_drawings_show_every_real_node_and_edge_of_every_space(space_name):
    space = spaces.get(space_name)
    for arch in unstack(space.sample(jax.random.key(4), 3)):
        svg = ET.fromstring(arch_svg(arch, space.op_names, title="t"))
        ops = np.asarray(arch.ops)
        nodes = svg.findall(".//{http://www.w3.org/2000/svg}g[@class='node']")
        assert sorted(int(g.get("data-node")) for g in nodes) == list(np.flatnonzero(ops != PAD))
        names = {"input", "output", *space.op_names}
        assert {g.get("data-op") for g in nodes} <= names
        shown = {g.get("data-op") for g in nodes} - {"input", "output"}
        legend = {g.find("{http://www.w3.org/2000/svg}text").text
                  for g in svg.findall(".//{http://www.w3.org/2000/svg}g[@class='legend']")}
        assert legend == shown
        edges = svg.findall(".//{http://www.w3.org/2000/svg}path")
        assert len(edges) == int(np.asarray(arch.adj).sum())
        assert arch_png(arch, space.op_names)[:4] == b"\x89PNG"


def test_nodes_off_every_path_are_drawn_dashed():
    adj = np.zeros((5, 5), np.int8)
    adj[0, 1] = adj[1, 4] = adj[0, 2] = 1  # node 2 reaches no output; node 3 is padding
    arch = Arch(adj=adj, ops=np.array([-1, 0, 1, PAD, -2], np.int32))
    svg = ET.fromstring(arch_svg(arch, ("a", "b")))
    ns = "{http://www.w3.org/2000/svg}"
    nodes = {g.get("data-node"): g for g in svg.findall(f".//{ns}g[@class='node']")}
    assert sorted(nodes) == ["0", "1", "2", "4"]
    assert nodes["2"].find(f"{ns}rect").get("stroke-dasharray")
    assert nodes["1"].find(f"{ns}rect").get("stroke-dasharray") is None
