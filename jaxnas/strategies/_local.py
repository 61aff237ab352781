"""Local search, White et al. 2020: climb to the best neighbour, restart when stuck.

Host-side: neighbourhoods come from ``space.neighbours`` (numpy), whose size
depends on the architecture, so ``ask`` and ``tell`` run in Python on numpy
state and do not fuse. Every ask still returns exactly ``batch_size`` archs.
"""

from __future__ import annotations

import flax.struct
import jax
import numpy as np

from jaxnas.arch import Arch
from jaxnas.spaces import Space
from jaxnas.strategies._base import Lineage, Strategy, check_config, make_strategy, score


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


def start_step(space: Space, state: LocalState, arch: Arch, arch_score) -> LocalState:
    """Makes ``arch`` the point of the climb and queues its neighbours not told before.

    The best remembered score among the neighbours told before starts the
    step's best; if every neighbour was told before, the step ends at once
    (``finish_step``).
    """
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
        return finish_step(space, state)
    return state


def finish_step(space: Space, state: LocalState) -> LocalState:
    """All neighbours known: move to the best if it improves, else end the climb."""
    if state.step_score < state.current_score:
        return start_step(space, state, state.step_arch, state.step_score)
    return state.replace(climbing=np.bool_(False))


def next_batch(queue: Arch, fill: Arch) -> tuple[Arch, Arch, np.ndarray]:
    """The next ask of a climb: (archs, the queue left, (B,) bool rows from the queue).

    The first rows are the queue's head, the others are taken from ``fill``
    (random samples, B rows).
    """
    batch_size = len(fill.ops)
    taken = min(batch_size, len(queue.ops))
    archs = Arch(adj=np.concatenate([np.asarray(queue.adj)[:taken],
                                     np.asarray(fill.adj)[taken:]]),
                 ops=np.concatenate([np.asarray(queue.ops)[:taken],
                                     np.asarray(fill.ops)[taken:]]))
    return archs, _rows(queue, slice(taken, None)), np.arange(batch_size) < taken


def learn(space: Space, state: LocalState, archs: Arch, scores: np.ndarray) -> LocalState:
    """Remembers told scores and moves the climb: a random (re)start from the best of a
    batch when not climbing, else the step's best neighbour, ending the step when the
    queue is empty."""
    keys = _encode(archs)
    new = _lookup(keys, state.memory) < 0
    state = state.replace(memory=np.concatenate([state.memory, keys[new]]),
                          memory_score=np.concatenate([state.memory_score, scores[new]]))
    if not state.climbing:
        index = int(np.argmin(scores))
        return start_step(space, state.replace(restarts=state.restarts + 1),
                          _rows(archs, index), scores[index])
    neighbour = np.flatnonzero(state.asked_neighbour)
    if len(neighbour):
        index = neighbour[np.argmin(scores[neighbour])]
        if scores[index] < state.step_score:
            state = state.replace(step_arch=_rows(archs, index),
                                  step_score=np.float32(scores[index]))
    if not len(state.queue):
        return finish_step(space, state)
    return state


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
    weights = np.asarray(check_config("local", batch_size, objectives, weights))
    sample = jax.jit(space.sample, static_argnums=1)
    n = space.max_nodes

    def init(key: jax.Array, params: LocalParams) -> LocalState:
        first = jax.device_get(space.sample_one(key))
        empty = Arch(adj=np.zeros((0, n, n), np.int8), ops=np.zeros((0, n), np.int32))
        return LocalState(
            params=params, current=first, current_score=np.float32(np.inf),
            climbing=np.bool_(False), queue=empty, step_arch=first,
            step_score=np.float32(np.inf), asked_neighbour=np.zeros(batch_size, bool),
            memory=np.zeros((0, n + n * n), np.int32), memory_score=np.zeros(0, np.float32),
            best_arch=first, best_fitness=np.full(() if objectives == 1 else (objectives,),
                                                  np.inf, np.float32),
            count=np.int64(0), restarts=np.int64(0))

    def ask(key: jax.Array, state: LocalState) -> tuple[Arch, LocalState]:
        fill = jax.device_get(sample(key, batch_size))
        if not state.climbing:
            return fill, state.replace(asked_neighbour=np.zeros(batch_size, bool))
        archs, queue, asked = next_batch(state.queue, fill)
        return archs, state.replace(queue=queue, asked_neighbour=asked)

    def tell(key, state: LocalState, archs: Arch, fitness: jax.Array):
        fitness = np.asarray(fitness, np.float32)
        scores = np.asarray(score(fitness, state.params.weights))
        state = learn(space, state, jax.device_get(archs), scores)
        return state, {"restarts": state.restarts, "current_score": state.current_score}

    def lineage(state: LocalState) -> Lineage:
        """The asked neighbours' parent is the point of the climb."""
        parent = jax.tree_util.tree_map(
            lambda leaf: np.broadcast_to(np.asarray(leaf), (batch_size,) + np.shape(leaf)),
            state.current)
        return Lineage(parent=parent, has_parent=state.asked_neighbour)

    return make_strategy("local", space, batch_size=batch_size, objectives=objectives,
                         init=init, ask=ask, tell=tell,
                         default_params=LocalParams(weights=weights), jittable=False,
                         lineage=lineage)
