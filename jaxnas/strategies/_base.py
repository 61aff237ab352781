"""The strategy interface and the pieces every strategy shares.

A strategy is a ``Strategy`` named tuple of pure functions closed over its
space and static configuration (shapes); the numbers a user sweeps live in a
``Params`` pytree stored in the state, so changing them never recompiles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from jaxnas.arch._encoding import Arch
from jaxnas.spaces import Space
from jaxnas.strategies import pareto

State = Any
Params = Any


class Info(NamedTuple):
    """Static metadata a driver reads before it runs a strategy.

    Attributes:
      name: registry name.
      batch_size: B, the number of architectures every ``ask`` returns.
      objectives: M; ``tell`` takes fitness (B,) when M == 1, else (B, M).
      jittable: ``ask`` and ``tell`` trace under ``jax.jit`` and the whole search
        fuses into one ``lax.scan`` (``run_fused``).
      multi_fidelity: ``Strategy.fidelity`` is set: evaluate at that many steps.
      vector_fitness: with M > 1 the strategy ranks by Pareto dominance and
        ``best`` returns a front; otherwise M > 1 fitness is scalarised with
        ``params.weights``.
      max_asks: the strategy has nothing more to propose after this many asks (a
        one-shot method asks once); None: it can ask forever.
    """

    name: str
    batch_size: int
    objectives: int
    jittable: bool
    multi_fidelity: bool
    vector_fitness: bool
    max_asks: int | None = None


class Strategy(NamedTuple):
    """A search strategy: pure functions over a pytree state.

    Attributes:
      init: ``init(key, params=None) -> state``; ``params`` defaults to
        ``default_params`` (``seeded`` makes any strategy ask given archs first).
      ask: ``ask(key, state) -> (archs, state)``; archs is a population of
        ``info.batch_size`` architectures of the space.
      tell: ``tell(key, state, archs, fitness) -> (state, metrics)``; archs are
        those of the preceding ``ask``, some rows possibly replaced by others
        (``seeded`` puts given archs there): a strategy learns from the archs
        told, not from those it asked. fitness (B,) or (B, M) is minimised and
        any non-finite value (NaN included) counts as +inf; metrics is a dict of
        scalars.
      best: ``best(state) -> (arch, fitness)``: the best single architecture and
        its fitness (a scalar, or (M,) when scalarised from M objectives); for
        vector-fitness strategies with M > 1, the Pareto front as a population
        of ``archive_size`` rows, fitness (C, M), rows not on the front +inf.
      fidelity: None for single-fidelity strategies; otherwise
        ``fidelity(state) -> int32 scalar``: the number of training steps at
        which the archs returned by the next ``ask`` must be evaluated (``ask``
        leaves it unchanged: read it before or after the ask). A
        multi-fidelity strategy asks again only for archs it asked before at a
        lower fidelity (the survivors of a rung), so a driver that keeps each
        trained candidate keyed by canonical hash continues it from its stored
        step count up to ``fidelity`` instead of training from scratch.
      default_params: the ``Params`` pytree of traced, tunable numbers.
      space: the search space.
      info: static metadata (``Info``).
      lineage: None for strategies whose members have no parents; otherwise
        ``lineage(state) -> Lineage``: where each member of the ask that returned
        ``state`` came from, read from that state (jittable). A driver that keeps
        trained weights by canonical hash starts a child from its parent's
        (``SearchConfig.inherit``).
      fresh: None when every ask may return archs not asked before; otherwise
        ``fresh(state) -> bool scalar``: whether the next ``ask`` may (a
        multi-fidelity strategy's first rung of a bracket; its later rungs must
        ask the survivors again). ``seeded`` puts given archs only into such asks.
    """

    init: Callable[..., State]
    ask: Callable[[jax.Array, State], tuple[Arch, State]]
    tell: Callable[[jax.Array, State, Arch, jax.Array], tuple[State, dict]]
    best: Callable[[State], tuple[Arch, jax.Array]]
    fidelity: Callable[[State], jax.Array] | None
    default_params: Params
    space: Space
    info: Info
    lineage: Callable[[State], Lineage] | None = None
    fresh: Callable[[State], jax.Array] | None = None


@flax.struct.dataclass
class Lineage:
    """The parents of one ask's members.

    Attributes:
      parent: (B,) archs; row i is the arch member i was mutated from (any arch
        where ``has_parent[i]`` is False).
      has_parent: (B,) bool; False for members drawn afresh (random samples,
        initial populations).
    """

    parent: Arch
    has_parent: jax.Array


def orphans(arch: Arch, batch_size: int) -> Lineage:
    """A lineage of ``batch_size`` members without parents (``arch``: any one arch)."""
    return Lineage(parent=broadcast(arch, batch_size),
                   has_parent=jnp.zeros((batch_size,), bool))


def check_config(name: str, batch_size: int, objectives: int, weights) -> jax.Array:
    """Validates the shared static settings; returns the (M,) float32 weight vector."""
    if int(batch_size) < 1:
        raise ValueError(f"{name}: batch_size must be at least 1; got {batch_size}")
    if int(objectives) < 1:
        raise ValueError(f"{name}: objectives must be at least 1; got {objectives}")
    if weights is None:
        return jnp.full((objectives,), 1.0 / objectives, jnp.float32)
    weights = jnp.asarray(weights, jnp.float32)
    if weights.shape != (objectives,):
        raise ValueError(f"{name}: weights must have one entry per objective ({objectives}); "
                         f"got shape {weights.shape}")
    return weights


def check_fitness(name: str, fitness: jax.Array, batch_size: int, objectives: int) -> jax.Array:
    """Checks the static shape of told fitness and returns it as float32."""
    expected = (batch_size,) if objectives == 1 else (batch_size, objectives)
    fitness = jnp.asarray(fitness, jnp.float32)
    if fitness.shape != expected:
        raise ValueError(f"{name}: fitness must have shape {expected} for {batch_size} archs and "
                         f"{objectives} objective(s); got {fitness.shape}")
    return fitness


def score(fitness: jax.Array, weights: jax.Array) -> jax.Array:
    """Scalar score to minimise: (...,) or (..., M) fitness -> (...,).

    A single objective passes through; M objectives are summed with the (M,)
    weights. Any non-finite component makes the score +inf.
    """
    if fitness.ndim and fitness.shape[-1:] == weights.shape and weights.shape[0] > 1:
        finite = jnp.isfinite(fitness)
        weights = weights.reshape((1,) * (fitness.ndim - 1) + weights.shape)
        total = jnp.sum(jnp.where(finite, fitness, 0.0) * weights, -1)
        return jnp.where(finite.all(-1), total, jnp.inf)
    return jnp.where(jnp.isfinite(fitness), fitness, jnp.inf)


def initial_fitness(objectives: int) -> jax.Array:
    """+inf fitness of one architecture: () or (M,)."""
    shape = () if objectives == 1 else (objectives,)
    return jnp.full(shape, jnp.inf, jnp.float32)


def take(archs: Arch, index: jax.Array) -> Arch:
    """Gathers members of a population: ``index`` of any shape."""
    return jax.tree_util.tree_map(lambda leaf: leaf[index], archs)


def where(condition: jax.Array, a: Arch, b: Arch) -> Arch:
    """Per-member choice between two populations; condition (P,) bool."""
    return jax.tree_util.tree_map(
        lambda x, y: jnp.where(condition.reshape(condition.shape + (1,) * (x.ndim - 1)), x, y),
        a, b)


def concat(a: Arch, b: Arch) -> Arch:
    return jax.tree_util.tree_map(lambda x, y: jnp.concatenate([x, y]), a, b)


def broadcast(arch: Arch, n: int) -> Arch:
    """n copies of one architecture as a population."""
    return jax.tree_util.tree_map(lambda leaf: jnp.broadcast_to(leaf, (n,) + leaf.shape), arch)


def same(a: Arch, b: Arch) -> jax.Array:
    """(P, Q) bool: exact encoding equality of every member of a with every member of b."""
    ops = jnp.all(a.ops[:, None, :] == b.ops[None, :, :], -1)
    adj = jnp.all(a.adj[:, None, :, :] == b.adj[None, :, :, :], (-2, -1))
    return ops & adj


def repeats(archs: Arch) -> jax.Array:
    """(P,) bool: members whose exact encoding already occurs at a lower index."""
    equal = same(archs, archs)
    index = jnp.arange(equal.shape[0])
    return jnp.any(equal & (index[None, :] < index[:, None]), 1)


def top_unique(scores: jax.Array, archs: Arch, k: int) -> jax.Array:
    """(k,) indices of the k highest scores among distinct encodings.

    Only the ``4k`` highest-scored members are compared with each other, which
    keeps large pools cheap; if fewer than k distinct ones remain, repeats fill up.
    """
    shortlist = min(scores.shape[0], 4 * k)
    _, order = jax.lax.top_k(scores, shortlist)
    repeated = repeats(take(archs, order))
    rescored = jnp.where(repeated, -jnp.inf, scores[order])
    _, chosen = jax.lax.top_k(rescored, k)
    return order[chosen]


def improve(best_arch: Arch, best_fitness: jax.Array, archs: Arch, fitness: jax.Array,
            weights: jax.Array) -> tuple[Arch, jax.Array]:
    """Keeps the best (by ``score``) of the incumbent and a told batch.

    Args:
      best_arch: the incumbent, one architecture.
      best_fitness: its fitness, () or (M,).
      archs: told population (B,).
      fitness: (B,) or (B, M).
      weights: (M,) scalarisation weights.
    """
    scores = score(fitness, weights)
    index = jnp.argmin(scores)
    better = scores[index] < score(best_fitness, weights)
    arch = jax.tree_util.tree_map(lambda new, old: jnp.where(better, new[index], old),
                                  archs, best_arch)
    return arch, jnp.where(better, fitness[index], best_fitness)


def merge_front(archive: Arch, archive_fitness: jax.Array, archs: Arch,
                fitness: jax.Array) -> tuple[Arch, jax.Array]:
    """NSGA-II environmental selection of C members from an archive and a told batch.

    Args:
      archive: (C,) population; archive_fitness: (C, M), +inf rows are empty.
      archs: (B,) told population; fitness: (B, M).

    Returns:
      the new (C,) archive and (C, M) fitness, sorted by (rank, -crowding), so
      the Pareto front comes first. Exact repeats of an encoding are dropped.
    """
    capacity = archive_fitness.shape[0]
    pool = concat(archive, archs)
    pool_fitness = jnp.concatenate([archive_fitness, pareto.clean(fitness)])
    pool_fitness = jnp.where(repeats(pool)[:, None], jnp.inf, pool_fitness)
    keep = pareto.select(pool_fitness, capacity)
    return take(pool, keep), pool_fitness[keep]


def front_of(archive: Arch, archive_fitness: jax.Array) -> tuple[Arch, jax.Array]:
    """The archive with fitness +inf on every row off the Pareto front."""
    on_front = pareto.front_mask(archive_fitness) & jnp.all(jnp.isfinite(archive_fitness), -1)
    return archive, jnp.where(on_front[:, None], archive_fitness, jnp.inf)
