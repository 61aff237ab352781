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
from jaxnas.arch import Arch, stack, to_json, unstack
from jaxnas.nn import make_model
from jaxnas.search.config import Record, SearchConfig, best_record
from jaxnas.search.context import build_strategy
from jaxnas.train import (
    TrainConfig,
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
      out: the run directory (None: in memory).
      space: the space object when the caller passed one, else None (the registered
        ``config.space``).
      factory: the strategy factory when the caller passed one, else None (the
        registered ``config.strategy``).
    """

    def __init__(self, config: SearchConfig, data: data_lib.Dataset, out: Path | None,
                 space: spaces_lib.Space | None = None, factory: Callable | None = None):
        self.config = config
        self.data = data
        self.space = space if space is not None else spaces_lib.get(config.space)
        if factory is None:
            factory = strategies_lib.factory(config.strategy)
        self.strategy = build_strategy(config.strategy, factory, self.space, config, data,
                                       self.train_config(config.steps))
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
        self.history: list[Record] = []
        self.generation = 0
        self.elapsed = 0.0
        info = self.strategy.info
        self.ask = jax.jit(self.strategy.ask) if info.jittable else self.strategy.ask
        self.tell = jax.jit(self.strategy.tell) if info.jittable else self.strategy.tell
        self.state = self.strategy.init(jax.random.fold_in(self.k_strategy, 0))
        self.key = jax.random.fold_in(self.k_strategy, 1)

    def train_config(self, steps: int) -> TrainConfig:
        return TrainConfig(steps=steps, batch_size=min(self.config.batch_size,
                                                       len(self.data.y_train)),
                           optimizer=self.config.optimizer,
                           learning_rate=self.config.learning_rate,
                           schedule_steps=self.config.steps,
                           model=self.config.model)

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
        fresh: dict[str, Arch] = {}
        for h, arch in zip(hashes, members, strict=True):
            if (h, steps) not in self.cache and h not in fresh:
                fresh[h] = arch
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

    def _train(self, fresh: dict[str, Arch], steps: int, start: float) -> list[Record]:
        hashes = list(fresh)
        archs = stack(list(fresh.values()))
        groups: dict[int, list[int]] = {}
        for i, h in enumerate(hashes):
            done = int(self.trained[h].step) if h in self.trained else 0
            groups.setdefault(done if done < steps else 0, []).append(i)
        val_loss = np.zeros(len(hashes), np.float32)
        val_acc = np.zeros(len(hashes), np.float32)
        for done, index in sorted(groups.items()):
            group = jax.tree_util.tree_map(lambda leaf, index=index: leaf[np.array(index)], archs)
            state = None
            if done:
                state = stack_candidates([self.trained[hashes[i]] for i in index])
            result = train_population(
                arch_keys(self.k_weights, [hashes[i] for i in index]), self.space, group,
                self.device_data, self.train_config(steps - done), state=state,
                batch_key=self.k_batches)
            val_loss[index], val_acc[index] = result.val_loss, result.val_acc
            if self.strategy.fidelity is not None:
                for j, i in enumerate(index):
                    self.trained[hashes[i]] = take_candidates(result.state, j)
        params = np.asarray(self.model.num_params(archs))
        flops = np.asarray(self.model.flops(archs))
        seconds = (time.perf_counter() - start) / len(hashes)
        records = []
        for i, h in enumerate(hashes):
            record = Record(
                generation=self.generation, hash=h,
                arch=to_json(jax.tree_util.tree_map(lambda leaf, i=i: leaf[i], archs),
                             self.space.op_names),
                val_loss=float(val_loss[i]), val_acc=float(val_acc[i]),
                params=int(params[i]), flops=int(flops[i]), steps=steps,
                seconds=round(seconds, 4))
            self.cache[(h, steps)] = record
            self.history.append(record)
            records.append(record)
        return records

    def best(self) -> Record:
        return best_record(self.history, self.config.objective)
