"""REINFORCE with a factorised categorical controller (Zoph & Le 2017), jitted.

The controller is a table of independent categorical distributions, one per
decision of the space's encoding:

* ``nasbench201``: one op per edge node (6 decisions over 5 ops);
* chain spaces (``mlp``): the depth, then one op per layer (ops of layers
  beyond the depth are not used and get no gradient);
* ``nasbench_graph``: each op node's parent (2, 3, 4 choices for nodes 2-4),
  then one op per node; the all-skip draw is redrawn;
* DAG spaces (``dag``, ``nasbench101``): every upper-triangular edge (on/off)
  and every inner node's op; a draw is pruned (nodes off every input -> output
  path lose their op decision) and redrawn until ``space.is_valid``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnas.arch import _encoding as enc
from jaxnas.arch._encoding import INPUT, OUTPUT, PAD, Arch
from jaxnas.spaces import Space, chain_arch, nasbench_graph_arch
from jaxnas.strategies import _base
from jaxnas.strategies._base import Info, Strategy

_MASKED = -1e9  # logit of a choice a decision does not have; finite, so no NaN gradients


class Decisions(NamedTuple):
    """How a space's encoding factorises into categorical decisions.

    Attributes:
      mask: (D, C) bool, the choices each of D decisions may take.
      decode: ``decode(choices (D,) int32) -> (arch, used (D,) bool)``; ``used``
        marks the decisions the arch depends on.
      checked: whether a decoded arch may be invalid and must be redrawn.
      encode: ``encode(arch) -> (choices, used)``, the decisions of one valid arch
        of the space (``decode`` of them gives the arch, pruned in DAG spaces).
    """

    mask: np.ndarray
    decode: Callable[[jax.Array], tuple[Arch, jax.Array]]
    checked: bool
    encode: Callable[[Arch], tuple[jax.Array, jax.Array]]


def decisions(space: Space) -> Decisions:
    """The controller's decisions for a space; ValueError for unsupported spaces."""
    k = space.num_ops
    n = space.max_nodes
    if space.topology == "fixed":
        fixed = jnp.asarray(space.fixed_adj())

        def decode_cell(choices):
            ops = jnp.concatenate([jnp.array([INPUT]), choices, jnp.array([OUTPUT])])
            return (Arch(adj=fixed, ops=ops.astype(jnp.int32)),
                    jnp.ones(choices.shape, bool))

        def encode_cell(arch):
            return arch.ops[1:-1].astype(jnp.int32), jnp.ones(n - 2, bool)

        return Decisions(np.ones((n - 2, k), bool), decode_cell, False, encode_cell)
    if space.topology == "chain":
        layers, shallowest = space.max_layers, space.min_layers
        depths = layers - shallowest + 1
        mask = np.zeros((1 + layers, max(k, depths)), bool)
        mask[0, :depths] = True
        mask[1:, :k] = True

        def decode_chain(choices):
            depth = shallowest + choices[0]
            active = jnp.arange(layers) < depth
            arch = chain_arch(jnp.where(active, choices[1:], PAD).astype(jnp.int32))
            return arch, jnp.concatenate([jnp.array([True]), active])

        def encode_chain(arch):
            hidden = arch.ops[1:-1]
            active = hidden != PAD
            depth = jnp.sum(active) - shallowest
            choices = jnp.concatenate([depth[None], jnp.where(active, hidden, 0)])
            return choices.astype(jnp.int32), jnp.concatenate([jnp.array([True]), active])

        return Decisions(mask, decode_chain, False, encode_chain)
    if space.topology == "link":
        mask = np.zeros((7, max(k, 4)), bool)
        for node in range(3):
            mask[node, :node + 2] = True
        mask[3:, :k] = True

        def decode_graph(choices):
            link = jnp.concatenate([jnp.zeros(1, choices.dtype), choices[:3]])
            return nasbench_graph_arch(link, choices[3:]), jnp.ones(choices.shape, bool)

        def encode_graph(arch):
            parents = jnp.argmax(arch.adj[:5, 2:5], axis=0)  # of op nodes 2-4
            choices = jnp.concatenate([parents, arch.ops[1:5]]).astype(jnp.int32)
            return choices, jnp.ones(7, bool)

        return Decisions(mask, decode_graph, True, encode_graph)
    if space.topology == "dag":
        rows, cols = np.triu_indices(n, 1)
        edges = len(rows)
        mask = np.zeros((edges + n - 2, max(k, 2)), bool)
        mask[:edges, :2] = True
        mask[edges:, :k] = True

        def decode_dag(choices):
            adj = jnp.zeros((n, n), jnp.int8).at[rows, cols].set(choices[:edges].astype(jnp.int8))
            ops = jnp.concatenate([jnp.array([INPUT]), choices[edges:], jnp.array([OUTPUT])])
            arch = enc.prune(Arch(adj=adj, ops=ops.astype(jnp.int32)))
            live = arch.ops[1:-1] != PAD
            return arch, jnp.concatenate([jnp.ones(edges, bool), live])

        def encode_dag(arch):
            inner = arch.ops[1:-1]
            choices = jnp.concatenate([arch.adj[rows, cols].astype(jnp.int32),
                                       jnp.where(inner >= 0, inner, 0)])
            live = enc.prune(arch).ops[1:-1] != PAD
            return choices.astype(jnp.int32), jnp.concatenate([jnp.ones(edges, bool), live])

        return Decisions(mask, decode_dag, True, encode_dag)
    raise ValueError(f"reinforce has no controller for space {space.name!r} "
                     f"({type(space).__name__}); it supports nasbench201, chain and DAG spaces")


@flax.struct.dataclass
class ReinforceParams:
    learning_rate: jax.Array  # () Adam step size on the logits
    entropy_coef: jax.Array  # () weight of the mean entropy bonus
    baseline_decay: jax.Array  # () moving-average factor of the reward baseline
    weights: jax.Array  # (M,) scalarisation weights


@flax.struct.dataclass
class ReinforceState:
    params: ReinforceParams
    logits: jax.Array  # (D, C) controller logits
    opt_state: optax.OptState  # Adam moments of the logits
    baseline: jax.Array  # () moving average of the reward (-score)
    has_baseline: jax.Array  # () bool
    choices: jax.Array  # (B, D) int32 decisions drawn by the last ask
    used: jax.Array  # (B, D) bool, the decisions each asked arch depends on
    asked: Arch  # (B,) the archs the last ask returned
    best_arch: Arch
    best_fitness: jax.Array  # () or (M,)
    count: jax.Array  # () int32


def reinforce(space: Space, *, batch_size: int = 10, learning_rate: float = 0.1,
              entropy_coef: float = 1e-3, baseline_decay: float = 0.9, objectives: int = 1,
              weights=None, max_tries: int = 64) -> Strategy:
    """Policy-gradient search: reward -fitness, moving-average baseline, entropy bonus.

    Each ask draws ``batch_size`` archs from the controller; ``tell`` takes one
    Adam step on the logits of ``mean(advantage * log p(arch)) + entropy_coef *
    entropy`` (ascent), where advantage is (reward - baseline) divided by the
    batch's reward standard deviation, so steps do not depend on the fitness
    scale. Non-finite fitness gets the batch's worst finite reward. The
    gradient is that of the decisions drawn by the preceding ask (kept in the
    state), or of the told arch's own decisions in a row where another arch
    was told (``seeded``). Where the space needs redraws, a draw still invalid after
    ``max_tries`` is replaced by the best arch so far (a valid one from
    ``init`` before any tell) and excluded from the gradient.

    Args:
      space: nasbench201, chain or DAG space.
      batch_size: B, static.
      learning_rate, entropy_coef, baseline_decay: defaults of the traced params.
      objectives: M; M > 1 fitness is scalarised with ``params.weights``.
      weights: (M,) default weights (1/M each).
      max_tries: redraws per arch in DAG spaces, static.
    """
    weights = _base.check_config("reinforce", batch_size, objectives, weights)
    table = decisions(space)
    mask = jnp.asarray(table.mask)
    count_decisions = table.mask.shape[0]
    # eps well above float noise: choices nobody drew get a gradient that is zero up to
    # rounding, which Adam's default eps would blow up to a full step
    adam = optax.scale_by_adam(eps=1e-4)

    def draw(key: jax.Array, logits: jax.Array,
             fallback: Arch) -> tuple[jax.Array, Arch, jax.Array]:
        masked = jnp.where(mask, logits, _MASKED)
        if not table.checked:
            choices = jax.random.categorical(key, masked, -1).astype(jnp.int32)
            arch, used = table.decode(choices)
            return choices, arch, used

        def propose(key):
            choices = jax.random.categorical(key, masked, -1).astype(jnp.int32)
            arch, used = table.decode(choices)
            return choices, arch, used, space.is_valid(arch)

        def cond(carry):
            return ~carry[1][3] & (carry[2] < max_tries)

        def body(carry):
            key, _, tries = carry
            key, sub = jax.random.split(key)
            return key, propose(sub), tries + 1

        start = (jnp.zeros(count_decisions, jnp.int32), fallback,
                 jnp.zeros(count_decisions, bool), jnp.array(False))
        _, (choices, arch, used, valid), _ = jax.lax.while_loop(
            cond, body, (key, start, jnp.int32(0)))
        arch = jax.tree_util.tree_map(lambda a, b: jnp.where(valid, a, b), arch, fallback)
        return choices, arch, used & valid

    def init(key: jax.Array, params: ReinforceParams | None = None) -> ReinforceState:
        params = default_params if params is None else params
        logits = jnp.zeros(table.mask.shape, jnp.float32)
        first = space.sample_one(key)
        return ReinforceState(
            params=params, logits=logits, opt_state=adam.init(logits),
            baseline=jnp.float32(0.0), has_baseline=jnp.array(False),
            choices=jnp.zeros((batch_size, count_decisions), jnp.int32),
            used=jnp.zeros((batch_size, count_decisions), bool),
            asked=_base.broadcast(first, batch_size), best_arch=first,
            best_fitness=_base.initial_fitness(objectives), count=jnp.int32(0))

    def ask(key: jax.Array, state: ReinforceState) -> tuple[Arch, ReinforceState]:
        keys = jax.random.split(key, batch_size)
        choices, archs, used = jax.vmap(draw, in_axes=(0, None, None))(keys, state.logits,
                                                                       state.best_arch)
        return archs, state.replace(choices=choices, used=used, asked=archs)

    def tell(key: jax.Array, state: ReinforceState, archs: Arch,
             fitness: jax.Array) -> tuple[ReinforceState, dict]:
        del key
        fitness = _base.check_fitness("reinforce", fitness, batch_size, objectives)
        params = state.params
        reward = -_base.score(fitness, params.weights)
        finite = jnp.isfinite(reward)
        fallback = jnp.where(state.has_baseline, state.baseline, 0.0)
        worst = jnp.where(finite.any(), jnp.min(jnp.where(finite, reward, jnp.inf)), fallback)
        reward = jnp.where(finite, reward, worst)
        previous = jnp.where(state.has_baseline, state.baseline, jnp.mean(reward))
        spread = jnp.std(reward)
        advantage = (reward - previous) / jnp.where(spread > 0, spread, 1.0)
        replaced = (jnp.any(archs.ops != state.asked.ops, -1)
                    | jnp.any(archs.adj != state.asked.adj, (-2, -1)))
        own_choices, own_used = jax.vmap(table.encode)(archs)
        choices = jnp.where(replaced[:, None], own_choices, state.choices)
        used = jnp.where(replaced[:, None], own_used, state.used)

        def objective(logits):
            log_probs = jax.nn.log_softmax(jnp.where(mask, logits, _MASKED), -1)
            chosen = jnp.take_along_axis(log_probs[None], choices[..., None], -1)[..., 0]
            log_prob = jnp.sum(jnp.where(used, chosen, 0.0), -1)
            entropy = -jnp.sum(jnp.where(mask, jnp.exp(log_probs) * log_probs, 0.0))
            entropy = entropy / count_decisions
            return -jnp.mean(advantage * log_prob) - params.entropy_coef * entropy, entropy

        (_, entropy), grads = jax.value_and_grad(objective, has_aux=True)(state.logits)
        updates, opt_state = adam.update(grads, state.opt_state)
        logits = state.logits - params.learning_rate * updates
        baseline = (params.baseline_decay * previous
                    + (1.0 - params.baseline_decay) * jnp.mean(reward))
        best_arch, best_fitness = _base.improve(state.best_arch, state.best_fitness, archs,
                                                fitness, params.weights)
        state = state.replace(logits=logits, opt_state=opt_state, baseline=baseline,
                              has_baseline=jnp.array(True), best_arch=best_arch,
                              best_fitness=best_fitness, count=state.count + batch_size)
        return state, {"count": state.count, "entropy": entropy, "baseline": baseline,
                       "mean_reward": jnp.mean(reward)}

    def best(state: ReinforceState) -> tuple[Arch, jax.Array]:
        return state.best_arch, state.best_fitness

    default_params = ReinforceParams(
        learning_rate=jnp.float32(learning_rate), entropy_coef=jnp.float32(entropy_coef),
        baseline_decay=jnp.float32(baseline_decay), weights=weights)
    info = Info("reinforce", batch_size, objectives, jittable=True, multi_fidelity=False,
                vector_fitness=False)
    return Strategy(init, ask, tell, best, None, default_params, space, info)
