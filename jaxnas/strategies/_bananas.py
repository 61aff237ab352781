"""BANANAS (White et al. 2021): Bayesian optimisation with a neural ensemble predictor, jitted.

Encoding: the adjacency + one-hot ops encoding (every upper-triangular edge
bit, then a one-hot over ``num_ops + 1`` classes, padding included, per inner
node), not BANANAS's path encoding: it has the same fixed width for every
space, whereas the number of input -> output paths grows exponentially with the
cell size. In ``nasbench201`` the edge bits are constant and the features are
the 6 edges' one-hot ops.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnas.arch._encoding import PAD, Arch
from jaxnas.spaces import Space
from jaxnas.strategies import _base
from jaxnas.strategies._base import Info, Strategy

ACQUISITIONS = ("its", "ucb")


def encode(arch: Arch, num_ops: int) -> jax.Array:
    """(F,) float32 features of one arch: N(N-1)/2 edge bits, then (N-2)(K+1) one-hots."""
    n = arch.ops.shape[-1]
    rows, cols = np.triu_indices(n, 1)
    edges = arch.adj[rows, cols].astype(jnp.float32)
    inner = arch.ops[1:-1]
    ops = jax.nn.one_hot(jnp.where(inner == PAD, num_ops, inner), num_ops + 1)
    return jnp.concatenate([edges, ops.reshape(-1)])


def _init_ensemble(key: jax.Array, sizes: tuple[int, ...], members: int) -> list:
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


def _apply_mlp(layers, features: jax.Array) -> jax.Array:
    """(P, F) features -> (P,) predictions."""
    hidden = features
    for weight, bias in layers[:-1]:
        hidden = jax.nn.relu(hidden @ weight + bias[None, :])
    weight, bias = layers[-1]
    return (hidden @ weight + bias[None, :])[:, 0]


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
    lineage: _base.Lineage  # the parents of the last ask's mutants


def bananas(space: Space, *, batch_size: int = 10, capacity: int | None = None,
            ensemble_size: int = 5, hidden: tuple[int, ...] = (32, 32), train_steps: int = 200,
            initial_samples: int = 10, num_parents: int = 10, mutants_per_parent: int = 10,
            random_candidates: int | None = None, acquisition: str = "its",
            learning_rate: float = 0.01, exploration: float = 1.0, objectives: int = 1,
            weights=None) -> Strategy:
    """BANANAS: an ensemble of MLPs predicts fitness; the best-acquired candidates are asked.

    ``tell`` stores the told archs in a buffer of ``capacity`` rows (when full,
    the worst are overwritten) and retrains the ensemble from fresh random
    initialisations: ``ensemble_size`` MLPs trained together under ``vmap`` by
    full-batch Adam on standardised scores. ``ask`` returns random samples until
    ``initial_samples`` archs were told; then it builds a candidate pool by
    mutating each of the ``num_parents`` best archs ``mutants_per_parent``
    times plus ``random_candidates`` random samples, drops archs already told,
    and returns the ``batch_size`` distinct candidates of lowest acquisition:
    independent Thompson sampling (``"its"``: one draw from N(mean, std) of the
    ensemble per candidate) or ``"ucb"`` (mean - exploration * std).

    The ensemble members see the same data and differ in their initialisation.

    Args:
      space: the search space.
      batch_size: B, static; the other sizes are static too.
      capacity: buffer rows, default max(256, 2 * batch_size).
      random_candidates: default max(20, batch_size), so the pool always holds B.
      learning_rate, exploration: defaults of the traced params.
      objectives: M; M > 1 fitness is scalarised with ``params.weights``.
      weights: (M,) default weights (1/M each).
    """
    weights = _base.check_config("bananas", batch_size, objectives, weights)
    capacity = max(256, 2 * batch_size) if capacity is None else capacity
    random_candidates = max(20, batch_size) if random_candidates is None else random_candidates
    if acquisition not in ACQUISITIONS:
        raise ValueError(f"bananas: acquisition must be one of {ACQUISITIONS}; got "
                         f"{acquisition!r}")
    if capacity < batch_size or num_parents > capacity:
        raise ValueError(f"bananas: capacity ({capacity}) must hold one batch ({batch_size}) "
                         f"and the {num_parents} parents")
    pool_size = num_parents * mutants_per_parent + random_candidates
    if pool_size < batch_size:
        raise ValueError(f"bananas: the candidate pool ({pool_size}) is smaller than "
                         f"batch_size ({batch_size})")
    n = space.max_nodes
    width = n * (n - 1) // 2 + (n - 2) * (space.num_ops + 1)
    sizes = (width, *hidden, 1)

    def features(archs: Arch) -> jax.Array:
        return jax.vmap(encode, in_axes=(0, None))(archs, space.num_ops)

    def fit(layers, x: jax.Array, y: jax.Array, mask: jax.Array, learning_rate: jax.Array):
        """Trains one MLP from ``layers``; returns the trained layers and the last loss."""
        optimiser = optax.adam(learning_rate)

        def loss(layers):
            error = jnp.where(mask, _apply_mlp(layers, x) - y, 0.0)
            return jnp.sum(error ** 2) / jnp.maximum(mask.sum(), 1)

        def step(carry, _):
            layers, opt_state = carry
            value, grads = jax.value_and_grad(loss)(layers)
            updates, opt_state = optimiser.update(grads, opt_state, layers)
            return (optax.apply_updates(layers, updates), opt_state), value

        (layers, _), losses = jax.lax.scan(step, (layers, optimiser.init(layers)), None,
                                           length=train_steps)
        return layers, losses[-1]

    def predict(ensemble, archs: Arch) -> tuple[jax.Array, jax.Array]:
        """(P,) ensemble mean and standard deviation of the standardised score."""
        x = features(archs)
        predictions = jax.vmap(_apply_mlp, in_axes=(0, None))(ensemble, x)
        return predictions.mean(0), predictions.std(0)

    def init(key: jax.Array, params: BananasParams | None = None) -> BananasState:
        params = default_params if params is None else params
        k_first, k_ensemble = jax.random.split(key)
        first = space.sample_one(k_first)
        ensemble = _init_ensemble(k_ensemble, sizes, ensemble_size)
        return BananasState(
            params=params, archs=_base.broadcast(first, capacity),
            scores=jnp.full((capacity,), jnp.inf, jnp.float32),
            filled=jnp.zeros((capacity,), bool), ensemble=ensemble, best_arch=first,
            best_fitness=_base.initial_fitness(objectives), count=jnp.int32(0),
            lineage=_base.orphans(first, batch_size))

    def ask(key: jax.Array, state: BananasState) -> tuple[Arch, BananasState]:
        k_random, k_mutate, k_acquire = jax.random.split(key, 3)
        # one sampling call site for both uses: each one costs compile time
        randoms = space.sample(k_random, batch_size + random_candidates)
        random_archs = _base.take(randoms, jnp.arange(batch_size))
        _, parents = jax.lax.top_k(-jnp.where(state.filled, state.scores, jnp.inf),
                                   num_parents)
        # one flat vmap over (parent, mutant) pairs compiles much faster than a nested one
        parent_of = parents[jnp.arange(num_parents * mutants_per_parent) // mutants_per_parent]
        mutants = jax.vmap(space.mutate)(jax.random.split(k_mutate, parent_of.shape[0]),
                                         _base.take(state.archs, parent_of))
        extra = _base.take(randoms, batch_size + jnp.arange(random_candidates))
        pool = _base.concat(mutants, extra)
        mean, std = predict(state.ensemble, pool)
        if acquisition == "its":
            value = mean + std * jax.random.normal(k_acquire, mean.shape)
        else:
            value = mean - state.params.exploration * std
        told = jnp.any(_base.same(pool, state.archs) & state.filled[None, :], 1)
        index = _base.top_unique(-jnp.where(told, jnp.inf, value), pool, batch_size)
        warm = jnp.broadcast_to(state.count >= initial_samples, (batch_size,))
        archs = _base.where(warm, _base.take(pool, index), random_archs)
        mutant = index < parent_of.shape[0]
        parent = _base.take(state.archs, parent_of[jnp.where(mutant, index, 0)])
        return archs, state.replace(lineage=_base.Lineage(parent, warm & mutant))

    def tell(key: jax.Array, state: BananasState, archs: Arch,
             fitness: jax.Array) -> tuple[BananasState, dict]:
        fitness = _base.check_fitness("bananas", fitness, batch_size, objectives)
        params = state.params
        scores = _base.score(fitness, params.weights)
        # Empty slots first, then the worst scores; an infinite score still beats an empty slot.
        priority = jnp.where(state.filled, jnp.minimum(state.scores, 3e38), jnp.inf)
        _, slots = jax.lax.top_k(priority, batch_size)
        buffer = jax.tree_util.tree_map(lambda old, new: old.at[slots].set(new),
                                        state.archs, archs)
        stored = state.scores.at[slots].set(scores)
        filled = state.filled.at[slots].set(True)

        finite = filled & jnp.isfinite(stored)
        worst = jnp.max(jnp.where(finite, stored, -jnp.inf))
        target = jnp.where(finite, stored, jnp.where(finite.any(), worst, 0.0))
        count = jnp.maximum(filled.sum(), 1)
        mean = jnp.sum(jnp.where(filled, target, 0.0)) / count
        std = jnp.sqrt(jnp.sum(jnp.where(filled, (target - mean) ** 2, 0.0)) / count)
        target = (target - mean) / jnp.where(std > 0, std, 1.0)
        x = features(buffer)
        ensemble, losses = jax.vmap(fit, in_axes=(0, None, None, None, None))(
            _init_ensemble(key, sizes, ensemble_size), x, target, filled, params.learning_rate)

        best_arch, best_fitness = _base.improve(state.best_arch, state.best_fitness, archs,
                                                fitness, params.weights)
        state = state.replace(archs=buffer, scores=stored, filled=filled, ensemble=ensemble,
                              best_arch=best_arch, best_fitness=best_fitness,
                              count=state.count + batch_size)
        return state, {"count": state.count, "predictor_loss": losses.mean()}

    def best(state: BananasState) -> tuple[Arch, jax.Array]:
        return state.best_arch, state.best_fitness

    default_params = BananasParams(learning_rate=jnp.float32(learning_rate),
                                   exploration=jnp.float32(exploration), weights=weights)
    info = Info("bananas", batch_size, objectives, jittable=True, multi_fidelity=False,
                vector_fitness=False)
    return Strategy(init, ask, tell, best, None, default_params, space, info,
                    lineage=lambda state: state.lineage)
