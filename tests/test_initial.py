"""Seeding a search: --initial / initial= formats, seeds evaluated first, strategies
starting from them (jittable, fused == stepwise). The exact resume of a seeded search
after SIGKILL is tests/test_inherit.py's (seeds, inheritance and repeats at once)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from objectives import OBJECTIVE, SMALL, SPACE

import jaxnas
from jaxnas import spaces, strategies
from jaxnas.arch import (
    Arch,
    from_json,
    nb101_to_arch,
    nb201_from_str,
    prune,
    stack,
    to_json,
    unstack,
)
from jaxnas.search import SearchError, read_log
from jaxnas.search.initial import read_initial
from jaxnas.strategies._reinforce import decisions

NB201 = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
         "skip_connect~2|",
         "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|nor_conv_1x1~1|none~2|"]
# NAS-Bench-101's own example (its README): 7 nodes, 9 edges.
NB101 = ([[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
          [0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
          [0, 0, 0, 0, 0, 0, 0]],
         ["input", "conv1x1-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu",
          "maxpool3x3", "output"])
# A smaller spec (5 nodes), padded to 7 by nb101_to_arch.
NB101_SMALL = ([[0, 1, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1],
                [0, 0, 0, 0, 0]],
               ["input", "conv3x3-bn-relu", "maxpool3x3", "conv1x1-bn-relu", "output"])
MLP = spaces.get("mlp")
TINY = {"space": "mlp", "population": 4, "steps": 5, "final_steps": 5, "batch_size": 32,
        "width": 8, "seed": 3, "compile_cache": False}


def _same(a: Arch, b: Arch) -> bool:
    return (np.array_equal(np.asarray(a.adj), np.asarray(b.adj))
            and np.array_equal(np.asarray(a.ops), np.asarray(b.ops)))


def _archs(forms, space) -> list[Arch]:
    return [from_json(form, space.op_names) for form in forms]


def _mlp_seeds(n: int, seed: int = 5) -> Arch:
    return jax.device_get(MLP.sample(jax.random.key(seed), n))


# --- formats -----------------------------------------------------------------------------

def test_nb201_strings_parse_as_nasbench201_defines_them(tmp_path):
    space = spaces.get("nasbench201")
    lines = tmp_path / "cells.txt"
    lines.write_text(f"{NB201[0]}\n\n  {NB201[1]}  \n")
    listed = tmp_path / "cells.json"
    listed.write_text(json.dumps(NB201[::-1]))
    parsed = _archs(read_initial([NB201[0], str(lines), listed], space), space)
    expected = [nb201_from_str(NB201[0]), *map(nb201_from_str, NB201),
                *map(nb201_from_str, NB201[::-1])]
    assert len(parsed) == len(expected)
    assert all(_same(a, b) for a, b in zip(parsed, expected, strict=True))


def test_nb101_specs_parse_as_nasbench101_defines_them(tmp_path):
    space = spaces.get("nasbench101")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"matrix": NB101[0], "ops": NB101[1]}))
    both = tmp_path / "specs.json"
    both.write_text(json.dumps([{"matrix": m, "ops": o} for m, o in (NB101_SMALL, NB101)]))
    parsed = _archs(read_initial([spec, NB101_SMALL, (np.array(NB101[0]), NB101[1]), both],
                                 space), space)
    expected = [nb101_to_arch(*NB101), nb101_to_arch(*NB101_SMALL), nb101_to_arch(*NB101),
                nb101_to_arch(*NB101_SMALL), nb101_to_arch(*NB101)]
    assert all(_same(a, b) for a, b in zip(parsed, expected, strict=True))
    assert len(parsed) == 5


def test_jaxnas_json_round_trips(tmp_path):
    seeds = unstack(_mlp_seeds(3))
    best = tmp_path / "arch.json"  # as the run directory writes best/arch.json
    best.write_text(json.dumps({"space": "mlp", **to_json(seeds[0], MLP.op_names)}))
    listed = tmp_path / "archs.json"  # e.g. the 'arch' of log.jsonl lines, in a list
    listed.write_text(json.dumps([to_json(a, MLP.op_names) for a in seeds[1:]]))
    forms = read_initial([str(best), listed, stack(seeds), seeds[2],
                          to_json(seeds[0], MLP.op_names)], MLP)
    expected = [seeds[0], seeds[1], seeds[2], *seeds, seeds[2], seeds[0]]
    assert forms == tuple(to_json(a, MLP.op_names) for a in expected)
    assert json.loads(json.dumps(forms)) == list(forms)  # what the run directory records


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


CHAIN = to_json(unstack(_mlp_seeds(1))[0], MLP.op_names)
BAD = [  # (space, item maker, message)
    ("mlp", lambda d: str(d / "missing.json"), "missing.json: no such file"),
    ("mlp", lambda d: d, ": not a file"),
    ("mlp", lambda d: _write(d, "a.json", "{not json"), "a.json: not valid JSON"),
    ("mlp", lambda d: _write(d, "e.json", "  \n"), "e.json: holds no architecture"),
    ("mlp", lambda d: _write(d, "l.json", "[]"), "l.json: holds no architecture"),
    ("mlp", lambda d: NB201[0], "needs the nasbench201 space; this run searches mlp"),
    ("mlp", lambda d: _write(d, "t.txt", NB201[0]), "t.txt: not JSON"),
    ("nasbench201", lambda d: _write(d, "c.txt", NB201[0] + "\n|bogus~0|+|x|+|y|\n"),
     "c.txt line 2: "),
    ("nasbench201", lambda d: NB201[0].replace("avg_pool_3x3", "max_pool"),
     "unknown NAS-Bench-201 op 'max_pool'"),
    ("nasbench201", lambda d: _write(d, "s.json", json.dumps({"matrix": NB101[0],
                                                             "ops": NB101[1]})),
     "s.json: a NAS-Bench-101 spec needs the nasbench101 space; this run searches nasbench201"),
    ("nasbench101", lambda d: _write(d, "u.json", json.dumps(
        [{"matrix": NB101[0], "ops": NB101[1]},
         {"matrix": NB101[0], "ops": [*NB101[1][:2], "conv5x5", *NB101[1][3:]]}])),
     "u.json item 1: unknown NAS-Bench-101 op 'conv5x5'"),
    ("nasbench101", lambda d: _write(d, "x.json", json.dumps(
        {"matrix": [[0, 1, 0], [0, 0, 0], [0, 0, 0]], "ops": ["input", "maxpool3x3",
                                                          "output"]})),
     "x.json: not an architecture of the nasbench101 space: the output is not reachable"),
    ("nasbench101", lambda d: _write(d, "m.json", json.dumps(
        {"matrix": [[0, 1] * 4] * 8, "ops": ["input"] + ["maxpool3x3"] * 6 + ["output"]})),
     "m.json: "),
    ("mlp", lambda d: _write(d, "o.json", json.dumps({**CHAIN, "space": "conv"})),
     "o.json: an architecture of the conv space; this run searches mlp"),
    ("mlp", lambda d: _write(d, "n.json", json.dumps({**CHAIN, "nodes": ["input", "conv3",
                                                                         *CHAIN["nodes"][2:]]})),
     "n.json: unknown op name 'conv3'"),
    ("mlp", lambda d: _write(d, "g.json", json.dumps(
        {"nodes": ["input", "dense32-relu", "dense32-relu", "pad", "pad", "output"],
         "edges": [[0, 1], [0, 2], [1, 5], [2, 5]]})), "g.json: not an architecture of the "
     "mlp space: mlp architectures are chains"),
    ("mlp", lambda d: _write(d, "k.json", json.dumps({"layers": 3})), "k.json: an architecture "
     "object has 'nodes' and 'edges'"),
    ("mlp", lambda d: 3, "initial[0]: expected a file"),
]


@pytest.mark.parametrize("space, make, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_input_is_one_line_naming_it(tmp_path, space, make, message):
    with pytest.raises(SearchError) as caught:
        read_initial([make(tmp_path)], spaces.get(space))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_input_in_python_writes_nothing(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(SearchError, match="initial\\[1\\]: not an architecture of the mlp"):
        dag = unstack(jax.device_get(spaces.get("dag").sample(jax.random.key(0), 1)))[0]
        jaxnas.search(**TINY, budget=4, out=out, initial=[CHAIN, dag])
    assert not out.exists()


# The searches this module starts in subprocesses share one compilation cache
# (as in tests/test_search.py); the test process keeps the cache off.






def test_cli_bad_initial_is_one_line_exit_2_and_no_run_directory(tmp_path, cli_main):
    out = tmp_path / "never"
    good = _write(tmp_path, "good.json", json.dumps(CHAIN))
    for args, message in (
            ([good, str(tmp_path / "gone.json")], "gone.json: no such file"),
            ([good, NB201[0]], "needs the nasbench201 space; this run searches mlp")):
        result = cli_main("search", "--space", "mlp", "--initial", *args, "--out", out)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
        assert not out.exists()
    result = cli_main("search", "--resume", out, "--initial", good)
    assert result.returncode == 2 and "give no other options" in result.stderr


# --- seeds come first and strategies start from them --------------------------------------

@pytest.mark.parametrize("strategy, options", [
    ("random", {}), ("evolution", {"population_size": 8}), ("local", {}),
    ("bananas", {"initial_samples": 4, "train_steps": 10, "num_parents": 2,
                 "mutants_per_parent": 2, "random_candidates": 4}),
    ("reinforce", {})])
def test_seeds_are_the_first_evaluations_in_order(tmp_path, strategy, options):
    seeds = _mlp_seeds(6)  # two asks of 4: all of the first, half of the second
    out = tmp_path / strategy
    result = jaxnas.search(**TINY, strategy=strategy, budget=9, out=out, initial=seeds,
                           strategy_options=options)
    records = read_log(out)
    assert [r.arch for r in records[:6]] == [to_json(a, MLP.op_names) for a in unstack(seeds)]
    assert [r.generation for r in records[:6]] == [0, 0, 0, 0, 1, 1]
    assert len(records) == 9 and result.config.initial == tuple(r.arch for r in records[:6])
    saved = json.loads((out / "result.json").read_text())["config"]["initial"]
    assert saved == [r.arch for r in records[:6]]


def test_more_seeds_than_the_budget_evaluate_the_first_ones():
    seeds = _mlp_seeds(6)
    result = jaxnas.search(**TINY, budget=4, initial=seeds)
    assert [r.arch for r in result.history] == [to_json(a, MLP.op_names)
                                                for a in unstack(seeds)[:4]]


def _rows(archs: Arch) -> list[tuple]:
    return [tuple(np.asarray(a.ops)) + tuple(np.asarray(a.adj).ravel()) for a in unstack(archs)]


def test_evolution_population_starts_from_the_seeds():
    seeds = jax.device_get(SPACE.sample(jax.random.key(1), 8))
    inner = strategies.get("evolution", SPACE, population_size=8, batch_size=4,
                           tournament_size=3)
    strategy = strategies.seeded(inner, seeds)
    ask, tell = jax.jit(strategy.ask), jax.jit(strategy.tell)
    state = strategy.init(jax.random.key(2))
    for step in range(2):
        archs, state = ask(jax.random.key(10 + step), state)
        assert _rows(archs) == _rows(seeds[4 * step:4 * step + 4])
        assert not np.asarray(strategy.lineage(state).has_parent).any()
        state, _ = tell(jax.random.key(20 + step), state, archs, OBJECTIVE(archs))
    assert set(_rows(state.inner.population)) == set(_rows(seeds))
    # the population is the seeds: every winner of the first tournaments is one of them
    _, state = ask(jax.random.key(30), state)
    lineage = strategy.lineage(state)
    assert np.asarray(lineage.has_parent).all()
    assert set(_rows(lineage.parent)) <= set(_rows(seeds))


@pytest.mark.parametrize("name", ["halving", "hyperband"])
def test_halving_takes_seeds_into_first_rungs_and_continues_survivors(name):
    # batch 2, eta 2, 3 rungs: bracket 0 asks 8 archs, then their best 4, then the best 2.
    inner = strategies.get(name, SPACE, **SMALL[name])
    seeds = jax.device_get(SPACE.sample(jax.random.key(3), 10))
    strategy = strategies.seeded(inner, seeds)
    ask, tell = jax.jit(strategy.ask), jax.jit(strategy.tell)
    evaluate = OBJECTIVE.noisy(0.3, 4)
    state = strategy.init(jax.random.key(4))
    asked, rung_of = [], []
    for step in range(9):
        rung_of.append(int(state.inner.rung))
        steps = strategy.fidelity(state)
        archs, state = ask(jax.random.key(50 + step), state)
        asked.append(_rows(archs))
        state, _ = tell(jax.random.key(60 + step), state, archs,
                        evaluate(jax.random.key(70 + step), archs, steps))
    assert rung_of == [0, 0, 0, 0, 1, 1, 2, 0, 0]
    first_rung = [row for rows, r in zip(asked[:4], rung_of[:4], strict=True) for row in rows]
    assert first_rung == _rows(seeds[:8])  # the first rung is the seeds
    later = [row for rows, r in zip(asked, rung_of, strict=True) if r > 0 for row in rows]
    assert set(later) <= set(first_rung)  # later rungs ask only survivors again
    restart = rung_of.index(0, 4)  # the next fresh rung takes the two seeds left
    assert asked[restart] == _rows(seeds[8:])


# --- jittable, fused == stepwise ---------------------------------------------------------

@pytest.mark.parametrize("name", ["evolution", "halving", "reinforce"])
def test_seeded_strategies_fuse_like_stepwise(name):
    inner = strategies.get(name, SPACE, **SMALL[name])
    seeds = jax.device_get(SPACE.sample(jax.random.key(6), 5))
    strategy = strategies.seeded(inner, seeds)
    evaluate = OBJECTIVE.noisy(0.3, 4) if inner.info.multi_fidelity else OBJECTIVE.evaluate
    _, fused = strategies.run_fused(jax.random.key(7), strategy, evaluate, generations=4)
    _, stepwise = strategies.run_stepwise(jax.random.key(7), strategy, evaluate, generations=4)
    np.testing.assert_array_equal(np.asarray(fused.archs.ops), stepwise.archs.ops)
    np.testing.assert_allclose(np.asarray(fused.fitness), stepwise.fitness, rtol=1e-6)
    asked = np.asarray(fused.archs.ops).reshape(-1, SPACE.max_nodes)
    np.testing.assert_array_equal(asked[:5], seeds.ops)


def test_one_shot_strategies_are_not_seeded():
    one_shot = strategies.get("random", SPACE, batch_size=2)
    one_shot = one_shot._replace(info=one_shot.info._replace(max_asks=1))
    with pytest.raises(ValueError, match="asks only 1 time; it cannot start"):
        strategies.seeded(one_shot, SPACE.sample(jax.random.key(0), 1))


@pytest.mark.parametrize("space", [spaces.get("nasbench201"), MLP, spaces.get("dag", max_nodes=5),
                                   spaces.get("nasbench101"), spaces.nasbench_graph()])
def test_reinforce_encodes_seeds_as_the_decisions_that_draw_them(space):
    table = decisions(space)
    archs = space.sample(jax.random.key(8), 16)
    choices, used = jax.vmap(table.encode)(archs)
    assert np.asarray(table.mask)[np.arange(choices.shape[1]), np.asarray(choices)].all()
    decoded, decoded_used = jax.vmap(table.decode)(choices)
    expected = jax.vmap(prune)(archs) if space.topology == "dag" else archs
    np.testing.assert_array_equal(np.asarray(decoded.ops), np.asarray(expected.ops))
    np.testing.assert_array_equal(np.asarray(decoded.adj), np.asarray(expected.adj))
    np.testing.assert_array_equal(np.asarray(used), np.asarray(decoded_used))


def test_reinforce_learns_from_a_seed_as_if_it_had_drawn_it():
    strategy = strategies.get("reinforce", SPACE, batch_size=4)
    seeds = SPACE.sample(jax.random.key(9), 4)
    _, state = strategy.ask(jax.random.key(11), strategy.init(jax.random.key(10)))
    choices, used = jax.vmap(decisions(SPACE).encode)(seeds)
    drew_seeds = state.replace(choices=choices, used=used, asked=seeds)
    fitness = OBJECTIVE(seeds)
    told, _ = strategy.tell(jax.random.key(12), state, seeds, fitness)
    expected, _ = strategy.tell(jax.random.key(12), drew_seeds, seeds, fitness)
    np.testing.assert_allclose(told.logits, expected.logits, rtol=1e-6)
    assert not np.allclose(told.logits, 0)
    assert jnp.isfinite(told.logits).all()


# --- resume after SIGKILL ----------------------------------------------------------------
