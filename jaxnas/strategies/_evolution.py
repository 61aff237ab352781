"""Regularised (aging) evolution, Real et al. 2019, batched; NSGA-II tournaments for M > 1."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from jaxnas.arch._encoding import Arch
from jaxnas.spaces import Space
from jaxnas.strategies import _base, pareto
from jaxnas.strategies._base import Info, Strategy


@flax.struct.dataclass
class EvolutionParams:
    tournament_size: jax.Array  # () int32, S members drawn without replacement
    mutations: jax.Array  # () int32, mutation moves applied to each child (at least 1)


@flax.struct.dataclass
class EvolutionState:
    params: EvolutionParams
    population: Arch  # (P,) ring buffer in telling order; the oldest sits at ``head``
    fitness: jax.Array  # (P,) or (P, M); +inf on slots not yet filled
    initial: Arch  # (P,) archs asked first, before any tournament
    head: jax.Array  # () int32, the next slot to overwrite
    count: jax.Array  # () int32, archs told so far
    best_arch: Arch  # one arch, or the (C,) Pareto archive when M > 1
    best_fitness: jax.Array  # (), or (C, M) when M > 1
    lineage: _base.Lineage  # the tournament winners the last ask's children came from


def evolution(space: Space, *, population_size: int | None = None, batch_size: int = 5,
              tournament_size: int = 5, mutations: int = 1, objectives: int = 1,
              archive_size: int = 64, weights=None) -> Strategy:
    """Regularised evolution: tournament, mutate the winner, the oldest member dies.

    The population is a FIFO of the last ``population_size`` told archs. The
    first ``population_size`` archs asked are the initial population (random;
    ``seeded(evolution(...), archs)`` asks given archs in place of the first
    ones, e.g. from ``top_scored``); afterwards each child is the winner of a
    tournament of ``tournament_size`` members drawn without replacement, mutated
    ``mutations`` times by ``space.mutate``. With M > 1 objectives the tournament
    winner is the member of lowest non-dominated rank, then largest crowding
    distance (NSGA-II), and ``best`` is the Pareto front of everything told.

    Args:
      space: the search space.
      population_size: P, static; default max(20, batch_size).
      batch_size: B <= P children per ask, static.
      tournament_size: default S (traced, ``params.tournament_size``).
      mutations: default moves per child (traced, ``params.mutations``).
      objectives: M, static.
      archive_size: C, Pareto archive capacity (M > 1 only).
      weights: accepted and checked so every strategy takes the same settings;
        Pareto ranking does not use them.
    """
    _base.check_config("evolution", batch_size, objectives, weights)
    if population_size is None:
        population_size = max(20, batch_size)
    if batch_size > population_size:
        raise ValueError(f"evolution: batch_size ({batch_size}) must not exceed "
                         f"population_size ({population_size})")
    if tournament_size < 1 or mutations < 1:
        raise ValueError("evolution: tournament_size and mutations must be at least 1; got "
                         f"{tournament_size} and {mutations}")
    vector = objectives > 1
    single = jnp.ones((1,), jnp.float32)
    fitness_shape = (population_size,) if not vector else (population_size, objectives)

    def init(key: jax.Array, params: EvolutionParams | None = None) -> EvolutionState:
        params = default_params if params is None else params
        population = space.sample(key, population_size)
        first = _base.take(population, 0)
        if vector:
            best_arch = _base.broadcast(first, archive_size)
            best_fitness = jnp.full((archive_size, objectives), jnp.inf, jnp.float32)
        else:
            best_arch, best_fitness = first, _base.initial_fitness(1)
        return EvolutionState(
            params=params, population=population,
            fitness=jnp.full(fitness_shape, jnp.inf, jnp.float32), initial=population,
            head=jnp.int32(0), count=jnp.int32(0), best_arch=best_arch,
            best_fitness=best_fitness, lineage=_base.orphans(first, batch_size))

    def ask(key: jax.Array, state: EvolutionState) -> tuple[Arch, EvolutionState]:
        filled = jnp.arange(population_size) < jnp.minimum(state.count, population_size)
        if vector:
            order = pareto.sort_key(jnp.where(filled[:, None], state.fitness, jnp.inf))
        else:
            order = _base.score(state.fitness, single)
        # Inside the tournament an infinite fitness must still beat "not drawn".
        order = jnp.where(filled, jnp.minimum(order, 3e38), jnp.inf)
        size = jnp.clip(state.params.tournament_size, 1,
                        jnp.clip(state.count, 1, population_size))

        def child(key, index):
            k_draw, k_mutate = jax.random.split(key)
            draw = jnp.where(filled, jax.random.uniform(k_draw, (population_size,)), 2.0)
            drawn = jnp.argsort(jnp.argsort(draw)) < size
            parent = _base.take(state.population, jnp.argmin(jnp.where(drawn, order, jnp.inf)))

            def mutate(_, carry):
                key, arch = carry
                key, sub = jax.random.split(key)
                return key, space.mutate(sub, arch)

            moves = jnp.maximum(state.params.mutations, 1)
            _, offspring = jax.lax.fori_loop(0, moves, mutate, (k_mutate, parent))
            slot = state.count + index
            seed = _base.take(state.initial, jnp.minimum(slot, population_size - 1))
            initial = slot < population_size
            return jax.tree_util.tree_map(
                lambda a, b: jnp.where(initial, a, b), seed, offspring), parent, ~initial

        children, parents, mutated = jax.vmap(child)(jax.random.split(key, batch_size),
                                                     jnp.arange(batch_size))
        return children, state.replace(lineage=_base.Lineage(parents, mutated))

    def tell(key: jax.Array, state: EvolutionState, archs: Arch,
             fitness: jax.Array) -> tuple[EvolutionState, dict]:
        del key
        fitness = _base.check_fitness("evolution", fitness, batch_size, objectives)
        slots = (state.head + jnp.arange(batch_size)) % population_size
        population = jax.tree_util.tree_map(lambda old, new: old.at[slots].set(new),
                                            state.population, archs)
        stored = state.fitness.at[slots].set(pareto.clean(fitness))
        if vector:
            best_arch, best_fitness = _base.merge_front(state.best_arch, state.best_fitness,
                                                        archs, fitness)
        else:
            best_arch, best_fitness = _base.improve(state.best_arch, state.best_fitness, archs,
                                                    fitness, single)
        state = state.replace(population=population, fitness=stored,
                              head=(state.head + batch_size) % population_size,
                              count=state.count + batch_size, best_arch=best_arch,
                              best_fitness=best_fitness)
        return state, {"count": state.count}

    def best(state: EvolutionState) -> tuple[Arch, jax.Array]:
        if vector:
            return _base.front_of(state.best_arch, state.best_fitness)
        return state.best_arch, state.best_fitness

    default_params = EvolutionParams(tournament_size=jnp.int32(tournament_size),
                                     mutations=jnp.int32(mutations))
    info = Info("evolution", batch_size, objectives, jittable=True, multi_fidelity=False,
                vector_fitness=True)
    return Strategy(init, ask, tell, best, None, default_params, space, info,
                    lineage=lambda state: state.lineage)
