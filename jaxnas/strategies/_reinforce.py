"""REINFORCE with a factorised categorical controller (Zoph & Le 2017), jitted.

The controller is a table of independent categorical distributions, one per
decision of the space's encoding (``decisions``): an op per node, a depth, a
parent or an edge bit. Each ask draws ``batch_size`` archs from it; ``tell``
takes one Adam step on the logits of ``mean(advantage * log p(arch)) +
entropy_coef * entropy`` (ascent), where advantage is (reward - baseline)
divided by the batch's reward standard deviation, so steps do not depend on
the fitness scale. The reward is -fitness; non-finite fitness gets the batch's
worst finite reward. The gradient is that of the decisions drawn by the
preceding ask (kept in the state), or of the told arch's own decisions in a
row where another arch was told (``seeded``). Where the space needs redraws
(DAG spaces, ``nasbench_graph``), a draw still invalid after ``max_tries`` is
replaced by the best arch so far (a valid one from ``init`` before any tell)
and excluded from the gradient. In a joint search a second table holds one
categorical per training hyper-parameter (its choices, or ``resolution`` equal bins
of a range in unit coordinates, each asked at its bin's centre), drawn and updated
with the same advantage.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnas.arch import Arch
from jaxnas.spaces import Space
from jaxnas.strategies._base import (
    Strategy,
    check_config,
    initial_fitness,
    make_strategy,
    score,
)
from jaxnas.strategies._decisions import Decisions, decisions
from jaxnas.strategies._hyper import HyperSpace
from jaxnas.strategies._population import broadcast

_MASKED = -1e9  # logit of a choice a decision does not have; finite, so no NaN gradients
# eps well above float noise: choices nobody drew get a gradient that is zero up to
# rounding, which Adam's default eps would blow up to a full step
_ADAM = optax.scale_by_adam(eps=1e-4)


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
    # Joint search only: (H, K) logits of the hyper-parameters' categories, their Adam
    # moments, and the (B, H) categories and unit coordinates of the last ask.
    hp_logits: jax.Array | None = None
    hp_opt_state: optax.OptState | None = None
    hp_choices: jax.Array | None = None
    hyper: jax.Array | None = None


def draw(key: jax.Array, table: Decisions, logits: jax.Array, is_valid, fallback: Arch,
         max_tries: int) -> tuple[jax.Array, Arch, jax.Array]:
    """One arch from the controller: (choices (D,), arch, used (D,) bool).

    Where ``table.checked``, invalid draws (``is_valid(arch)`` False) are redrawn
    up to ``max_tries`` times; a draw still invalid becomes ``fallback`` with no
    decision used.
    """
    masked = jnp.where(table.mask, logits, _MASKED)

    def propose(key):
        choices = jax.random.categorical(key, masked, -1).astype(jnp.int32)
        arch, used = table.decode(choices)
        return choices, arch, used

    if not table.checked:
        return propose(key)

    def body(carry):
        key, _, tries = carry
        key, sub = jax.random.split(key)
        choices, arch, used = propose(sub)
        return key, (choices, arch, used, is_valid(arch)), tries + 1

    start = (jnp.zeros(table.mask.shape[0], jnp.int32), fallback,
             jnp.zeros(table.mask.shape[0], bool), jnp.array(False))
    _, (choices, arch, used, valid), _ = jax.lax.while_loop(
        lambda carry: ~carry[1][3] & (carry[2] < max_tries), body, (key, start, jnp.int32(0)))
    arch = jax.tree_util.tree_map(lambda a, b: jnp.where(valid, a, b), arch, fallback)
    return choices, arch, used & valid


def advantages(reward: jax.Array, baseline: jax.Array,
               has_baseline: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(reward, baseline, advantage): rewards (B,) with non-finite ones set to the worst
    finite one (or to the baseline, 0 before any, when none is finite), the baseline to
    compare with (the batch mean before any), and (reward - baseline) / std(reward)."""
    finite = jnp.isfinite(reward)
    fallback = jnp.where(has_baseline, baseline, 0.0)
    worst = jnp.where(finite.any(), jnp.min(jnp.where(finite, reward, jnp.inf)), fallback)
    reward = jnp.where(finite, reward, worst)
    previous = jnp.where(has_baseline, baseline, jnp.mean(reward))
    spread = jnp.std(reward)
    return reward, previous, (reward - previous) / jnp.where(spread > 0, spread, 1.0)


def policy_objective(logits: jax.Array, mask: jax.Array, choices: jax.Array, used: jax.Array,
                     advantage: jax.Array,
                     entropy_coef: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(loss to minimise, mean entropy per decision) of the policy gradient.

    Args:
      logits: (D, C) controller logits; mask: (D, C) bool, the choices that exist.
      choices: (B, D) int32 decisions drawn; used: (B, D) bool, those that count.
      advantage: (B,); entropy_coef: () weight of the entropy bonus.
    """
    log_probs = jax.nn.log_softmax(jnp.where(mask, logits, _MASKED), -1)
    chosen = jnp.take_along_axis(log_probs[None], choices[..., None], -1)[..., 0]
    log_prob = jnp.sum(jnp.where(used, chosen, 0.0), -1)
    entropy = -jnp.sum(jnp.where(mask, jnp.exp(log_probs) * log_probs, 0.0)) / mask.shape[0]
    return -jnp.mean(advantage * log_prob) - entropy_coef * entropy, entropy


def ascend(logits: jax.Array, opt_state: optax.OptState, mask: jax.Array, choices: jax.Array,
           used: jax.Array, advantage: jax.Array, params: ReinforceParams):
    """(logits, opt_state, entropy) after one Adam step of ``policy_objective``."""
    (_, entropy), grads = jax.value_and_grad(policy_objective, has_aux=True)(
        logits, mask, choices, used, advantage, params.entropy_coef)
    updates, opt_state = _ADAM.update(grads, opt_state)
    return logits - params.learning_rate * updates, opt_state, entropy


def update(state: ReinforceState, mask: jax.Array, choices: jax.Array, used: jax.Array,
           fitness: jax.Array, hp_mask: jax.Array | None = None) -> tuple[ReinforceState, dict]:
    """One REINFORCE step: Adam on the logits (and, with ``hp_mask`` (H, K), on the
    hyper-parameters' logits, with the same advantage), then the moving-average baseline."""
    params = state.params
    reward, previous, advantage = advantages(-score(fitness, params.weights), state.baseline,
                                             state.has_baseline)
    logits, opt_state, entropy = ascend(state.logits, state.opt_state, mask, choices, used,
                                        advantage, params)
    if hp_mask is not None:
        hp_logits, hp_opt_state, _ = ascend(
            state.hp_logits, state.hp_opt_state, hp_mask, state.hp_choices,
            jnp.ones(state.hp_choices.shape, bool), advantage, params)
        state = state.replace(hp_logits=hp_logits, hp_opt_state=hp_opt_state)
    baseline = (params.baseline_decay * previous
                + (1.0 - params.baseline_decay) * jnp.mean(reward))
    state = state.replace(logits=logits, opt_state=opt_state, baseline=baseline,
                          has_baseline=jnp.array(True))
    return state, {"entropy": entropy, "baseline": baseline, "mean_reward": jnp.mean(reward)}


def reinforce(space: Space, *, batch_size: int = 10, learning_rate: float = 0.1,
              entropy_coef: float = 1e-3, baseline_decay: float = 0.9, objectives: int = 1,
              weights=None, max_tries: int = 64, hyperparameters: HyperSpace | None = None,
              resolution: int = 8) -> Strategy:
    """Policy-gradient search: reward -fitness, moving-average baseline, entropy bonus.

    Args:
      space: nasbench201, chain or DAG space.
      batch_size: B, static.
      learning_rate, entropy_coef, baseline_decay: defaults of the traced params.
      objectives: M; M > 1 fitness is scalarised with ``params.weights``.
      weights: (M,) default weights (1/M each).
      max_tries: redraws per arch in DAG spaces, static.
      hyperparameters: a joint search: a categorical per training number too
        (``Strategy.hyperparameters``).
      resolution: categories of a range of ``hyperparameters`` (equal bins of its unit
        coordinate), static.
    """
    weights = check_config("reinforce", batch_size, objectives, weights)
    table = decisions(space)
    mask = jnp.asarray(table.mask)
    hyper = hyperparameters
    if resolution < 2:
        raise ValueError(f"reinforce: resolution must be at least 2; got {resolution}")
    if hyper is not None:
        counts = hyper.bin_counts(resolution)
        hp_mask = jnp.asarray(np.arange(counts.max())[None, :] < counts[:, None])

    def init(key: jax.Array, params: ReinforceParams) -> ReinforceState:
        logits = jnp.zeros(table.mask.shape, jnp.float32)
        first = space.sample_one(key)
        state = ReinforceState(
            params=params, logits=logits, opt_state=_ADAM.init(logits),
            baseline=jnp.float32(0.0), has_baseline=jnp.array(False),
            choices=jnp.zeros((batch_size, table.mask.shape[0]), jnp.int32),
            used=jnp.zeros((batch_size, table.mask.shape[0]), bool),
            asked=broadcast(first, batch_size), best_arch=first,
            best_fitness=initial_fitness(objectives), count=jnp.int32(0))
        if hyper is None:
            return state
        hp_logits = jnp.zeros(hp_mask.shape, jnp.float32)
        return state.replace(hp_logits=hp_logits, hp_opt_state=_ADAM.init(hp_logits),
                             hp_choices=jnp.zeros((batch_size, hyper.size), jnp.int32),
                             hyper=jnp.zeros((batch_size, hyper.size), jnp.float32))

    def ask(key: jax.Array, state: ReinforceState) -> tuple[Arch, ReinforceState]:
        choices, archs, used = jax.vmap(
            lambda key: draw(key, table, state.logits, space.is_valid, state.best_arch,
                             max_tries))(jax.random.split(key, batch_size))
        state = state.replace(choices=choices, used=used, asked=archs)
        if hyper is None:
            return archs, state
        bins = jax.random.categorical(jax.random.fold_in(key, 1),
                                      jnp.where(hp_mask, state.hp_logits, _MASKED),
                                      -1, shape=(batch_size, hyper.size)).astype(jnp.int32)
        return archs, state.replace(hp_choices=bins, hyper=hyper.from_bins(bins, resolution))

    def tell(key, state: ReinforceState, archs: Arch, fitness: jax.Array):
        replaced = (jnp.any(archs.ops != state.asked.ops, -1)
                    | jnp.any(archs.adj != state.asked.adj, (-2, -1)))
        own_choices, own_used = jax.vmap(table.encode)(archs)
        return update(state, mask, jnp.where(replaced[:, None], own_choices, state.choices),
                      jnp.where(replaced[:, None], own_used, state.used), fitness,
                      None if hyper is None else hp_mask)

    default_params = ReinforceParams(
        learning_rate=jnp.float32(learning_rate), entropy_coef=jnp.float32(entropy_coef),
        baseline_decay=jnp.float32(baseline_decay), weights=weights)
    return make_strategy("reinforce", space, batch_size=batch_size, objectives=objectives,
                         init=init, ask=ask, tell=tell, default_params=default_params,
                         hyperparameters=None if hyper is None else lambda state: state.hyper)
