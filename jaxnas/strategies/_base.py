"""The strategy interface and the bookkeeping every strategy shares.

A strategy is a ``Strategy`` named tuple of pure functions closed over its
space and static configuration (shapes); the numbers a user sweeps live in a
``Params`` pytree stored in the state, so changing them never recompiles.
``make_strategy`` adds what every algorithm repeats (checks, NaN as +inf, the
best so far, the count of told archs, ``best`` and ``Info``) to an algorithm's
own ``init``, ``ask`` and ``tell``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from jaxnas.arch import Arch
from jaxnas.spaces import Space
from jaxnas.strategies import pareto
from jaxnas.strategies._population import broadcast, concat, repeats, take

State = Any
Params = Any


def _by_keyword(cls, fields: dict) -> dict:
    """The fields of a keyword-only constructor, the required ones checked."""
    missing = [name for name in cls._fields
               if name not in fields and name not in cls._field_defaults]
    if missing:
        raise TypeError(f"{cls.__name__} needs {', '.join(missing)}")
    return fields


class _InfoFields(NamedTuple):
    name: str
    batch_size: int
    objectives: int = 1
    jittable: bool = True
    multi_fidelity: bool = False
    vector_fitness: bool = False
    max_asks: int | None = None


class Info(_InfoFields):
    """Static metadata a driver reads before it runs a strategy (keyword arguments only).

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

    __slots__ = ()

    def __new__(cls, **fields):
        return super().__new__(cls, **_by_keyword(cls, fields))

    def __getnewargs_ex__(self):  # copy and pickle by keyword
        return (), self._asdict()


class _StrategyFields(NamedTuple):
    init: Callable[..., State]
    ask: Callable[[jax.Array, State], tuple[Arch, State]]
    tell: Callable[[jax.Array, State, Arch, jax.Array], tuple[State, dict]]
    best: Callable[[State], tuple[Arch, jax.Array]]
    space: Space
    info: Info
    default_params: Params = None
    fidelity: Callable[[State], jax.Array] | None = None
    lineage: Callable[[State], Lineage] | None = None
    fresh: Callable[[State], jax.Array] | None = None
    hyperparameters: Callable[[State], jax.Array] | None = None


class Strategy(_StrategyFields):
    """A search strategy: pure functions over a pytree state (keyword arguments only).

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
      space: the search space.
      info: static metadata (``Info``).
      default_params: the ``Params`` pytree of traced, tunable numbers.
      fidelity: None for single-fidelity strategies; otherwise
        ``fidelity(state) -> int32 scalar``: the number of training steps at
        which the archs returned by the next ``ask`` must be evaluated (``ask``
        leaves it unchanged: read it before or after the ask). A
        multi-fidelity strategy asks again only for archs it asked before at a
        lower fidelity (the survivors of a rung), so a driver that keeps each
        trained candidate keyed by canonical hash continues it from its stored
        step count up to ``fidelity`` instead of training from scratch.
      lineage: None for strategies whose members have no parents; otherwise
        ``lineage(state) -> Lineage``: where each member of the ask that returned
        ``state`` came from, read from that state (jittable). A driver that keeps
        trained weights by canonical hash starts a child from its parent's
        (``SearchConfig.inherit``).
      fresh: None when every ask may return archs not asked before; otherwise
        ``fresh(state) -> bool scalar``: whether the next ``ask`` may (a
        multi-fidelity strategy's first rung of a bracket; its later rungs must
        ask the survivors again). ``seeded`` puts given archs only into such asks.
      hyperparameters: None unless the strategy was built with a ``HyperSpace``
        (a joint search); then ``hyperparameters(state) -> (B, H) float32``: the
        unit coordinates of the training hyper-parameters of each member of the ask
        that returned ``state`` (``HyperSpace.values`` maps them to numbers). ``tell``
        learns the told archs at these coordinates.
    """

    __slots__ = ()

    def __new__(cls, **fields):
        return super().__new__(cls, **_by_keyword(cls, fields))

    def __getnewargs_ex__(self):  # copy and pickle by keyword
        return (), self._asdict()


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


def initial_best(first: Arch, objectives: int,
                 archive_size: int | None = None) -> tuple[Arch, jax.Array]:
    """The ``best_arch`` and +inf ``best_fitness`` a state starts with.

    ``first`` is any one arch of the space; with an ``archive_size`` C (a
    vector-fitness strategy with M > 1 objectives) it is a Pareto archive of C
    rows and (C, M) fitness.
    """
    if archive_size is None:
        return first, initial_fitness(objectives)
    return (broadcast(first, archive_size),
            jnp.full((archive_size, objectives), jnp.inf, jnp.float32))


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


def make_strategy(name: str, space: Space, *, batch_size: int, init: Callable,
                  ask: Callable, tell: Callable, default_params: Params = None,
                  objectives: int = 1, vector_fitness: bool = False, jittable: bool = True,
                  keep_best: Callable | None = None, fidelity: Callable | None = None,
                  lineage: Callable | None = None, fresh: Callable | None = None,
                  max_asks: int | None = None,
                  hyperparameters: Callable | None = None) -> Strategy:
    """A ``Strategy`` from an algorithm's own ``init``, ``ask`` and ``tell``.

    The algorithm's state has the fields ``params``, ``best_arch`` and
    ``best_fitness`` (start them with ``initial_best``) and ``count``; this
    adds what every strategy does with them:

    * ``init(key, params=None)`` calls the own ``init(key, params)`` with
      ``default_params`` in place of None;
    * ``tell`` checks the fitness shape and makes it float32, keeps the best so
      far (a non-finite fitness counts as +inf: ``improve``; a vector-fitness
      strategy with M > 1 keeps a Pareto archive: ``merge_front``), then calls the own
      ``tell(key, state, archs, fitness) -> (state, metrics)``, adds ``batch_size``
      to ``count`` and puts the count first in the metrics;
    * ``best`` returns the incumbent (or the archive's front), and ``info`` is
      built from the arguments.

    Args:
      name: the strategy's name, used in error messages and ``Info``.
      space: the search space.
      batch_size, objectives, vector_fitness, jittable: as in ``Info``.
      init, ask, tell: the algorithm's own functions (``ask`` as in ``Strategy``).
      default_params: the traced, tunable numbers; with M > 1 objectives a
        scalarising strategy (``vector_fitness`` False) keeps its (M,) weights in
        ``params.weights``.
      keep_best: ``keep_best(state, archs, fitness) -> state`` in place of the
        rule above (multi-fidelity strategies prefer the highest fidelity).
      fidelity, lineage, fresh, hyperparameters: as in ``Strategy``; max_asks: as in
        ``Info``.
    """
    check_config(name, batch_size, objectives, None)
    front = vector_fitness and objectives > 1
    single = jnp.ones((1,), jnp.float32)

    def track(state, archs: Arch, fitness: jax.Array):
        if front:
            arch, value = merge_front(state.best_arch, state.best_fitness, archs, fitness)
        else:
            weights = state.params.weights if objectives > 1 else single
            arch, value = improve(state.best_arch, state.best_fitness, archs, fitness, weights)
        if not jittable:
            arch, value = jax.device_get((arch, value))
        return state.replace(best_arch=arch, best_fitness=value)

    def init_with_defaults(key: jax.Array, params: Params = None) -> State:
        return init(key, default_params if params is None else params)

    def tell_and_track(key: jax.Array, state: State, archs: Arch,
                       fitness: jax.Array) -> tuple[State, dict]:
        fitness = check_fitness(name, fitness, batch_size, objectives)
        state = (keep_best or track)(state, archs, fitness)
        state, metrics = tell(key, state, archs, fitness)
        state = state.replace(count=state.count + batch_size)
        return state, {"count": state.count, **metrics}

    def best(state: State) -> tuple[Arch, jax.Array]:
        if front:
            return front_of(state.best_arch, state.best_fitness)
        return state.best_arch, state.best_fitness

    info = Info(name=name, batch_size=batch_size, objectives=objectives, jittable=jittable,
                multi_fidelity=fidelity is not None, vector_fitness=vector_fitness,
                max_asks=max_asks)
    return Strategy(init=init_with_defaults, ask=ask, tell=tell_and_track, best=best,
                    space=space, info=info, default_params=default_params, fidelity=fidelity,
                    lineage=lineage, fresh=fresh, hyperparameters=hyperparameters)
