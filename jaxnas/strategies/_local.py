"""Local search, White et al. 2020: climb to the best neighbour, restart when stuck.

Host-side: neighbourhoods come from ``space.neighbours`` (numpy), whose size
depends on the architecture, so ``ask`` and ``tell`` run in Python on numpy
state and do not fuse. Every ask still returns exactly ``batch_size`` archs. In a
joint search a point of the climb is a genome pair (arch, units) and its
neighbours are the architecture's at the same training numbers and the numbers'
(``HyperSpace.neighbours``) with the same architecture.
"""

from __future__ import annotations

import flax.struct
import jax
import numpy as np

from jaxnas.arch import Arch
from jaxnas.spaces import Space
from jaxnas.strategies._base import Lineage, Strategy, check_config, make_strategy, score
from jaxnas.strategies._hyper import HyperSpace, JointSpace


@flax.struct.dataclass
class LocalParams:
    weights: np.ndarray  # (M,) scalarisation weights


@flax.struct.dataclass
class LocalState:
    """Archs below are genome pairs (archs, units) in a joint search."""

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
    hyper: np.ndarray | None = None  # (B, H) units of the last ask (joint search only)


def _encode(archs) -> np.ndarray:
    """(P, N + N*N (+ H)) int32 flat encodings, for exact-match lookups (a genome pair's
    units as their bits)."""
    units = None
    if not isinstance(archs, Arch):
        archs, units = archs
    ops = np.asarray(archs.ops, np.int32)
    adj = np.asarray(archs.adj, np.int32).reshape(ops.shape[0], ops.shape[1] ** 2)
    if units is None:
        return np.concatenate([ops, adj], 1)
    return np.concatenate([ops, adj, np.asarray(units, np.float32).view(np.int32)], 1)


def _lookup(keys: np.ndarray, memory: np.ndarray) -> np.ndarray:
    """(P,) index into ``memory`` of each key's exact match, -1 if absent."""
    if not len(memory) or not len(keys):
        return np.full(len(keys), -1)
    equal = np.all(keys[:, None, :] == memory[None, :, :], -1)
    return np.where(equal.any(1), equal.argmax(1), -1)


def _rows(archs, index):
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[index], archs)


def _count(archs) -> int:
    return len(np.asarray(jax.tree_util.tree_leaves(archs)[0]))


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
    batch_size = _count(fill)
    taken = min(batch_size, _count(queue))
    archs = jax.tree_util.tree_map(
        lambda head, rest: np.concatenate([np.asarray(head)[:taken], np.asarray(rest)[taken:]]),
        queue, fill)
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
    if not _count(state.queue):
        return finish_step(space, state)
    return state


def local_search(space: Space, *, batch_size: int = 8, objectives: int = 1,
                 weights=None, hyperparameters: HyperSpace | None = None) -> Strategy:
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
      hyperparameters: a joint search: climbs move the training numbers too
        (``Strategy.hyperparameters``).
    """
    weights = np.asarray(check_config("local", batch_size, objectives, weights))
    joint = None if hyperparameters is None else JointSpace(space, hyperparameters)
    moves = space if joint is None else joint
    sample = jax.jit(moves.sample, static_argnums=1)

    def init(key: jax.Array, params: LocalParams) -> LocalState:
        first = jax.device_get(moves.sample_one(key))
        empty = _rows(jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[None], first),
                      slice(0, 0))
        return LocalState(
            params=params, current=first, current_score=np.float32(np.inf),
            climbing=np.bool_(False), queue=empty, step_arch=first,
            step_score=np.float32(np.inf), asked_neighbour=np.zeros(batch_size, bool),
            memory=_encode(empty), memory_score=np.zeros(0, np.float32),
            best_arch=first if joint is None else first[0],
            best_fitness=np.full(() if objectives == 1 else (objectives,), np.inf, np.float32),
            count=np.int64(0), restarts=np.int64(0),
            hyper=None if joint is None else np.zeros((batch_size, joint.hyper.size),
                                                      np.float32))

    def ask(key: jax.Array, state: LocalState) -> tuple[Arch, LocalState]:
        fill = jax.device_get(sample(key, batch_size))
        if not state.climbing:
            archs, state = fill, state.replace(asked_neighbour=np.zeros(batch_size, bool))
        else:
            archs, queue, asked = next_batch(state.queue, fill)
            state = state.replace(queue=queue, asked_neighbour=asked)
        if joint is None:
            return archs, state
        return archs[0], state.replace(hyper=np.asarray(archs[1], np.float32))

    def tell(key, state: LocalState, archs: Arch, fitness: jax.Array):
        fitness = np.asarray(fitness, np.float32)
        scores = np.asarray(score(fitness, state.params.weights))
        told = jax.device_get(archs) if joint is None else (jax.device_get(archs), state.hyper)
        state = learn(moves, state, told, scores)
        return state, {"restarts": state.restarts, "current_score": state.current_score}

    def lineage(state: LocalState) -> Lineage:
        """The asked neighbours' parent is the point of the climb."""
        parent = jax.tree_util.tree_map(
            lambda leaf: np.broadcast_to(np.asarray(leaf), (batch_size,) + np.shape(leaf)),
            state.current if joint is None else state.current[0])
        return Lineage(parent=parent, has_parent=state.asked_neighbour)

    return make_strategy("local", space, batch_size=batch_size, objectives=objectives,
                         init=init, ask=ask, tell=tell,
                         default_params=LocalParams(weights=weights), jittable=False,
                         lineage=lineage,
                         hyperparameters=None if joint is None else lambda state: state.hyper)
