"""Multi-fidelity search over training steps: successive halving and Hyperband, jitted.

Fidelity protocol (``Strategy.fidelity``): ``fidelity(state)`` is the number of
training steps at which the archs of the next ``ask`` must be evaluated (``ask``
does not change it, so it may be read before or after the ask). A bracket's
first rung asks fresh random archs; every later rung asks exactly the
survivors of the previous rung (its best 1/eta), at about eta times the steps
(``fresh``: only a first rung takes new archs; the survivors are the best of the
archs told, which ``seeded`` may have put in place of those asked).
A driver that keeps each trained candidate keyed by canonical hash therefore
continues a survivor from its stored step count up to ``fidelity`` rather
than training it from scratch; ``tell``'s metric ``steps`` counts the training
steps charged under that rule.

Every rung is a whole number of asks of ``batch_size`` archs, so all shapes
are static and the schedule is a few small integer tables indexed by traced
counters.
"""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.arch import Arch
from jaxnas.spaces import Space
from jaxnas.strategies._base import (
    Strategy,
    check_config,
    initial_fitness,
    make_strategy,
    score,
)
from jaxnas.strategies._population import broadcast, set_rows, take, where


@flax.struct.dataclass
class HalvingParams:
    max_steps: jax.Array  # () int32, R: the training steps of every bracket's last rung
    weights: jax.Array  # (M,) scalarisation weights


@flax.struct.dataclass
class HalvingState:
    params: HalvingParams
    archs: Arch  # (capacity,) members of the current rung, in asking order; drawn by ask
    scores: jax.Array  # (capacity,) scores told in the current rung, +inf otherwise
    bracket: jax.Array  # () int32 index into the bracket schedule
    rung: jax.Array  # () int32
    chunk: jax.Array  # () int32, the next batch of the rung to ask
    best_arch: Arch
    best_fitness: jax.Array  # () or (M,)
    best_steps: jax.Array  # () int32, fidelity at which ``best_fitness`` was told
    count: jax.Array  # () int32 archs told
    training_steps: jax.Array  # () int32 steps charged, survivors continued


def _tables(brackets: list[tuple[int, int]], eta: int) -> tuple[np.ndarray, np.ndarray]:
    """Schedule of (s, m) brackets, each (brackets, rungs) int32: asks per rung and the
    divisor of the maximum steps (rung i of bracket s trains R // eta**(s-i) steps)."""
    top = max(s for s, _ in brackets)
    chunks = np.zeros((len(brackets), top + 1), np.int32)
    divisor = np.ones((len(brackets), top + 1), np.int32)
    for b, (s, m) in enumerate(brackets):
        for i in range(s + 1):
            chunks[b, i] = m * eta ** (s - i)
            divisor[b, i] = eta ** (s - i)
    return chunks, divisor


def rung_steps(max_steps: jax.Array, divisor: jax.Array) -> jax.Array:
    """Training steps of a rung: R // divisor, at least 1."""
    return jnp.maximum(max_steps // divisor, 1)


def prefers(steps: jax.Array, value: jax.Array, best_steps: jax.Array,
            best_value: jax.Array) -> jax.Array:
    """() bool: whether a finite score ``value`` told at ``steps`` replaces the incumbent:
    a higher fidelity always does, the same fidelity when the score is lower."""
    return jnp.isfinite(value) & ((steps > best_steps)
                                  | ((steps == best_steps) & (value < best_value)))


def keep_best_at(steps: jax.Array, state: HalvingState, archs: Arch,
                 fitness: jax.Array) -> HalvingState:
    """``state`` with the best of its incumbent and a batch told at ``steps`` (``prefers``)."""
    weights = state.params.weights
    scores = score(fitness, weights)
    index = jnp.argmin(scores)
    improves = prefers(steps, scores[index], state.best_steps,
                       score(state.best_fitness, weights))
    best_arch = jax.tree_util.tree_map(lambda new, old: jnp.where(improves, new[index], old),
                                       archs, state.best_arch)
    return state.replace(best_arch=best_arch,
                         best_fitness=jnp.where(improves, fitness[index], state.best_fitness),
                         best_steps=jnp.where(improves, steps, state.best_steps))


def promote(members: Arch, scores: jax.Array, active: jax.Array) -> Arch:
    """The members sorted by score, best first, inactive rows (False in ``active``)
    last; the sort is stable, so ties keep their order."""
    return take(members, jnp.argsort(jnp.where(active, scores, jnp.inf), stable=True))


def _multi_fidelity(name: str, space: Space, brackets: list[tuple[int, int]], batch_size: int,
                    eta: int, max_steps: int, objectives: int, weights) -> Strategy:
    weights = check_config(name, batch_size, objectives, weights)
    if eta < 2:
        raise ValueError(f"{name}: eta must be at least 2; got {eta}")
    if max_steps < 1:
        raise ValueError(f"{name}: max_steps must be at least 1; got {max_steps}")
    chunk_table, divisor_table = _tables(brackets, eta)
    capacity = int(chunk_table[:, 0].max()) * batch_size
    chunks, divisor = jnp.asarray(chunk_table), jnp.asarray(divisor_table)
    last_rung = jnp.asarray([s for s, _ in brackets], jnp.int32)

    def init(key: jax.Array, params: HalvingParams) -> HalvingState:
        first = space.sample_one(key)
        return HalvingState(
            params=params, archs=broadcast(first, capacity),
            scores=jnp.full((capacity,), jnp.inf, jnp.float32), bracket=jnp.int32(0),
            rung=jnp.int32(0), chunk=jnp.int32(0), best_arch=first,
            best_fitness=initial_fitness(objectives), best_steps=jnp.int32(0),
            count=jnp.int32(0), training_steps=jnp.int32(0))

    def fidelity(state: HalvingState) -> jax.Array:
        return rung_steps(state.params.max_steps, divisor[state.bracket, state.rung])

    def ask(key: jax.Array, state: HalvingState) -> tuple[Arch, HalvingState]:
        # a bracket's archs are drawn at its first ask, the only place that samples
        starts = (state.rung == 0) & (state.chunk == 0)
        members = jax.lax.cond(starts, lambda: space.sample(key, capacity), lambda: state.archs)
        index = state.chunk * batch_size + jnp.arange(batch_size)
        return take(members, index), state.replace(archs=members)

    def tell(key, state: HalvingState, archs: Arch, fitness: jax.Array):
        lower = divisor[state.bracket, jnp.maximum(state.rung - 1, 0)]
        previous = jnp.where(state.rung > 0, rung_steps(state.params.max_steps, lower), 0)
        charged = batch_size * (fidelity(state) - previous)
        rows = state.chunk * batch_size + jnp.arange(batch_size)
        told = state.scores.at[rows].set(score(fitness, state.params.weights))
        # the archs told are the rung's members (``seeded`` may have put others in their rows)
        members = set_rows(state.archs, rows, archs)
        rung_size = chunks[state.bracket, state.rung]
        rung_done = state.chunk + 1 >= rung_size
        bracket_done = rung_done & (state.rung >= last_rung[state.bracket])
        promoted = promote(members, told, jnp.arange(capacity) < rung_size * batch_size)
        state = state.replace(
            archs=where(jnp.broadcast_to(rung_done, (capacity,)), promoted, members),
            scores=jnp.where(rung_done, jnp.inf, told),
            bracket=jnp.where(bracket_done, (state.bracket + 1) % len(brackets), state.bracket),
            rung=jnp.where(bracket_done, 0, jnp.where(rung_done, state.rung + 1, state.rung)),
            chunk=jnp.where(rung_done, 0, state.chunk + 1),
            training_steps=state.training_steps + charged)
        return state, {"steps": charged, "training_steps": state.training_steps}

    return make_strategy(
        name, space, batch_size=batch_size, objectives=objectives, init=init, ask=ask,
        tell=tell, default_params=HalvingParams(max_steps=jnp.int32(max_steps), weights=weights),
        keep_best=lambda state, archs, fitness: keep_best_at(fidelity(state), state, archs,
                                                             fitness),
        fidelity=fidelity, fresh=lambda state: state.rung == 0)


def rungs_within(budget: int, batch_size: int, eta: int = 3, most: int = 4) -> int:
    """Rungs (at most ``most``) of a successive-halving bracket whose evaluations fit
    ``budget``: a bracket of s + 1 rungs evaluates batch_size * (eta**s + ... + 1) archs."""
    rungs = 1
    while rungs < most and batch_size * sum(eta**i for i in range(rungs + 1)) <= budget:
        rungs += 1
    return rungs


def successive_halving(space: Space, *, batch_size: int = 4, eta: int = 3,
                       rungs: int | None = None, max_steps: int = 27, objectives: int = 1,
                       weights=None, budget: int | None = None) -> Strategy:
    """Successive halving (Jamieson & Talwalkar 2016), brackets repeated forever.

    With R = ``max_steps`` and s = ``rungs - 1``, a bracket asks ``batch_size *
    eta**s`` random archs at R // eta**s training steps, keeps the best 1/eta of
    them at R // eta**(s-1) steps, and so on until ``batch_size`` archs are
    trained for R steps; then a new bracket starts. ``best`` prefers the
    highest fidelity told, then the lowest fitness. See the module docstring
    for the fidelity protocol.

    Args:
      space: the search space.
      batch_size: B, archs per ask; every rung is a multiple of B.
      eta: reduction factor, static.
      rungs: rungs per bracket, static; None: ``rungs_within(budget, batch_size, eta)``
        with a budget, else 4.
      max_steps: default of the traced ``params.max_steps`` (R).
      objectives: M; M > 1 fitness is scalarised with ``params.weights``.
      weights: (M,) default weights (1/M each).
      budget: the unique evaluations a search may spend (only sizes ``rungs``).
    """
    rungs = _rungs(rungs, budget, batch_size, eta)
    if rungs < 1:
        raise ValueError(f"halving: rungs must be at least 1; got {rungs}")
    return _multi_fidelity("halving", space, [(rungs - 1, 1)], batch_size, eta, max_steps,
                           objectives, weights)


def hyperband(space: Space, *, batch_size: int = 4, eta: int = 3, rungs: int | None = None,
              max_steps: int = 27, objectives: int = 1, weights=None,
              budget: int | None = None) -> Strategy:
    """Hyperband (Li et al. 2017): successive halving over brackets s = s_max, ..., 0.

    With ``s_max = rungs - 1`` and R = ``max_steps``, bracket s starts
    ``batch_size * ceil((s_max+1)/(s+1)) * eta**s`` random archs at R // eta**s
    steps (Hyperband's n, rounded so every rung is whole batches) and halves
    them s times up to R steps; after bracket 0 the cycle repeats. Arguments as
    in ``successive_halving``.
    """
    rungs = _rungs(rungs, budget, batch_size, eta)
    if rungs < 1:
        raise ValueError(f"hyperband: rungs must be at least 1; got {rungs}")
    top = rungs - 1
    brackets = [(s, math.ceil((top + 1) / (s + 1))) for s in range(top, -1, -1)]
    return _multi_fidelity("hyperband", space, brackets, batch_size, eta, max_steps,
                           objectives, weights)


def _rungs(rungs: int | None, budget: int | None, batch_size: int, eta: int) -> int:
    if rungs is not None:
        return rungs
    return 4 if budget is None else rungs_within(budget, batch_size, eta)
