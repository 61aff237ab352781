"""Local search, White et al. 2020: climb to the best neighbour, restart when stuck.

Host-side: neighbourhoods come from ``space.neighbours`` (numpy), whose size
depends on the architecture, so ``ask`` and ``tell`` run in Python on numpy
state and do not fuse. Every ask still returns exactly ``batch_size`` archs.
"""

from __future__ import annotations

import flax.struct
import jax
import numpy as np

from jaxnas.arch._encoding import Arch
from jaxnas.spaces import Space
from jaxnas.strategies import _base
from jaxnas.strategies._base import Info, Strategy


@flax.struct.dataclass
class LocalParams:
    weights: np.ndarray  # (M,) scalarisation weights


@flax.struct.dataclass
class LocalState:
    params: LocalParams
    current: Arch  # the point of the climb (one arch)
    current_score: np.ndarray  # () float, +inf before the first start
    climbing: np.ndarray  # () bool; False: the next ask draws a random (re)start
    queue: Arch  # (Q,) neighbours of ``current`` not asked yet
    step_arch: Arch  # best neighbour told in this step (one arch)
    step_score: np.ndarray  # () float, its score
    asked_neighbour: np.ndarray  # (B,) bool: which archs of the last ask were neighbours
    memory: np.ndarray  # (S, D) int32 encodings of everything told
    memory_score: np.ndarray  # (S,) float scores of ``memory``
    best_arch: Arch  # one arch
    best_fitness: np.ndarray  # () or (M,)
    count: np.ndarray  # () int, archs told so far
    restarts: np.ndarray  # () int, random (re)starts so far


def _encode(archs: Arch) -> np.ndarray:
    """(P, N + N*N) int32 flat encodings, for exact-match lookups."""
    ops = np.asarray(archs.ops, np.int32)
    adj = np.asarray(archs.adj, np.int32).reshape(ops.shape[0], -1)
    return np.concatenate([ops, adj], 1)


def _lookup(keys: np.ndarray, memory: np.ndarray) -> np.ndarray:
    """(P,) index into ``memory`` of each key's exact match, -1 if absent."""
    if not len(memory) or not len(keys):
        return np.full(len(keys), -1)
    equal = np.all(keys[:, None, :] == memory[None, :, :], -1)
    return np.where(equal.any(1), equal.argmax(1), -1)


def _rows(archs: Arch, index) -> Arch:
    return Arch(adj=np.asarray(archs.adj)[index], ops=np.asarray(archs.ops)[index])


def local_search(space: Space, *, batch_size: int = 8, objectives: int = 1,
                 weights=None) -> Strategy:
    """Best-improvement local search with random restarts (host-side, not fusable).

    A climb starts at the best of one ask of random samples. Each step asks the
    whole neighbourhood of the current arch (``space.neighbours``), in batches
    of ``batch_size`` padded with random samples; when every neighbour is told
    the climb moves to the best one if it beats the current arch, otherwise the
    current arch is a local optimum and the next ask is a random restart.
    Neighbours told before (in any climb) are not asked again: their
    remembered fitness is used instead. M > 1 objectives are scalarised with
    ``params.weights``.

    Args:
      space: the search space.
      batch_size: B, archs per ask.
      objectives: M, static.
      weights: (M,) default scalarisation weights (default 1/M each).
    """
    weights = np.asarray(_base.check_config("local", batch_size, objectives, weights))
    sample = jax.jit(space.sample, static_argnums=1)
    width = space.max_nodes + space.max_nodes ** 2

    def score(fitness, params):
        return np.asarray(_base.score(np.asarray(fitness, np.float32), params.weights))

    def init(key: jax.Array, params: LocalParams | None = None) -> LocalState:
        params = default_params if params is None else params
        first = jax.device_get(space.sample_one(key))
        n = space.max_nodes
        empty = Arch(adj=np.zeros((0, n, n), np.int8), ops=np.zeros((0, n), np.int32))
        fitness_shape = () if objectives == 1 else (objectives,)
        return LocalState(
            params=params, current=first, current_score=np.float32(np.inf),
            climbing=np.bool_(False), queue=empty, step_arch=first,
            step_score=np.float32(np.inf), asked_neighbour=np.zeros(batch_size, bool),
            memory=np.zeros((0, width), np.int32), memory_score=np.zeros(0, np.float32),
            best_arch=first, best_fitness=np.full(fitness_shape, np.inf, np.float32),
            count=np.int64(0), restarts=np.int64(0))

    def ask(key: jax.Array, state: LocalState) -> tuple[Arch, LocalState]:
        fill = jax.device_get(sample(key, batch_size))
        if not state.climbing:
            return fill, state.replace(asked_neighbour=np.zeros(batch_size, bool))
        taken = min(batch_size, len(state.queue))
        archs = Arch(adj=np.concatenate([np.asarray(state.queue.adj)[:taken],
                                         np.asarray(fill.adj)[taken:]]),
                     ops=np.concatenate([np.asarray(state.queue.ops)[:taken],
                                         np.asarray(fill.ops)[taken:]]))
        mask = np.arange(batch_size) < taken
        return archs, state.replace(queue=_rows(state.queue, slice(taken, None)),
                                    asked_neighbour=mask)

    def start_step(state: LocalState, arch: Arch, arch_score) -> LocalState:
        """Makes ``arch`` the current point; queues its neighbours not told before."""
        neighbours = space.neighbours(arch)
        known = _lookup(_encode(neighbours), state.memory)
        fresh = known < 0
        step_arch, step_score = arch, np.float32(np.inf)
        if (~fresh).any():
            scores = state.memory_score[known[~fresh]]
            step_arch = _rows(neighbours, np.flatnonzero(~fresh)[np.argmin(scores)])
            step_score = np.float32(scores.min())
        state = state.replace(current=arch, current_score=np.float32(arch_score),
                              climbing=np.bool_(True), queue=_rows(neighbours, fresh),
                              step_arch=step_arch, step_score=step_score)
        if not fresh.any():
            return finish_step(state)
        return state

    def finish_step(state: LocalState) -> LocalState:
        """All neighbours known: move if one improves, else stop the climb."""
        if state.step_score < state.current_score:
            return start_step(state, state.step_arch, state.step_score)
        return state.replace(climbing=np.bool_(False))

    def tell(key: jax.Array, state: LocalState, archs: Arch,
             fitness: jax.Array) -> tuple[LocalState, dict]:
        del key
        fitness = np.asarray(_base.check_fitness("local", fitness, batch_size, objectives))
        archs = jax.device_get(archs)
        scores = score(fitness, state.params)
        arch, best = _base.improve(state.best_arch, state.best_fitness, archs, fitness,
                                   state.params.weights)
        keys = _encode(archs)
        new = _lookup(keys, state.memory) < 0
        state = state.replace(
            best_arch=jax.device_get(arch), best_fitness=np.asarray(best),
            count=state.count + batch_size,
            memory=np.concatenate([state.memory, keys[new]]),
            memory_score=np.concatenate([state.memory_score, scores[new]]))
        if not state.climbing:
            index = int(np.argmin(scores))
            state = start_step(state.replace(restarts=state.restarts + 1),
                               _rows(archs, index), scores[index])
        else:
            neighbour = np.flatnonzero(state.asked_neighbour)
            if len(neighbour):
                index = neighbour[np.argmin(scores[neighbour])]
                if scores[index] < state.step_score:
                    state = state.replace(step_arch=_rows(archs, index),
                                          step_score=np.float32(scores[index]))
            if not len(state.queue):
                state = finish_step(state)
        return state, {"count": state.count, "restarts": state.restarts,
                       "current_score": state.current_score}

    def best(state: LocalState) -> tuple[Arch, np.ndarray]:
        return state.best_arch, state.best_fitness

    default_params = LocalParams(weights=weights)
    info = Info("local", batch_size, objectives, jittable=False, multi_fidelity=False,
                vector_fitness=False)
    def lineage(state: LocalState) -> _base.Lineage:
        """The asked neighbours' parent is the point of the climb."""
        parent = jax.tree_util.tree_map(
            lambda leaf: np.broadcast_to(np.asarray(leaf), (batch_size,) + np.shape(leaf)),
            state.current)
        return _base.Lineage(parent=parent, has_parent=state.asked_neighbour)

    return Strategy(init, ask, tell, best, None, default_params, space, info, lineage)
