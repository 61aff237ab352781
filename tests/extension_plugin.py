"""A space, a strategy and a dataset defined outside jaxnas (``extension_register``
registers them for the command line)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas import spaces
from jaxnas.arch import Arch
from jaxnas.strategies import Info, Strategy


def tiny_cells() -> spaces.Space:
    """Dense cells of at most two inner nodes over two ops."""
    return spaces.dag(("dense-relu", "dense-tanh"), max_nodes=4, name="tiny_cells")


class ClimbState(NamedTuple):
    best_arch: Arch  # one architecture
    best_fitness: jax.Array  # () float32, +inf before the first tell


def mutate_best(space: spaces.Space, *, batch_size: int, mutations: int = 1) -> Strategy:
    """Asks random archs until something is told, then ``mutations``-step mutants of the
    best so far."""

    def init(key, params=None):
        return ClimbState(space.sample_one(key), jnp.float32(jnp.inf))

    def mutant(key, arch):
        for step_key in jax.random.split(key, mutations):
            arch = space.mutate(step_key, arch)
        return arch

    def ask(key, state):
        k_sample, k_mutate = jax.random.split(key)
        fresh = space.sample(k_sample, batch_size)
        mutants = jax.vmap(mutant, (0, None))(jax.random.split(k_mutate, batch_size),
                                              state.best_arch)
        told = jnp.isfinite(state.best_fitness)
        archs = jax.tree_util.tree_map(lambda m, f: jnp.where(told, m, f), mutants, fresh)
        return archs, state

    def tell(key, state, archs, fitness):
        fitness = jnp.where(jnp.isfinite(fitness), fitness, jnp.inf)
        index = jnp.argmin(fitness)
        better = fitness[index] < state.best_fitness
        arch = jax.tree_util.tree_map(lambda new, old: jnp.where(better, new[index], old),
                                      archs, state.best_arch)
        return ClimbState(arch, jnp.where(better, fitness[index], state.best_fitness)), {}

    def best(state):
        return state.best_arch, state.best_fitness

    return Strategy(init=init, ask=ask, tell=tell, best=best, space=space,
                    info=Info(name="mutate_best", batch_size=batch_size))


def blobs() -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian blobs in 8 dimensions, 100 examples each."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (3, 8))
    y = np.repeat(np.arange(3), 100)
    return (centres[y] + rng.normal(0, 1, (300, 8))).astype(np.float32), y
