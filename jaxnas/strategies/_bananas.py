"""BANANAS (White et al. 2021): Bayesian optimisation with a neural ensemble predictor, jitted.

``tell`` stores the told archs in a buffer of ``capacity`` rows (when full, the
worst are overwritten) and retrains the ensemble from fresh random
initialisations: ``ensemble_size`` MLPs trained together under ``vmap`` by
full-batch Adam on standardised scores. The members see the same data and
differ in their initialisation. ``ask`` returns random samples until
``initial_samples`` archs were told; then it builds a candidate pool by
mutating each of the ``num_parents`` best archs ``mutants_per_parent`` times
plus ``random_candidates`` random samples, drops archs already told, and
returns the ``batch_size`` distinct candidates of lowest acquisition:
independent Thompson sampling (``"its"``: one draw from N(mean, std) of the
ensemble per candidate) or ``"ucb"`` (mean - exploration * std).

Encoding: the adjacency + one-hot ops encoding (every upper-triangular edge
bit, then a one-hot over ``num_ops + 1`` classes, padding included, per inner
node), not BANANAS's path encoding: it has the same fixed width for every
space, whereas the number of input -> output paths grows exponentially with the
cell size. In ``nasbench201`` the edge bits are constant and the features are
the 6 edges' one-hot ops. In a joint search the features go on with the training
hyper-parameters (``HyperSpace.features``), mutants may move them and random
candidates draw them.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnas.arch import PAD, Arch
from jaxnas.spaces import Space
from jaxnas.strategies._base import (
    Lineage,
    Strategy,
    check_config,
    initial_fitness,
    make_strategy,
    orphans,
    score,
)
from jaxnas.strategies._hyper import HyperSpace, JointSpace, identity
from jaxnas.strategies._population import broadcast, concat, same, set_rows, take, top_unique, where

ACQUISITIONS = ("its", "ucb")


def feature_width(max_nodes: int, num_ops: int) -> int:
    """F, the length of ``encode``'s features."""
    return max_nodes * (max_nodes - 1) // 2 + (max_nodes - 2) * (num_ops + 1)


def encode(arch: Arch, num_ops: int) -> jax.Array:
    """(F,) float32 features of one arch: N(N-1)/2 edge bits, then (N-2)(K+1) one-hots."""
    n = arch.ops.shape[-1]
    rows, cols = np.triu_indices(n, 1)
    edges = arch.adj[rows, cols].astype(jnp.float32)
    inner = arch.ops[1:-1]
    ops = jax.nn.one_hot(jnp.where(inner == PAD, num_ops, inner), num_ops + 1)
    return jnp.concatenate([edges, ops.reshape(-1)])


def population_features(space: Space, hyper: HyperSpace | None):
    """(F, features): the predictor's input width and the vmapped encoding of a
    population (of genome pairs (archs, units) with ``hyper``)."""
    width = feature_width(space.max_nodes, space.num_ops)
    if hyper is None:
        return width, jax.vmap(lambda arch: encode(arch, space.num_ops))
    return width + hyper.feature_width(), jax.vmap(lambda genome: jnp.concatenate(
        [encode(genome[0], space.num_ops), hyper.features(genome[1])]))


def init_ensemble(key: jax.Array, sizes: tuple[int, ...], members: int) -> list:
    """He-normal weights and zero biases of ``members`` MLPs, stacked on a leading axis.

    All weights come from one ``normal`` draw: every separate draw costs compile time.
    """
    shapes = list(zip(sizes[:-1], sizes[1:], strict=True))
    flat = jax.random.normal(key, (members, sum(a * b for a, b in shapes)))
    layers, offset = [], 0
    for fan_in, fan_out in shapes:
        weight = flat[:, offset:offset + fan_in * fan_out].reshape(members, fan_in, fan_out)
        layers.append((weight * jnp.sqrt(2.0 / fan_in), jnp.zeros((members, fan_out))))
        offset += fan_in * fan_out
    return layers


def apply_mlp(layers, features: jax.Array) -> jax.Array:
    """(P, F) features -> (P,) predictions of one MLP."""
    hidden = features
    for weight, bias in layers[:-1]:
        hidden = jax.nn.relu(hidden @ weight + bias[None, :])
    weight, bias = layers[-1]
    return (hidden @ weight + bias[None, :])[:, 0]


def fit_mlp(layers, x: jax.Array, y: jax.Array, mask: jax.Array, learning_rate: jax.Array,
            steps: int):
    """Trains one MLP from ``layers`` by full-batch Adam on the mean squared error of the
    rows where ``mask``; returns the trained layers and the last loss."""
    optimiser = optax.adam(learning_rate)

    def loss(layers):
        error = jnp.where(mask, apply_mlp(layers, x) - y, 0.0)
        return jnp.sum(error ** 2) / jnp.maximum(mask.sum(), 1)

    def step(carry, _):
        layers, opt_state = carry
        value, grads = jax.value_and_grad(loss)(layers)
        updates, opt_state = optimiser.update(grads, opt_state, layers)
        return (optax.apply_updates(layers, updates), opt_state), value

    (layers, _), losses = jax.lax.scan(step, (layers, optimiser.init(layers)), None,
                                       length=steps)
    return layers, losses[-1]


def predict(ensemble, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(P,) mean and standard deviation over the ensemble of its predictions for x (P, F)."""
    predictions = jax.vmap(apply_mlp, in_axes=(0, None))(ensemble, x)
    return predictions.mean(0), predictions.std(0)


def standardise(scores: jax.Array, filled: jax.Array) -> jax.Array:
    """(C,) training targets: the filled scores with mean 0 and standard deviation 1.

    A non-finite score gets the worst finite one (0 if there is none) first; a
    constant target is only centred.
    """
    finite = filled & jnp.isfinite(scores)
    worst = jnp.max(jnp.where(finite, scores, -jnp.inf))
    target = jnp.where(finite, scores, jnp.where(finite.any(), worst, 0.0))
    count = jnp.maximum(filled.sum(), 1)
    mean = jnp.sum(jnp.where(filled, target, 0.0)) / count
    std = jnp.sqrt(jnp.sum(jnp.where(filled, (target - mean) ** 2, 0.0)) / count)
    return (target - mean) / jnp.where(std > 0, std, 1.0)


def acquire(key: jax.Array, mean: jax.Array, std: jax.Array, acquisition: str,
            exploration: jax.Array) -> jax.Array:
    """(P,) acquisition values, lowest best: a draw from N(mean, std) (``"its"``, ``key``)
    or the lower confidence bound mean - exploration * std (``"ucb"``)."""
    if acquisition == "its":
        return mean + std * jax.random.normal(key, mean.shape)
    return mean - exploration * std


def slots_to_replace(scores: jax.Array, filled: jax.Array, k: int) -> jax.Array:
    """(k,) buffer rows a told batch goes to: empty rows first, then the rows of the
    worst scores (an infinite score after the empty rows)."""
    _, slots = jax.lax.top_k(jnp.where(filled, jnp.minimum(scores, 3e38), jnp.inf), k)
    return slots


@flax.struct.dataclass
class BananasParams:
    learning_rate: jax.Array  # () Adam step size of the predictor
    exploration: jax.Array  # () UCB's kappa (ignored by ITS)
    weights: jax.Array  # (M,) scalarisation weights


@flax.struct.dataclass
class BananasState:
    params: BananasParams
    archs: Arch  # (C,) evaluated archs
    scores: jax.Array  # (C,) their scores, +inf for non-finite fitness
    filled: jax.Array  # (C,) bool
    ensemble: list  # MLP layers stacked over E members: [(W (E, in, out), b (E, out)), ...]
    best_arch: Arch
    best_fitness: jax.Array  # () or (M,)
    count: jax.Array  # () int32
    lineage: Lineage  # the parents of the last ask's mutants
    units: jax.Array | None = None  # (C, H) units of ``archs`` (joint search only)
    hyper: jax.Array | None = None  # (B, H) units of the last ask (joint search only)


def genomes(state: BananasState):
    """The buffer as the strategy mutates it: archs, or (archs, units) pairs."""
    return state.archs if state.units is None else (state.archs, state.units)


def store(state: BananasState, archs: Arch, scores: jax.Array,
          units: jax.Array | None = None) -> BananasState:
    """The buffer with told archs (B,) (at ``units`` (B, H) in a joint search) and their
    scores (B,) in the rows of ``slots_to_replace``."""
    slots = slots_to_replace(state.scores, state.filled, scores.shape[0])
    if units is not None:
        state = state.replace(units=state.units.at[slots].set(units))
    return state.replace(archs=set_rows(state.archs, slots, archs),
                         scores=state.scores.at[slots].set(scores),
                         filled=state.filled.at[slots].set(True))


def candidate_pool(key: jax.Array, space: Space | JointSpace, state: BananasState,
                   num_parents: int, mutants_per_parent: int, extra) -> tuple[Arch, jax.Array]:
    """(pool, parent_of): ``mutants_per_parent`` mutants of each of the ``num_parents``
    best told archs (genome pairs with a ``JointSpace``), then the members of ``extra``;
    parent_of (num_parents * mutants_per_parent,) is each mutant's row in the buffer."""
    _, parents = jax.lax.top_k(-jnp.where(state.filled, state.scores, jnp.inf), num_parents)
    # one flat vmap over (parent, mutant) pairs compiles much faster than a nested one
    parent_of = parents[jnp.arange(num_parents * mutants_per_parent) // mutants_per_parent]
    mutants = jax.vmap(space.mutate)(jax.random.split(key, parent_of.shape[0]),
                                     take(genomes(state), parent_of))
    return concat(mutants, extra), parent_of


def bananas(space: Space, *, batch_size: int = 10, capacity: int | None = None,
            ensemble_size: int = 5, hidden: tuple[int, ...] = (32, 32), train_steps: int = 200,
            initial_samples: int = 10, num_parents: int = 10, mutants_per_parent: int = 10,
            random_candidates: int | None = None, acquisition: str = "its",
            learning_rate: float = 0.01, exploration: float = 1.0, objectives: int = 1,
            weights=None, hyperparameters: HyperSpace | None = None) -> Strategy:
    """BANANAS: an ensemble of MLPs predicts fitness; the best-acquired candidates are asked.

    Args:
      space: the search space.
      batch_size: B, static; the other sizes are static too.
      capacity: buffer rows, default max(256, 2 * batch_size).
      random_candidates: default max(20, batch_size), so the pool always holds B.
      learning_rate, exploration: defaults of the traced params.
      objectives: M; M > 1 fitness is scalarised with ``params.weights``.
      weights: (M,) default weights (1/M each).
      hyperparameters: a joint search: the predictor also sees the training numbers,
        which mutants may move and random candidates draw (``Strategy.hyperparameters``).
    """
    weights = check_config("bananas", batch_size, objectives, weights)
    joint = None if hyperparameters is None else JointSpace(space, hyperparameters)
    moves = space if joint is None else joint
    capacity = max(256, 2 * batch_size) if capacity is None else capacity
    random_candidates = max(20, batch_size) if random_candidates is None else random_candidates
    mutants = num_parents * mutants_per_parent
    _check(acquisition, capacity, batch_size, num_parents, mutants + random_candidates)
    width, features = population_features(space, None if joint is None else joint.hyper)
    sizes = (width, *hidden, 1)
    fit = jax.vmap(functools.partial(fit_mlp, steps=train_steps),
                   in_axes=(0, None, None, None, None))

    def init(key: jax.Array, params: BananasParams) -> BananasState:
        k_first, k_ensemble = jax.random.split(key)
        first = space.sample_one(k_first)
        return BananasState(
            params=params, archs=broadcast(first, capacity),
            scores=jnp.full((capacity,), jnp.inf, jnp.float32),
            filled=jnp.zeros((capacity,), bool),
            ensemble=init_ensemble(k_ensemble, sizes, ensemble_size), best_arch=first,
            best_fitness=initial_fitness(objectives), count=jnp.int32(0),
            lineage=orphans(first, batch_size),
            units=None if joint is None else jnp.zeros((capacity, joint.hyper.size)),
            hyper=None if joint is None else jnp.zeros((batch_size, joint.hyper.size)))

    def ask(key: jax.Array, state: BananasState) -> tuple[Arch, BananasState]:
        k_random, k_mutate, k_acquire = jax.random.split(key, 3)
        # one sampling call site for both uses: each one costs compile time
        randoms = moves.sample(k_random, batch_size + random_candidates)
        pool, parent_of = candidate_pool(
            k_mutate, moves, state, num_parents, mutants_per_parent,
            take(randoms, batch_size + jnp.arange(random_candidates)))
        mean, std = predict(state.ensemble, features(pool))
        value = acquire(k_acquire, mean, std, acquisition, state.params.exploration)
        told = jnp.any(same(identity(pool), identity(genomes(state))) & state.filled[None, :], 1)
        index = top_unique(-jnp.where(told, jnp.inf, value), identity(pool), batch_size)
        warm = jnp.broadcast_to(state.count >= initial_samples, (batch_size,))
        archs = where(warm, take(pool, index), take(randoms, jnp.arange(batch_size)))
        mutant = index < mutants
        parent = take(state.archs, parent_of[jnp.where(mutant, index, 0)])
        lineage = Lineage(parent, warm & mutant)
        if joint is None:
            return archs, state.replace(lineage=lineage)
        return archs[0], state.replace(lineage=lineage, hyper=archs[1])

    def tell(key: jax.Array, state: BananasState, archs: Arch, fitness: jax.Array):
        state = store(state, archs, score(fitness, state.params.weights), state.hyper)
        ensemble, losses = fit(init_ensemble(key, sizes, ensemble_size), features(genomes(state)),
                               standardise(state.scores, state.filled), state.filled,
                               state.params.learning_rate)
        return state.replace(ensemble=ensemble), {"predictor_loss": losses.mean()}

    default_params = BananasParams(learning_rate=jnp.float32(learning_rate),
                                   exploration=jnp.float32(exploration), weights=weights)
    return make_strategy("bananas", space, batch_size=batch_size, objectives=objectives,
                         init=init, ask=ask, tell=tell, default_params=default_params,
                         lineage=lambda state: state.lineage,
                         hyperparameters=None if joint is None else lambda state: state.hyper)


def _check(acquisition: str, capacity: int, batch_size: int, num_parents: int,
           pool_size: int) -> None:
    if acquisition not in ACQUISITIONS:
        raise ValueError(f"bananas: acquisition must be one of {ACQUISITIONS}; got "
                         f"{acquisition!r}")
    if capacity < batch_size or num_parents > capacity:
        raise ValueError(f"bananas: capacity ({capacity}) must hold one batch ({batch_size}) "
                         f"and the {num_parents} parents")
    if pool_size < batch_size:
        raise ValueError(f"bananas: the candidate pool ({pool_size}) is smaller than "
                         f"batch_size ({batch_size})")
