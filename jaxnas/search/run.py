"""One search's mutable state and its generation step: ask, train the unseen, tell.

Determinism: an architecture's initial weights come from the run's seed and its
canonical hash, and every candidate of the whole search sees the same
minibatches; so its result does not depend on the population it was trained
with, and a resumed run retraces the uninterrupted one exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas import data as data_lib
from jaxnas import spaces as spaces_lib
from jaxnas import strategies as strategies_lib
from jaxnas.arch import Arch, from_json, stack, to_json, unstack
from jaxnas.nn import make_model
from jaxnas.search.checkpoint import Snapshot
from jaxnas.search.config import Record, SearchConfig, SearchError, best_record
from jaxnas.search.context import build_strategy
from jaxnas.train import (
    TrainConfig,
    TrainState,
    init_state,
    put_data,
    stack_candidates,
    take_candidates,
    train_population,
)


def arch_keys(seed_key: jax.Array, hashes: list[str]) -> jax.Array:
    """(P,) initialisation keys, each a function of the run seed and the arch's hash."""
    return jnp.stack([jax.random.fold_in(seed_key, int(h[:8], 16)) for h in hashes])


class Run:
    """The mutable state of one search, a generation at a time; only ``search`` makes one.

    Args:
      config: the search's settings.
      data: the loaded dataset.
      out: the run directory (None: in memory), as the result names it.
      space: the space object when the caller passed one, else None (the registered
        ``config.space``).
      factory: the strategy factory when the caller passed one, else None (the
        registered ``config.strategy``).
      weights: where trained parameters are kept for weight inheritance: an object with
        ``has(hash)``, ``store(hash, params)`` and ``load(hash, like)`` (the run
        directory's ``RunDir.weights()``); None keeps them in memory.
    """

    def __init__(self, config: SearchConfig, data: data_lib.Dataset, out: Path | None,
                 space: spaces_lib.Space | None = None, factory: Callable | None = None,
                 weights: Any = None):
        self.config = config
        self.data = data
        self.space = space if space is not None else spaces_lib.get(config.space)
        if factory is None:
            factory = strategies_lib.factory(config.strategy)
        self.strategy = build_strategy(config.strategy, factory, self.space, config, data,
                                       self.train_config(config.steps))
        if config.inherit and self.strategy.lineage is None:
            raise SearchError(f"strategy {config.strategy} proposes no children of trained "
                              "parents, so --inherit would change nothing; use it with "
                              "evolution, local or bananas")
        self.out = out
        self.model = make_model(self.space, self.data.input_shape, self.data.num_classes,
                                config.model)
        self.device_data = put_data(self.data)
        root = jax.random.key(config.seed)
        self.k_strategy, self.k_weights, self.k_batches, self.k_final = jax.random.split(root, 4)
        self.cache: dict[tuple[str, int], Record] = {}
        # hash -> one candidate's train state, kept for multi-fidelity continuation. Not
        # checkpointed: with hash-derived weights and shared minibatches, retraining from
        # scratch to the same step count after a resume gives the same result.
        self.trained: dict[str, Any] = {}
        # hash -> trained parameters (K rows), the parents of weight inheritance: in
        # memory, or with a run directory in its weights/ (so a resumed run has them).
        self.weights = weights if weights is not None else _MemoryWeights()
        self._inherit = jax.jit(jax.vmap(self.model.inherit))
        self._params_like = (jax.eval_shape(self.model.init, jax.random.key(0))
                             if config.inherit else None)
        self.history: list[Record] = []
        self.generation = 0
        self.elapsed = 0.0
        info = self.strategy.info
        self.ask = jax.jit(self.strategy.ask) if info.jittable else self.strategy.ask
        self.tell = jax.jit(self.strategy.tell) if info.jittable else self.strategy.tell
        self.state = self.strategy.init(jax.random.fold_in(self.k_strategy, 0))
        self.key = jax.random.fold_in(self.k_strategy, 1)

    def snapshot(self) -> Snapshot:
        """What the search continues from (``restore``)."""
        return Snapshot(generation=self.generation, elapsed=self.elapsed, key=self.key,
                        strategy=self.state, history=tuple(self.history))

    def restore(self, snapshot: Snapshot) -> None:
        """Continues from ``snapshot`` (counters, key, strategy state, evaluations)."""
        self.generation = snapshot.generation
        self.elapsed = snapshot.elapsed
        self.key = snapshot.key
        self.state = snapshot.strategy
        self.history = list(snapshot.history)
        self.cache = {(record.hash, record.steps): record for record in self.history}

    def train_config(self, steps: int) -> TrainConfig:
        return TrainConfig(steps=steps, batch_size=min(self.config.batch_size,
                                                       len(self.data.y_train)),
                           optimizer=self.config.optimizer,
                           learning_rate=self.config.learning_rate,
                           schedule_steps=self.config.steps,
                           model=self.config.model, program=self.config.program)

    def budget_left(self) -> int:
        return self.config.budget_evals - len(self.history)

    def done(self) -> bool:
        c = self.config
        asks = self.strategy.info.max_asks
        if asks is not None and self.generation >= asks:
            return True
        if self.budget_left() <= 0:
            return True
        if c.generations is not None and self.generation >= c.generations:
            return True
        return c.budget_minutes is not None and self.elapsed >= 60 * c.budget_minutes

    def step(self) -> list[Record]:
        """One generation: ask, train the unseen architectures, tell. Returns new records."""
        start = time.perf_counter()
        self.key, k_ask, k_tell = jax.random.split(self.key, 3)
        archs, self.state = self.ask(k_ask, self.state)
        steps = (int(self.strategy.fidelity(self.state)) if self.strategy.fidelity
                 else self.config.steps)
        members = unstack(archs)
        hashes = [self.space.canonical_hash(a) for a in members]
        parents = self._parents(len(members))
        fresh: dict[str, tuple[Arch, str | None]] = {}
        for h, arch, parent in zip(hashes, members, parents, strict=True):
            if (h, steps) not in self.cache and h not in fresh:
                fresh[h] = (arch, parent)
        fresh = dict(list(fresh.items())[:max(self.budget_left(), 0)])
        new_records = self._train(fresh, steps, start) if fresh else []
        fitness = np.array([
            self.cache[(h, steps)].fitness(self.config.objective) if (h, steps) in self.cache
            else (math.inf,) * self.config.num_objectives
            for h in hashes], np.float32)
        if self.config.num_objectives == 1:
            fitness = fitness[:, 0]
        self.state, _ = self.tell(k_tell, self.state, archs, jnp.asarray(fitness))
        self.generation += 1
        self.elapsed += time.perf_counter() - start
        return new_records

    def _parents(self, size: int) -> list[str | None]:
        """Per asked member, the hash of the trained parent whose weights it inherits."""
        if not self.config.inherit or self.strategy.lineage is None:
            return [None] * size
        lineage = self.strategy.lineage(self.state)
        found = []
        for arch, has_parent in zip(unstack(lineage.parent), np.asarray(lineage.has_parent),
                                    strict=True):
            h = self.space.canonical_hash(arch) if has_parent else None
            found.append(h if h is not None and self.weights.has(h) else None)
        return found

    def _train(self, fresh: dict[str, tuple[Arch, str | None]], steps: int,
               start: float) -> list[Record]:
        hashes = list(fresh)
        archs = stack([arch for arch, _ in fresh.values()])
        k = self.config.repeats
        groups: dict[int, list[int]] = {}
        for i, h in enumerate(hashes):
            done = int(self.trained[h].step) if h in self.trained else 0
            groups.setdefault(done if done < steps else 0, []).append(i)
        val_loss = np.zeros((len(hashes), k), np.float32)
        val_acc = np.zeros((len(hashes), k), np.float32)
        for done, index in sorted(groups.items()):
            # K rows per candidate, candidate-major: row j * K + r is repeat r of index[j].
            group = jax.tree_util.tree_map(lambda leaf, index=index: leaf[np.repeat(index, k)],
                                           archs)
            names = [hashes[i] for i in index]
            if done:
                state = stack_candidates([self.trained[h] for h in names]).map_candidates(
                    lambda leaf: leaf.reshape((-1,) + leaf.shape[2:]))
            else:
                state = self._start_state(names, group, [fresh[h][1] for h in names])
            result = train_population(
                arch_keys(self.k_weights, names), self.space, group, self.device_data,
                self.train_config(steps - done), state=state, batch_key=self.k_batches)
            val_loss[index] = result.val_loss.reshape(-1, k)
            val_acc[index] = result.val_acc.reshape(-1, k)
            for j, h in enumerate(names):
                rows = np.arange(j * k, (j + 1) * k)
                if self.strategy.fidelity is not None:
                    self.trained[h] = take_candidates(result.state, rows)
                if self.config.inherit:
                    self.weights.store(h, jax.tree_util.tree_map(lambda leaf, rows=rows: np.asarray(
                        leaf[rows]), result.params))
        params = np.asarray(self.model.num_params(archs))
        flops = np.asarray(self.model.flops(archs))
        seconds = (time.perf_counter() - start) / len(hashes)
        records = []
        for i, h in enumerate(hashes):
            record = Record(
                generation=self.generation, hash=h,
                arch=to_json(jax.tree_util.tree_map(lambda leaf, i=i: leaf[i], archs),
                             self.space.op_names),
                val_loss=float(val_loss[i].mean()), val_acc=float(val_acc[i].mean()),
                params=int(params[i]), flops=int(flops[i]), steps=steps,
                seconds=round(seconds, 4), parent=fresh[h][1])
            if k > 1:
                finite = np.isfinite(val_loss[i]).all()
                record.val_loss_std = float(val_loss[i].std(ddof=1)) if finite else math.inf
                record.val_acc_std = float(val_acc[i].std(ddof=1))
                record.repeat_val_loss = [float(v) for v in val_loss[i]]
                record.repeat_val_acc = [float(v) for v in val_acc[i]]
            self.cache[(h, steps)] = record
            self.history.append(record)
            records.append(record)
        return records

    def _start_state(self, hashes: list[str], archs: Arch,
                     parents: list[str | None]) -> TrainState | None:
        """The state K rows per candidate start from (None: the plain fresh start, as
        without repeats and inheritance).

        Repeat 0 draws what a run without repeats draws; repeat r > 0 draws its initial
        weights from ``fold_in(key, r)`` and its minibatch order from
        ``fold_in(batch key, r)``. With inheritance, row r of a child starts from row r
        of its parent's trained parameters (``Model.inherit``) and fresh optimiser state.
        """
        k = self.config.repeats
        if k == 1 and not any(parents):
            return None
        keys = arch_keys(self.k_weights, hashes)
        keys = jnp.stack([jax.random.fold_in(key, r) if r else key
                          for key in keys for r in range(k)])
        state = init_state(keys, self.space, len(keys), self.device_data,
                           self.train_config(self.config.steps), batch_key=self.k_batches)
        if k > 1:
            orders = np.stack([jax.random.key_data(jax.random.fold_in(self.k_batches, r) if r
                                                   else self.k_batches) for r in range(k)])
            state = state._replace(batch_key=np.tile(orders, (len(hashes), 1)))
        if any(parents):
            # Rows without a parent are their own parent: inherit then keeps them fresh.
            parent_params = jax.tree_util.tree_map(np.array, jax.device_get(state.params))
            parent_archs = Arch(adj=np.array(archs.adj), ops=np.array(archs.ops))
            for j, parent in enumerate(parents):
                if parent is None:
                    continue
                rows = slice(j * k, (j + 1) * k)
                trained_as = from_json(self._parent_record(parent).arch, self.space.op_names)
                parent_archs.adj[rows], parent_archs.ops[rows] = trained_as.adj, trained_as.ops
                for leaf, value in zip(jax.tree_util.tree_leaves(parent_params),
                                       jax.tree_util.tree_leaves(
                                           self.weights.load(parent, self._params_like)),
                                       strict=True):
                    leaf[rows] = value
            state = state._replace(params=self._inherit(parent_params, parent_archs,
                                                        state.params, archs))
        return state

    def _parent_record(self, h: str) -> Record:
        return next(r for r in reversed(self.history) if r.hash == h)

    def best(self) -> Record:
        return best_record(self.history, self.config.objective)



class _MemoryWeights:
    """Trained parameters by hash, kept in memory (a search without a run directory)."""

    def __init__(self):
        self._params: dict[str, Any] = {}

    def has(self, arch_hash: str) -> bool:
        return arch_hash in self._params

    def store(self, arch_hash: str, params: Any) -> None:
        self._params[arch_hash] = params

    def load(self, arch_hash: str, like: Any) -> Any:
        return self._params[arch_hash]
