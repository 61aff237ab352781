"""Tabular benchmarks: loaders against their packages and fixtures, fused == stepwise, CLI."""

import bz2
import itertools
import json
import pickle
import random
import sys
import types
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxnas import spaces, strategies, tables
from jaxnas.arch import (
    NB201_EDGES,
    NB201_OPS,
    ArchError,
    nb201_from_str,
    nb201_to_str,
    nbg_key,
    nbg_to_arch,
    reaches_output,
    stack,
)
from jaxnas.bench import _fused_rows, _loop_rows, needs, regret_curves
from jaxnas.cli import main

ROOT = Path(__file__).resolve().parent.parent
JAXNAS_TABLE = ROOT / "benchmarks" / "results" / "nb201_mnist1d.json"
NBG_OPS = spaces.nasbench_graph().op_names


def _random_graph_archs(rng: random.Random, count: int, ops: tuple[str, ...] = NBG_OPS):
    """(link, op ids into ops) pairs drawn uniformly, all-skip excluded."""
    drawn = []
    while len(drawn) < count:
        link = [0, rng.randint(0, 1), rng.randint(0, 2), rng.randint(0, 3)]
        op_ids = [rng.randrange(len(ops)) for _ in range(4)]
        if any(ops[o] != "skip" for o in op_ids):
            drawn.append((link, op_ids))
    return drawn


# NAS-Bench-Graph: keys, space and loader against the package.

def test_nbg_key_is_the_packages_valid_hash_for_every_encoding():
    package = pytest.importorskip("nas_bench_graph")
    from nas_bench_graph.architecture import Arch as PackageArch

    space = spaces.nasbench_graph()
    assert space.op_names == tuple(package.architecture.gnn_list)
    keys = set()
    for link in itertools.product(*(range(i + 1) for i in range(4))):
        for ops in itertools.product(range(9), repeat=4):
            if all(op == 8 for op in ops):
                continue
            key = nbg_key(link, ops)
            assert key == PackageArch(list(link), [space.op_names[o] for o in ops]).valid_hash()
            keys.add(key)
    assert keys == set(package.light_read("cora")) and len(keys) == 26_206


def test_every_key_is_reachable_from_the_space_and_proteins_from_its_ops():
    package = pytest.importorskip("nas_bench_graph")
    for dataset, ops in (("arxiv", NBG_OPS), ("proteins", tables.PROTEINS_OPS)):
        space = spaces.nasbench_graph(ops)
        keys = space.key_of_encoding()
        assert set(keys[keys >= 0]) == set(package.light_read(dataset))
    assert len(package.light_read("proteins")) == 2021


def test_equivalent_graph_archs_share_a_key_and_all_skip_is_excluded():
    space = spaces.nasbench_graph()
    gcn, gat, skip = (NBG_OPS.index(name) for name in ("gcn", "gat", "skip"))
    # Two ops reading the input, in either order, are one architecture.
    a, b = nbg_to_arch((0, 0, 1, 2), (gcn, gat, gat, gcn)), nbg_to_arch((0, 0, 2, 1),
                                                                        (gat, gcn, gat, gcn))
    assert space.canonical_hash(a) == space.canonical_hash(b)
    # A skip inside a chain passes its input on: the package moves it out of the
    # chain, as a leaf reading the input.
    assert nbg_key((0, 1, 2, 3), (gcn, skip, gat, gat)) == nbg_key((0, 0, 2, 3),
                                                                   (skip, gcn, gat, gat))
    assert nbg_key((0, 1, 2, 3), (gcn, skip, gat, gat)) != nbg_key((0, 1, 2, 3),
                                                                   (gcn, gat, gat, gat))
    assert nbg_key((0, 0, 0, 0), (gcn, gat, gcn, gat)) == nbg_key((0, 0, 0, 0),
                                                                  (gat, gat, gcn, gcn))
    with pytest.raises(ArchError, match="all-skip"):
        nbg_key((0, 1, 2, 3), (skip,) * 4)
    with pytest.raises(ArchError, match="link"):
        nbg_key((0, 2, 0, 0), (gcn,) * 4)
    encodings = space.enumerate()
    assert len(encodings.ops) == 24 * 9 ** 4 - 24
    assert len(np.unique(np.asarray(space.encoding_index(encodings)))) == len(encodings.ops)


def test_the_package_readmes_same_architecture_example_is_two_architectures():
    package = pytest.importorskip("nas_bench_graph")
    gcn, gin, fc, cheb = (NBG_OPS.index(name) for name in ("gcn", "gin", "fc", "cheb"))
    # The README calls these the same; fc reads gin in the first and cheb in the
    # second, so they differ, for the package as for nbg_key.
    first, second = ((0, 1, 2, 1), (gcn, gin, fc, cheb)), ((0, 1, 1, 2), (gcn, cheb, gin, fc))
    names = lambda ops: [NBG_OPS[o] for o in ops]
    package_keys = [package.Arch(list(link), names(ops)).valid_hash() for link, ops in
                    (first, second)]
    assert package_keys == [nbg_key(*first), nbg_key(*second)]
    assert package_keys[0] != package_keys[1]
    # Listing the first one's nodes in another order does give its key.
    assert nbg_key((0, 1, 1, 3), (gcn, cheb, gin, fc)) == nbg_key(*first)


@pytest.mark.parametrize("dataset", ["cora", "proteins"])
def test_nbgraph_lookups_match_the_package_for_random_archs(dataset):
    package = pytest.importorskip("nas_bench_graph")
    from nas_bench_graph.architecture import Arch as PackageArch

    table = tables.get(f"nbgraph-{dataset}")
    bench = package.light_read(dataset)
    ops = table.space.op_names
    drawn = _random_graph_archs(random.Random(dataset), 300, ops)
    archs = stack([nbg_to_arch(link, op_ids) for link, op_ids in drawn])
    records = [bench[PackageArch(link, [ops[o] for o in op_ids]).valid_hash()]
               for link, op_ids in drawn]
    rows = np.asarray(jax.jit(table.rows)(archs))
    np.testing.assert_allclose(-np.asarray(table.fitness(archs)),
                               [r["valid_perf"] for r in records], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(table.test_acc)[rows], [r["perf"] for r in records],
                               rtol=1e-6)
    np.testing.assert_allclose(np.asarray(table.costs["latency"])[rows],
                               [r["latency"] for r in records], rtol=1e-6)


def test_nbgraph_loader_reads_a_file_in_the_package_format(tmp_path):
    drawn = _random_graph_archs(random.Random(0), 40)
    bench = {}
    for i, (link, op_ids) in enumerate(drawn):
        bench[nbg_key(link, op_ids)] = {"valid_perf": 0.5 + i / 100, "perf": 0.4 + i / 100,
                                        "latency": 0.01, "para": 0.1}
    file = tmp_path / "cora.bench"
    file.write_bytes(pickle.dumps(bench))
    table = tables.get("nbgraph-cora", path=file)
    archs = stack([nbg_to_arch(link, op_ids) for link, op_ids in drawn])
    expected = [-bench[nbg_key(link, op_ids)]["valid_perf"] for link, op_ids in drawn]
    np.testing.assert_allclose(np.asarray(table.fitness(archs)), expected, rtol=1e-6)
    missing = next(pair for pair in _random_graph_archs(random.Random(1), 500)
                   if nbg_key(*pair) not in bench)
    assert float(table.fitness(nbg_to_arch(*missing))) == np.inf
    (tmp_path / "bad.bench").write_bytes(b"not a pickle")
    with pytest.raises(tables.TableError, match="not a NAS-Bench-Graph table"):
        tables.get("nbgraph-cora", path=tmp_path / "bad.bench")


def test_reinforce_asks_valid_graph_archs_and_fuses_on_a_graph_table(tmp_path):
    drawn = _random_graph_archs(random.Random(2), 3000)
    bench = {nbg_key(*pair): {"valid_perf": (nbg_key(*pair) % 97) / 97, "perf": 0.5}
             for pair in drawn}
    file = tmp_path / "proteins.bench"
    file.write_bytes(pickle.dumps(bench))
    table = tables.get("nbgraph-proteins", path=file)
    strategy = strategies.get("reinforce", table.space, batch_size=8)
    key = jax.random.key(1)
    _, fused = strategies.run_fused(key, strategy, table.evaluate, 3)
    _, stepwise = strategies.run_stepwise(key, strategy, jax.jit(table.evaluate), 3)
    np.testing.assert_array_equal(np.asarray(fused.archs.adj), stepwise.archs.adj)
    asked = jax.tree.map(lambda leaf: leaf.reshape((-1,) + leaf.shape[2:]), fused.archs)
    assert bool(jax.vmap(table.space.is_valid)(asked).all())
    assert set(np.asarray(asked.ops)[:, 1:5].ravel()) <= set(range(len(tables.PROTEINS_OPS)))


# NAS-Bench-201 from analog-nasbench.

def _cut_off(cell_index: int) -> bool:
    """Whether 'none' edges disconnect the cell's output (NAS-Bench-201 string order)."""
    ops = np.base_repr(cell_index, 5).zfill(6)
    alive = np.zeros((4, 4), bool)
    for (target, source), op in zip(NB201_EDGES, ops, strict=True):
        alive[source, target] = NB201_OPS[int(op)] != "none"
    return not reaches_output(alive.astype(np.int8))


def test_analog_op_mapping_none_cuts_exactly_the_ten_percent_cells():
    pytest.importorskip("analognasbench")
    table = tables.get("nb201-analog")
    accuracy = np.asarray(table.test_acc)
    cut = np.array([_cut_off(i) for i in range(5 ** 6)])
    assert cut.sum() > 300
    np.testing.assert_array_equal(accuracy <= 0.1001, cut)
    # Averaged over cells, the three edges into node 3 with one op each rank the
    # ops as in NAS-Bench-201: conv 3x3 > conv 1x1 > skip > avg pool.
    space = table.space
    cells = space.enumerate()
    mean = {}
    for op in ("nor_conv_3x3", "nor_conv_1x1", "skip_connect", "avg_pool_3x3"):
        mask = np.all(np.asarray(cells.ops)[:, 4:7] == NB201_OPS.index(op), axis=1)
        mean[op] = accuracy[mask].mean()
    assert list(mean) == sorted(mean, key=mean.get, reverse=True)


def test_analog_lookups_match_the_package_for_random_cells():
    analognasbench = pytest.importorskip("analognasbench")
    bench = analognasbench.AnalogNASBench()
    table = tables.get("nb201-analog")
    space = table.space
    cells = jax.tree.map(np.asarray, space.sample(jax.random.key(0), 200))
    for arch in (jax.tree.map(lambda leaf, i=i: leaf[i], cells) for i in range(200)):
        # NASLib's op indices of the cell, read from its NAS-Bench-201 string.
        nodes = [[entry.split("~")[0] for entry in node[1:-1].split("|")]
                 for node in nb201_to_str(arch).split("+")]
        key = tuple(tables.ANALOG_OPS.index(nodes[target - 1][source])
                    for target, source in tables.ANALOG_EDGES)
        expected = bench.query_metric(key, "baseline_accuracy") / 100
        assert float(table.fitness(arch)) == pytest.approx(-expected, rel=1e-6)


def test_analog_loader_places_each_record_by_naslib_order(monkeypatch):
    records = {}
    for key in itertools.product(range(5), repeat=6):
        records[key] = types.SimpleNamespace(baseline_accuracy=float(sum(
            op * 5 ** i for i, op in enumerate(key))) / 200)
    module = types.ModuleType("analognasbench")
    module.AnalogNASBench = lambda: types.SimpleNamespace(data=records)
    monkeypatch.setitem(sys.modules, "analognasbench", module)
    monkeypatch.setattr(tables._nasbench201.importlib.util, "find_spec", lambda name: True)
    table = tables.get("nb201-analog")
    cell = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
    # NASLib order (1<-0), (2<-0), (3<-0), (2<-1), (3<-1), (3<-2); ops skip, none,
    # conv3x3, conv1x1, avg pool.
    key = (2, 0, 4, 1, 3, 1)
    assert -float(table.fitness(nb201_from_str(cell))) == pytest.approx(
        records[key].baseline_accuracy / 100)


# NATS-Bench topology files.

def _results_count(accuracies: dict, epochs: int) -> dict:
    return {"name": "fixture", "train_acc1es": {}, "train_acc5es": None, "train_losses": {},
            "train_times": None, "arch_config": {}, "params": 0.5, "flop": 70.0, "seed": 777,
            "epochs": epochs, "latency": [0.01], "eval_names": sorted({k.split("@")[0]
                                                                      for k in accuracies}),
            "eval_acc1es": accuracies, "eval_times": {}, "eval_losses": {},
            "net_state_dict": None}


def _write_nats(root: Path, cells: dict[int, float], meta_archs: list[str]) -> None:
    """A NATS-Bench ``-simple`` directory: meta plus one file per cell, 4 epochs."""
    root.mkdir()
    with bz2.BZ2File(root / "meta.pickle.pbz2", "wb") as file:
        pickle.dump({"meta_archs": meta_archs, "total_archs": len(meta_archs),
                     "arch2infos": {}, "evaluated_indexes": set()}, file)
    for index, base in cells.items():
        valid = {f"x-valid@{e}": base + e for e in range(4)}
        all_results = {
            ("cifar10-valid", 777): _results_count({**valid, "ori-test@3": base + 10}, 4),
            ("cifar10", 777): _results_count({f"ori-test@{e}": base + 20 for e in range(4)}, 4),
        }
        record = {"arch_index": index, "arch_str": meta_archs[index], "all_results": all_results,
                  "dataset_seed": {"cifar10-valid": [777], "cifar10": [777]},
                  "clear_net_done": True}
        with bz2.BZ2File(root / f"{index:06d}.pickle.pbz2", "wb") as file:
            pickle.dump({"200": record}, file)


def test_nats_loader_reads_validation_curves_and_test_accuracy(tmp_path):
    cells = spaces.nasbench201().enumerate()
    picked = [3, 77, 15000]
    meta_archs = [nb201_to_str(jax.tree.map(lambda leaf, i=i: leaf[i], cells))
                  for i in (5, 3, 77, 15000)]
    _write_nats(tmp_path / "nats", {1: 50.0, 2: 60.0, 3: 70.0}, meta_archs)
    table = tables.get("nats-tss", path=tmp_path / "nats")
    assert table.fidelities == (1, 2, 3, 4) and table.size == 3
    archs = jax.tree.map(lambda leaf: leaf[np.array(picked)], cells)
    np.testing.assert_allclose(-np.asarray(table.fitness(archs)), [0.53, 0.63, 0.73])
    np.testing.assert_allclose(-np.asarray(table.fitness(archs, 2)), [0.51, 0.61, 0.71])
    np.testing.assert_allclose(np.asarray(table.test_acc)[np.asarray(table.rows(archs))],
                               [0.60, 0.70, 0.80])
    test10 = tables.get("nats-tss", path=tmp_path / "nats", dataset="cifar10")
    np.testing.assert_allclose(np.asarray(test10.test_acc)[np.asarray(test10.rows(archs))],
                               [0.70, 0.80, 0.90])
    assert float(table.fitness(jax.tree.map(lambda leaf: leaf[5], cells))) == np.inf
    (tmp_path / "nats" / "000001.pickle.pbz2").write_bytes(b"broken")
    with pytest.raises(tables.TableError, match="not a NATS-Bench pickle"):
        tables.get("nats-tss", path=tmp_path / "nats")
    with pytest.raises(tables.TableError, match="not a NATS-Bench topology directory"):
        tables.get("nats-tss", path=tmp_path / "nowhere")


# jaxnas's own table, fused == stepwise, regret and the CLI.

def test_jaxnas_table_matches_the_quality_benchmarks_reader():
    from benchmarks.quality import Table as QualityTable
    from benchmarks.quality import cell_index

    table = tables.get("jaxnas", path=JAXNAS_TABLE)
    reference = QualityTable(JAXNAS_TABLE)
    archs = spaces.nasbench201().sample(jax.random.key(3), 100)
    index = np.asarray(cell_index(archs))
    np.testing.assert_allclose(-np.asarray(table.fitness(archs)), 1 - reference.val_err[index],
                               rtol=1e-6)
    np.testing.assert_allclose(-np.asarray(table.fitness(archs, 50)),
                               1 - reference.val_err_low[index], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(table.test_regret(table.rows(archs))),
                               reference.test_err[index] - reference.test_err.min(), atol=1e-6)


# Every fused strategy a table can drive (local search runs on the host; strategies that
# train models on data are skipped by jaxnas bench too).
@pytest.mark.parametrize("name", [n for n in strategies.names()
                                  if n != "local" and not needs(n)])
def test_fused_equals_stepwise_on_a_table(name):
    table = tables.get("jaxnas", path=JAXNAS_TABLE)
    config = {"bananas": dict(capacity=16, train_steps=5, initial_samples=4),
              "halving": dict(eta=2, rungs=2, max_steps=100),
              "hyperband": dict(eta=2, rungs=2, max_steps=100)}.get(name, {})
    strategy = strategies.get(name, table.space, batch_size=4, **config)
    key = jax.random.key(7)
    _, fused = strategies.run_fused(key, strategy, table.evaluate, 4)
    _, stepwise = strategies.run_stepwise(key, strategy, jax.jit(table.evaluate), 4)
    np.testing.assert_array_equal(np.asarray(fused.archs.ops), stepwise.archs.ops)
    np.testing.assert_array_equal(np.asarray(fused.fitness), stepwise.fitness)
    assert np.isfinite(np.asarray(fused.fitness)).all()


def test_bench_in_seed_chunks_runs_each_seed_as_the_loop_does():
    # 5 seeds in chunks of 2: two full chunks and a remainder, each seed's rows in place.
    table = tables.get("jaxnas", path=JAXNAS_TABLE)
    strategy = strategies.get("bananas", table.space, batch_size=4, capacity=16,
                              train_steps=5, initial_samples=4)
    keys = jax.random.split(jax.random.key(3), 5)
    rows, _ = _fused_rows(strategy, table, 4, chunk=2)(keys)
    looped, _ = _loop_rows(strategy, table, 4, keys)
    assert len(np.unique(looped.reshape(5, -1), axis=0)) == 5
    np.testing.assert_array_equal(np.asarray(rows), looped)


def test_regret_curve_picks_by_validation_within_the_budget():
    table = tables.build("toy", spaces.nasbench201(), np.arange(5), np.arange(5 ** 6) % 5,
                         val_acc=[0.1, 0.5, 0.9, 0.7, 0.2], test_acc=[0.2, 0.6, 0.5, 0.8, 0.3])
    rows = np.array([[[0, 1], [3, 2]]])  # one seed, two generations of two
    regret, final = regret_curves(table, rows, np.zeros((1, 2)), batch_size=2, budget=4)
    # Picks after 1..4 evaluations: row 0, 1, 3, then 2 (val 0.9, test 0.5).
    np.testing.assert_allclose(regret[0], [60.0, 20.0, 0.0, 30.0], atol=1e-4)
    np.testing.assert_allclose(final, [50.0], atol=1e-4)


def test_cli_bench_writes_json_md_and_png(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--table", "jaxnas", "--path", str(JAXNAS_TABLE), "--strategy",
                 "random,local,zero_cost,darts", "--seeds", "6", "--budget", "20",
                 "--loop-seeds", "1", "--host-seeds", "2", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.with_name("bench.json").read_text())
    assert report["results"]["random"]["seeds"] == 6 and report["results"]["local"]["seeds"] == 2
    assert report["results"]["random"]["regret"][-1]["runs"] == 6
    # Strategies that train models on data are named and skipped, not run.
    assert "score_fn" in report["skipped"]["zero_cost"]
    assert "data" in report["skipped"]["darts"]
    assert "| random | 6 |" in out.with_name("bench.md").read_text()
    assert out.with_name("bench.png").stat().st_size > 0


@pytest.mark.parametrize("args, message", [
    (["--table", "nope"], "unknown table 'nope'"),
    (["--table", "nats-tss"], "needs a path"),
    (["--table", "nats-tss", "--path", "/nonexistent"], "not a NATS-Bench topology directory"),
    (["--table", "jaxnas", "--path", "/nonexistent.json"], "no such jaxnas table file"),
    (["--table", "nbgraph-cora", "--strategy", "foo"], "unknown strategy 'foo'"),
    (["--table", "nbgraph-cora", "--hp", "12"], "unexpected keyword argument 'hp'"),
    (["--table", "jaxnas", "--loop-seeds", "-1"], "--loop-seeds must be 0 or more"),
])
def test_cli_bench_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_optional_package_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "nas_bench_graph", None)
    assert main(["bench", "--table", "nbgraph-cora"]) == 2
    assert "pip install 'jaxnas[tables]'" in capsys.readouterr().err
    monkeypatch.setattr(tables._nasbench201.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(tables.TableError, match=r"jaxnas\[tables\]"):
        tables.get("nb201-analog")
