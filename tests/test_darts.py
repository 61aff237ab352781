"""First-order DARTS: valid discretised cells, determinism, a learning supernet."""

import jax
import numpy as np
import pytest

from jaxnas import data, spaces
from jaxnas.nn import ModelConfig
from jaxnas.train.darts import DartsConfig, darts, discretise

TINY = DartsConfig(steps=40, batch_size=16, model=ModelConfig(width=4))


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


@pytest.mark.parametrize("name", ["nasbench201", "nasbench101"])
def test_darts_gives_a_valid_cell_and_is_deterministic(name, digits):
    space = spaces.get(name)
    first = darts(jax.random.key(0), space, digits, TINY)
    space.validate(first.arch)
    assert first.op_weights.shape == (space.max_nodes, space.num_ops)
    np.testing.assert_allclose(first.op_weights[1:-1].sum(-1), 1.0, rtol=1e-5)
    assert np.isfinite(first.val_loss).all()
    assert first.val_loss[-10:].mean() < first.val_loss[:10].mean()  # the supernet learns
    again = darts(jax.random.key(0), space, digits, TINY)
    np.testing.assert_array_equal(again.arch.ops, first.arch.ops)
    np.testing.assert_array_equal(again.arch.adj, first.arch.adj)


def test_discretise_keeps_the_strongest_inputs_and_argmax_ops():
    space = spaces.dag(("a", "b", "c"), max_nodes=5, max_edges=5)
    edges = np.zeros((5, 5))
    edges[0, 1], edges[0, 2], edges[1, 2] = 0.9, 0.2, 0.8
    edges[0, 3], edges[1, 3], edges[2, 3] = 0.1, 0.3, 0.7
    edges[0, 4], edges[1, 4], edges[2, 4], edges[3, 4] = 0.05, 0.1, 0.6, 0.9
    op_weights = np.eye(3)[[0, 2, 1, 0, 0]]
    arch = discretise(space, edges, op_weights, inputs_per_node=2)
    # by hand: node1 <- 0; node2 <- 0, 1; node3 <- 1, 2; output <- 2, 3: 7 edges, so the two
    # weakest whose loss keeps the cell connected go: 0 -> 2 (0.2), then 1 -> 3 (0.3).
    expected = {(0, 1), (1, 2), (2, 3), (2, 4), (3, 4)}
    assert {(int(i), int(j)) for i, j in np.argwhere(arch.adj)} == expected
    np.testing.assert_array_equal(arch.ops, [-1, 2, 1, 0, -2])
    space.validate(arch)


def test_darts_refuses_chain_spaces(digits):
    with pytest.raises(ValueError, match="chain space 'mlp'"):
        darts(jax.random.key(0), spaces.get("mlp"), digits, TINY)


def test_search_driver_runs_darts_and_logs_its_cell(tmp_path):
    import jaxnas
    from jaxnas.search import read_log

    # The dense DAG cell: the driver's handling of a DARTS cell does not depend on the
    # space (darts itself is tested on both conv cell spaces above), and its training
    # programs compile in a fraction of a conv cell's.
    result = jaxnas.search(space="dag", strategy="darts", data="digits", out=tmp_path / "r",
                           steps=5, population=2, width=4, final_steps=5, batch_size=16)
    records = read_log(tmp_path / "r")
    assert len(records) == 1 and result.generations == 1
    assert records[0].hash == spaces.get("dag").canonical_hash(result.best_arch)
