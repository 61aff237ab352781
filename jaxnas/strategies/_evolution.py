"""Regularised (aging) evolution, Real et al. 2019, batched; NSGA-II tournaments for M > 1.

The population is a FIFO of the last ``population_size`` told archs. The
first ``population_size`` archs asked are the initial population (random;
``seeded(evolution(...), archs)`` asks given archs in place of the first ones,
e.g. from ``top_scored``); afterwards each child is the winner of a tournament
of ``tournament_size`` members drawn without replacement, mutated ``mutations``
times by ``space.mutate``. With M > 1 objectives the tournament winner is the
member of lowest non-dominated rank, then largest crowding distance (NSGA-II),
and ``best`` is the Pareto front of everything told. In a joint search each member
also carries its training hyper-parameters, and a mutation moves the architecture or
one of them (``JointSpace``).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from jaxnas.arch import Arch
from jaxnas.spaces import Space
from jaxnas.strategies import pareto
from jaxnas.strategies._base import (
    Lineage,
    Strategy,
    check_config,
    initial_best,
    make_strategy,
    orphans,
    score,
)
from jaxnas.strategies._hyper import HyperSpace, JointSpace
from jaxnas.strategies._population import set_rows, take, where


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
    lineage: Lineage  # the tournament winners the last ask's children came from
    # Joint search only: (P, H) units of ``population`` and of ``initial``, (B, H) of the
    # last ask.
    units: jax.Array | None = None
    initial_units: jax.Array | None = None
    hyper: jax.Array | None = None


def tournament_order(fitness: jax.Array, filled: jax.Array) -> jax.Array:
    """(P,) key of each member in a tournament, lowest wins.

    fitness (P,) ranks by value (non-finite as +inf), (P, M) by NSGA-II's
    (rank, -crowding) among the filled members. Infinite keys are capped at 3e38
    so that a filled member with infinite fitness still beats an unfilled one (+inf).
    """
    if fitness.ndim == 2:
        order = pareto.sort_key(jnp.where(filled[:, None], fitness, jnp.inf))
    else:
        order = score(fitness, jnp.ones((1,), jnp.float32))
    return jnp.where(filled, jnp.minimum(order, 3e38), jnp.inf)


def tournament(key: jax.Array, order: jax.Array, filled: jax.Array, size: jax.Array) -> jax.Array:
    """() index of the winner among ``size`` filled members drawn without replacement.

    Args:
      key: PRNG key of the draw.
      order: (P,) tournament keys (``tournament_order``), lowest wins.
      filled: (P,) bool, the members that may be drawn.
      size: () int, at most the number of filled members.
    """
    draw = jnp.where(filled, jax.random.uniform(key, filled.shape), 2.0)
    drawn = jnp.argsort(jnp.argsort(draw)) < size
    return jnp.argmin(jnp.where(drawn, order, jnp.inf))


def mutate(key: jax.Array, space: Space | JointSpace, arch: Arch, moves: jax.Array) -> Arch:
    """``arch`` (or a genome pair of a ``JointSpace``) after max(moves, 1) successive
    ``space.mutate`` moves (traced ``moves``)."""

    def move(_, carry):
        key, arch = carry
        key, sub = jax.random.split(key)
        return key, space.mutate(sub, arch)

    _, arch = jax.lax.fori_loop(0, jnp.maximum(moves, 1), move, (key, arch))
    return arch


def genomes(state: EvolutionState, initial: bool = False):
    """The population (or the initial one) as the strategy mutates it: archs, or
    (archs, units) pairs in a joint search."""
    archs, units = ((state.initial, state.initial_units) if initial
                    else (state.population, state.units))
    return archs if units is None else (archs, units)


def offspring(key: jax.Array, space: Space | JointSpace, state: EvolutionState,
              order: jax.Array, filled: jax.Array, size: jax.Array):
    """(child, parent): the winner of a tournament of ``size`` members, mutated (genome
    pairs with a ``JointSpace``)."""
    k_draw, k_mutate = jax.random.split(key)
    parent = take(genomes(state), tournament(k_draw, order, filled, size))
    return mutate(k_mutate, space, parent, state.params.mutations), parent


def evolution(space: Space, *, population_size: int | None = None, batch_size: int = 5,
              tournament_size: int = 5, mutations: int = 1, objectives: int = 1,
              archive_size: int = 64, weights=None,
              hyperparameters: HyperSpace | None = None) -> Strategy:
    """Regularised evolution: tournament, mutate the winner, the oldest member dies.

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
      hyperparameters: a joint search: members carry training numbers too, drawn
        uniformly at first and moved by mutations (``Strategy.hyperparameters``).
    """
    check_config("evolution", batch_size, objectives, weights)
    joint = None if hyperparameters is None else JointSpace(space, hyperparameters)
    moves = space if joint is None else joint
    size = max(20, batch_size) if population_size is None else population_size
    if batch_size > size:
        raise ValueError(f"evolution: batch_size ({batch_size}) must not exceed "
                         f"population_size ({size})")
    if tournament_size < 1 or mutations < 1:
        raise ValueError("evolution: tournament_size and mutations must be at least 1; got "
                         f"{tournament_size} and {mutations}")
    fitness_shape = (size,) if objectives == 1 else (size, objectives)

    def init(key: jax.Array, params: EvolutionParams) -> EvolutionState:
        population, units = (space.sample(key, size), None) if joint is None else (
            joint.sample(key, size))
        first = take(population, 0)
        best_arch, best_fitness = initial_best(first, objectives,
                                               archive_size if objectives > 1 else None)
        return EvolutionState(
            params=params, population=population,
            fitness=jnp.full(fitness_shape, jnp.inf, jnp.float32), initial=population,
            head=jnp.int32(0), count=jnp.int32(0), best_arch=best_arch,
            best_fitness=best_fitness, lineage=orphans(first, batch_size), units=units,
            initial_units=units,
            hyper=None if joint is None else jnp.zeros((batch_size, joint.hyper.size)))

    def ask(key: jax.Array, state: EvolutionState) -> tuple[Arch, EvolutionState]:
        filled = jnp.arange(size) < jnp.minimum(state.count, size)
        order = tournament_order(state.fitness, filled)
        drawn = jnp.clip(state.params.tournament_size, 1, jnp.clip(state.count, 1, size))
        children, parents = jax.vmap(
            lambda key: offspring(key, moves, state, order, filled, drawn))(
                jax.random.split(key, batch_size))
        slots = state.count + jnp.arange(batch_size)
        initial = slots < size  # the first P asks return the initial population
        seeds = take(genomes(state, initial=True), jnp.minimum(slots, size - 1))
        asked = where(initial, seeds, children)
        if joint is None:
            return asked, state.replace(lineage=Lineage(parents, ~initial))
        return asked[0], state.replace(lineage=Lineage(parents[0], ~initial), hyper=asked[1])

    def tell(key, state: EvolutionState, archs: Arch, fitness: jax.Array):
        slots = (state.head + jnp.arange(batch_size)) % size
        if joint is not None:
            state = state.replace(units=state.units.at[slots].set(state.hyper))
        return state.replace(population=set_rows(state.population, slots, archs),
                             fitness=state.fitness.at[slots].set(pareto.clean(fitness)),
                             head=(state.head + batch_size) % size), {}

    default_params = EvolutionParams(tournament_size=jnp.int32(tournament_size),
                                     mutations=jnp.int32(mutations))
    return make_strategy("evolution", space, batch_size=batch_size, objectives=objectives,
                         init=init, ask=ask, tell=tell, default_params=default_params,
                         vector_fitness=True, lineage=lambda state: state.lineage,
                         hyperparameters=None if joint is None else lambda state: state.hyper)
