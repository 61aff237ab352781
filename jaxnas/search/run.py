"""One search's mutable state and its generation step: ask, train the unseen, tell.

Determinism: an architecture's initial weights come from the run's seed and its
canonical hash, and every candidate of the whole search sees the same
minibatches; so its result does not depend on the population it was trained
with, and a resumed run retraces the uninterrupted one exactly. In a joint search a
candidate is an architecture at its own training numbers (``Record.identity``): the
same architecture at other numbers starts from the same weights and is another
candidate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

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

Identity = tuple  # Record.identity: (canonical hash, sorted (name, value) pairs)


def identity_of(arch_hash: str, numbers: dict[str, float] | None) -> Identity:
    """``Record.identity`` of an architecture trained at ``numbers`` (None: the run's)."""
    return (arch_hash, tuple(sorted((numbers or {}).items())))


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
        self.hyper = config.hyper_space()
        root = jax.random.key(config.seed)
        self.k_strategy, self.k_weights, self.k_batches, self.k_final = jax.random.split(root, 4)
        self.cache: dict[tuple[Identity, int], Record] = {}
        # identity -> one candidate's train state, kept for multi-fidelity continuation. Not
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
        self.cache = {(record.identity, record.steps): record for record in self.history}

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
        numbers = self._numbers(len(members))
        identities = [identity_of(self.space.canonical_hash(a), n)
                      for a, n in zip(members, numbers, strict=True)]
        parents = self._parents(len(members))
        fresh: dict[Identity, Candidate] = {}
        for key, arch, parent, n in zip(identities, members, parents, numbers, strict=True):
            if (key, steps) not in self.cache and key not in fresh:
                fresh[key] = Candidate(arch, parent, n)
        fresh = dict(list(fresh.items())[:max(self.budget_left(), 0)])
        new_records = self._train(fresh, steps, start) if fresh else []
        fitness = np.array([
            self.cache[(key, steps)].fitness(self.config.objective)
            if (key, steps) in self.cache else (math.inf,) * self.config.num_objectives
            for key in identities], np.float32)
        if self.config.num_objectives == 1:
            fitness = fitness[:, 0]
        self.state, _ = self.tell(k_tell, self.state, archs, jnp.asarray(fitness))
        self.generation += 1
        self.elapsed += time.perf_counter() - start
        return new_records

    def _numbers(self, size: int) -> list[dict[str, float] | None]:
        """Per asked member, its training numbers in a joint search (else None each)."""
        if self.hyper is None:
            return [None] * size
        units = np.asarray(jax.device_get(self.strategy.hyperparameters(self.state)))
        return [self.hyper.describe(u) for u in units]

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

    def _train(self, fresh: dict[Identity, Candidate], steps: int,
               start: float) -> list[Record]:
        identities = list(fresh)
        hashes = [key[0] for key in identities]
        archs = stack([candidate.arch for candidate in fresh.values()])
        k = self.config.repeats
        groups: dict[int, list[int]] = {}
        for i, key in enumerate(identities):
            done = int(self.trained[key].step) if key in self.trained else 0
            groups.setdefault(done if done < steps else 0, []).append(i)
        val_loss = np.zeros((len(hashes), k), np.float32)
        val_acc = np.zeros((len(hashes), k), np.float32)
        for done, index in sorted(groups.items()):
            # K rows per candidate, candidate-major: row j * K + r is repeat r of index[j].
            group = jax.tree_util.tree_map(lambda leaf, index=index: leaf[np.repeat(index, k)],
                                           archs)
            keys = [identities[i] for i in index]
            names = [key[0] for key in keys]
            if done:
                state = stack_candidates([self.trained[key] for key in keys]).map_candidates(
                    lambda leaf: leaf.reshape((-1,) + leaf.shape[2:]))
            else:
                state = self._start_state(names, group, [fresh[key].parent for key in keys])
            result = train_population(
                arch_keys(self.k_weights, names), self.space, group, self.device_data,
                self.train_config(steps - done), state=state, batch_key=self.k_batches,
                hyperparams=self._row_numbers([fresh[key].numbers for key in keys]))
            val_loss[index] = result.val_loss.reshape(-1, k)
            val_acc[index] = result.val_acc.reshape(-1, k)
            for j, (key, h) in enumerate(zip(keys, names, strict=True)):
                rows = np.arange(j * k, (j + 1) * k)
                if self.strategy.fidelity is not None:
                    self.trained[key] = take_candidates(result.state, rows)
                if self.config.inherit:
                    self.weights.store(h, jax.tree_util.tree_map(lambda leaf, rows=rows: np.asarray(
                        leaf[rows]), result.params))
        params = np.asarray(self.model.num_params(archs))
        flops = np.asarray(self.model.flops(archs))
        seconds = (time.perf_counter() - start) / len(hashes)
        records = []
        for i, (key, h) in enumerate(zip(identities, hashes, strict=True)):
            record = Record(
                generation=self.generation, hash=h,
                arch=to_json(jax.tree_util.tree_map(lambda leaf, i=i: leaf[i], archs),
                             self.space.op_names),
                val_loss=float(val_loss[i].mean()), val_acc=float(val_acc[i].mean()),
                params=int(params[i]), flops=int(flops[i]), steps=steps,
                seconds=round(seconds, 4), parent=fresh[key].parent,
                hyperparameters=fresh[key].numbers)
            if k > 1:
                finite = np.isfinite(val_loss[i]).all()
                record.val_loss_std = float(val_loss[i].std(ddof=1)) if finite else math.inf
                record.val_acc_std = float(val_acc[i].std(ddof=1))
                record.repeat_val_loss = [float(v) for v in val_loss[i]]
                record.repeat_val_acc = [float(v) for v in val_acc[i]]
            self.cache[(key, steps)] = record
            self.history.append(record)
            records.append(record)
        return records

    def _row_numbers(self, numbers: list[dict[str, float] | None]) -> dict | None:
        """The trainer's per-row numbers of candidates trained K rows each (None: the
        run's)."""
        if self.hyper is None:
            return None
        k = self.config.repeats
        return {name: np.repeat(np.asarray([n[name] for n in numbers], np.float32), k)
                for name in self.hyper.names}

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



class Candidate(NamedTuple):
    """An asked candidate not evaluated yet: its architecture, the hash of the parent
    whose weights it inherits, and its training numbers in a joint search."""

    arch: Arch
    parent: str | None
    numbers: dict[str, float] | None


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
