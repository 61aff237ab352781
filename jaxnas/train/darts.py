"""First-order DARTS (Liu et al. 2019) over jaxnas's padded encoding.

One supernet holds every op of every node: node i's output is the softmax(alpha_i)
mixture of its ops (``Model.apply_relaxed``), and for DAG spaces every forward edge
j -> i carries a gate sigmoid(beta_ji). Weights take a step on a training minibatch,
then the architecture parameters (alpha, beta) a step on a validation minibatch,
alternately (the first-order approximation), all in one ``lax.scan`` under ``jit``.
The result is discretised into a valid ``Arch``: each compute node keeps its
argmax op; in DAG spaces each node keeps its ``inputs_per_node`` strongest
incoming edges (DARTS keeps two), then dead nodes are pruned and, over the
space's edge limit, the weakest edges are dropped while the cell stays connected.
Spaces with a fixed topology (NAS-Bench-201) only choose ops. Chain spaces
(``mlp``) are not supported: their depth is not an op choice.

With batch norm (``ModelConfig(norm="batch")``) the supernet always normalises with
the statistics of the minibatch it runs on, for the weight steps and the
architecture steps alike, as DARTS trains its supernet in training mode; its running
statistics are never used or updated. The discretised architecture is trained
afresh, with running statistics of its own, by whoever evaluates it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnas.arch import INPUT, OUTPUT, PAD, Arch, ArchError, live_mask
from jaxnas.data import Dataset
from jaxnas.nn import ModelConfig, make_model
from jaxnas.spaces import Space


@dataclasses.dataclass(frozen=True)
class DartsConfig:
    """Settings of a DARTS search (static)."""

    steps: int = 300
    batch_size: int = 64
    weight_lr: float = 3e-3
    alpha_lr: float = 3e-3
    alpha_weight_decay: float = 1e-3
    inputs_per_node: int = 2
    model: ModelConfig = ModelConfig(width=16)


class DartsResult(NamedTuple):
    """What ``darts`` returns.

    Attributes:
      arch: the discretised architecture.
      op_weights: (N, K) softmax of the final alpha.
      edge_weights: (N, N) final edge gates (the fixed adjacency for fixed topologies).
      val_loss: (steps,) validation loss of the supernet at each architecture step.
    """

    arch: Arch
    op_weights: np.ndarray
    edge_weights: np.ndarray
    val_loss: np.ndarray


def darts(key: jax.Array, space: Space, data: Dataset,
          config: DartsConfig = DartsConfig()) -> DartsResult:  # noqa: B008 (frozen)
    """Runs first-order DARTS on ``data`` and returns the discretised architecture."""
    check_space(space)
    run = _program(space, tuple(data.input_shape), data.num_classes, config)
    k_init, k_alpha, k_batches = jax.random.split(key, 3)
    edges, op_weights, val_loss = jax.device_get(run(
        k_init, k_alpha, k_batches, jnp.asarray(data.x_train), jnp.asarray(data.y_train),
        jnp.asarray(data.x_val), jnp.asarray(data.y_val)))
    arch = discretise(space, np.asarray(edges), np.asarray(op_weights), config.inputs_per_node)
    space.validate(arch)
    return DartsResult(arch=arch, op_weights=op_weights, edge_weights=edges,
                       val_loss=np.asarray(val_loss))


@functools.lru_cache(maxsize=8)
def _program(space: Space, input_shape: tuple[int, ...], num_classes: int,
             config: DartsConfig):
    """The compiled DARTS loop for a space, data shape and config; the data are its
    arguments, so a second search of the same shapes compiles nothing."""
    n, k = space.max_nodes, space.num_ops
    fixed = space.topology == "fixed"
    model = make_model(space, input_shape, num_classes, config.model)
    index = jnp.arange(n)
    upper = (index[:, None] < index[None, :]).astype(jnp.float32)
    if fixed:
        topology = jnp.asarray(space.fixed_adj(), jnp.float32)
    inner = ((index > 0) & (index < n - 1)).astype(jnp.float32)[:, None]

    def relaxed(arch_params):
        alpha, beta = arch_params
        op_weights = jax.nn.softmax(alpha, -1) * inner
        edges = topology if fixed else jax.nn.sigmoid(beta) * upper
        return edges, op_weights

    def loss(params, arch_params, x, y):
        edges, op_weights = relaxed(arch_params)
        logits = model.apply_relaxed(params, edges, op_weights, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    weight_opt = optax.adam(config.weight_lr)
    alpha_opt = optax.adamw(config.alpha_lr, b1=0.5, b2=0.999,
                            weight_decay=config.alpha_weight_decay)

    @jax.jit
    def run(k_init, k_alpha, k_batches, x_train, y_train, x_val, y_val):
        def step(carry, step_key):
            params, arch_params, w_state, a_state = carry
            k_train, k_val = jax.random.split(step_key)
            t = jax.random.choice(k_train, len(y_train), (config.batch_size,), replace=False)
            v = jax.random.choice(k_val, len(y_val), (min(config.batch_size, len(y_val)),),
                                  replace=False)
            grads = jax.grad(loss)(params, arch_params, x_train[t], y_train[t])
            updates, w_state = weight_opt.update(grads, w_state, params)
            params = optax.apply_updates(params, updates)
            val_loss, arch_grads = jax.value_and_grad(loss, 1)(params, arch_params, x_val[v],
                                                                y_val[v])
            updates, a_state = alpha_opt.update(arch_grads, a_state, arch_params)
            arch_params = optax.apply_updates(arch_params, updates)
            return (params, arch_params, w_state, a_state), val_loss

        params = model.init(k_init)
        arch_params = (1e-3 * jax.random.normal(k_alpha, (n, k)), jnp.zeros((n, n)))
        carry = (params, arch_params, weight_opt.init(params), alpha_opt.init(arch_params))
        (_, arch_params, _, _), val_loss = jax.lax.scan(
            step, carry, jax.random.split(k_batches, config.steps))
        edges, op_weights = relaxed(arch_params)
        return edges, op_weights, val_loss

    return run


def check_space(space: Space) -> None:
    """Raises ValueError for a space DARTS cannot search: only cells ("dag" or "fixed"
    topology) relax into a supernet; a chain's depth is not an op choice."""
    if space.topology not in ("dag", "fixed"):
        raise ValueError(f"darts does not support the {space.topology or 'custom'} space "
                         f"{space.name!r}: it searches cells (dag or fixed topology)")


def discretise(space: Space, edges: np.ndarray, op_weights: np.ndarray,
               inputs_per_node: int = 2) -> Arch:
    """A valid architecture from relaxed weights (host; see the module docstring).

    Args:
      space: the search space.
      edges: (N, N) edge weights in [0, 1] (upper triangular).
      op_weights: (N, K) op mixture weights of every node.
      inputs_per_node: incoming edges each node keeps (DAG spaces).
    """
    n = space.max_nodes
    ops = np.full(n, PAD, np.int32)
    ops[0], ops[-1] = INPUT, OUTPUT
    ops[1:-1] = op_weights[1:-1].argmax(-1)
    if space.topology == "fixed":
        return Arch(adj=(edges > 0).astype(np.int8), ops=ops)
    adj = np.zeros((n, n), np.int8)
    for node in range(1, n):
        strongest = np.argsort(-edges[:node, node], kind="stable")[:inputs_per_node]
        adj[strongest, node] = 1
    while True:
        live = live_mask(adj)
        if live is None:
            raise ArchError("darts: the discretised cell does not connect input to output")
        adj = adj * np.outer(live, live).astype(np.int8)
        if adj.sum() <= space.max_edges:
            break
        adj = _drop_weakest_edge(adj, edges)
    ops = np.where(live | (np.arange(n) == 0) | (np.arange(n) == n - 1), ops, PAD)
    return Arch(adj=adj, ops=ops.astype(np.int32))


def _drop_weakest_edge(adj: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Removes the weakest edge whose removal keeps the output reachable."""
    for flat in np.argsort(np.where(adj == 1, edges, np.inf), axis=None, kind="stable"):
        i, j = divmod(int(flat), adj.shape[0])
        if adj[i, j] != 1:
            break
        trial = adj.copy()
        trial[i, j] = 0
        if live_mask(trial) is not None:
            return trial
    raise ArchError("darts: cannot meet the space's edge limit while staying connected")
