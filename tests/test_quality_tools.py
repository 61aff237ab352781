"""The tabular-benchmark tools: cell lookup, unique cells, rank correlation."""

import json

import numpy as np
import pytest

from benchmarks import quality, tabulate
from jaxnas import spaces


@pytest.fixture(scope="module")
def cells():
    return tabulate.unique_cells()


def test_lookup_is_the_enumeration_index(cells):
    _, every, _, _, _ = cells
    index = quality.cell_index(every)
    np.testing.assert_array_equal(np.asarray(index), np.arange(15625))


def test_unique_cells_follow_the_nats_bench_rule(cells):
    space, every, index, first, hashes = cells
    assert len(first) == len(hashes) == 6466  # NATS-Bench's topology search space
    assert index.shape == (15625,) and index.max() == 6465
    # Every cell maps to a row whose representative has the same canonical hash.
    rng = np.random.default_rng(0)
    for i in rng.choice(15625, 200, replace=False):
        rep = first[index[i]]
        cell = type(every)(adj=every.adj[i], ops=every.ops[i])
        same = type(every)(adj=every.adj[rep], ops=every.ops[rep])
        assert space.canonical_hash(cell) == space.canonical_hash(same) == hashes[index[i]]
    assert list(first) == sorted(first)  # rows in first-appearance order


def test_spearman_handles_ties_and_non_finite_scores():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert quality._spearman(a, a) == pytest.approx(1.0)
    assert quality._spearman(a, -a) == pytest.approx(-1.0)
    # Ties get average ranks: ranks (0.5, 0.5, 2, 3) against (0, 1, 2, 3).
    tied = quality._spearman(np.array([1.0, 1.0, 2.0, 3.0]), a)
    expected = np.corrcoef([0.5, 0.5, 2, 3], [0, 1, 2, 3])[0, 1]
    assert tied == pytest.approx(expected)
    # A non-finite proxy score ranks last, like the worst finite one.
    worst = quality._spearman(np.array([-np.inf, 2.0, 3.0, 4.0]), a)
    assert worst == pytest.approx(1.0)
    assert spaces.get("nasbench201").num_ops == 5  # the lookup's base


def test_a_sampled_table_resumes_and_feeds_the_proxy_report(tmp_path, capsys):
    out = tmp_path / "table.json"
    settings = ["--sample", "6", "--steps", "3", "--low-steps", "1", "--batch-size", "16",
                "--width", "4", "--chunk", "4", "--out", str(out)]
    tabulate.main(settings)
    table = json.loads(out.read_text())
    assert not table["meta"]["complete"] and table["index"] is None
    rows = table["rows"]
    assert len(rows) == 6 and len({row[0] for row in rows}) == 6
    columns = table["columns"]
    for row in rows:
        values = dict(zip(columns, row, strict=True))
        assert 0 <= values["val_acc"] <= 1 and 0 <= values["test_acc"] <= 1
        assert values["params"] > 0 and np.isfinite(values["val_loss"])
    # Every chunk was kept: a second run trains nothing and writes the same table.
    capsys.readouterr()
    tabulate.main(settings)
    assert "0 to train" in capsys.readouterr().out
    assert json.loads(out.read_text())["rows"] == rows
    with pytest.raises(SystemExit, match="other settings"):
        tabulate.main(settings[:-2] + ["--width", "8", "--out", str(out)])
    quality.main(["--table", str(out), "--out", str(tmp_path / "q"), "--proxies-only"])
    report = json.loads((tmp_path / "q.json").read_text())
    assert set(report["proxy_spearman"]) == {"synflow", "naswot", "grad_norm", "snip",
                                             "jacob_cov"}
    with pytest.raises(SystemExit, match="partial table"):
        quality.main(["--table", str(out), "--out", str(tmp_path / "q2")])


def test_regret_counts_low_rungs_at_half_cost_and_picks_only_full_evaluations(cells):
    _, every, _, _, _ = cells
    rng = np.random.default_rng(1)
    table = object.__new__(quality.Table)
    table.val_err = rng.uniform(0.2, 0.9, 15625).astype(np.float32)
    table.test_err = table.val_err + 0.01
    table.val_err[7] = table.test_err[7] = 0.0  # the optimum, seen only at the low rung
    picked = rng.choice(np.arange(8, 15625), (3, quality.BATCH), replace=False)
    picked[0, 0] = 7
    top = picked[2][np.argmin(table.val_err[picked[2]])]
    ops = every.ops[picked][None]  # one seed, 3 generations of a batch
    history = type("History", (), {})()
    history.archs = type(every)(adj=every.adj[picked][None], ops=ops)
    history.fidelity = np.array([[50, 50, 100]])
    curves = quality.regret_curve(table, history, top_steps=100)
    # Two half-cost batches are 10 evaluations with nothing fully evaluated yet; the
    # full batch brings the count to 20 and only its cells can be picked.
    assert np.isnan(curves[10][0])
    assert curves[20][0] == pytest.approx(float(table.test_err[top]))
    plain = quality.regret_curve(table, history, top_steps=None)  # every evaluation counts
    assert plain[30][0] == pytest.approx(0.0)
