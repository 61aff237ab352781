"""Chains of layers (the ``mlp`` space): input -> L hidden layers -> output."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.arch import INPUT, OUTPUT, PAD, Arch, ArchError
from jaxnas.spaces._base import Space, differs, until_valid


def chain_arch(hidden: jax.Array) -> Arch:
    """The chain architecture whose hidden layers are the non-PAD prefix of ``hidden``.

    Args:
      hidden: (N-2,) int32 op ids of the hidden layers, PAD after the last one.
    """
    n = hidden.shape[0] + 2
    depth = jnp.sum(hidden != PAD)
    index = jnp.arange(n)
    step = (index[:, None] + 1 == index[None, :]) & (index[:, None] < depth)
    last = (index[:, None] == depth) & (index[None, :] == n - 1)
    ops = jnp.concatenate([jnp.array([INPUT]), hidden, jnp.array([OUTPUT])])
    return Arch(adj=(step | last).astype(jnp.int8), ops=ops.astype(jnp.int32))


@dataclasses.dataclass(frozen=True)
class ChainSpace(Space):
    """A chain of 1..N-2 hidden layers, each one of the space's ops.

    ``sample`` is uniform over valid architectures: the depth L is drawn with
    probability proportional to K**L (the number of chains of that depth), then
    every layer's op uniformly. ``mutate`` inserts a layer, deletes one, or
    changes one layer's op, uniformly, retrying until the result is valid and new.
    """

    topology: ClassVar[str] = "chain"

    min_layers: int = 1

    @property
    def max_layers(self) -> int:
        return self.max_nodes - 2

    def sample_one(self, key: jax.Array) -> Arch:
        k_depth, k_ops = jax.random.split(key)
        depths = jnp.arange(self.min_layers, self.max_layers + 1)
        depth = jax.random.categorical(k_depth, depths * math.log(self.num_ops)) + self.min_layers
        ops = jax.random.randint(k_ops, (self.max_layers,), 0, self.num_ops)
        return chain_arch(jnp.where(jnp.arange(self.max_layers) < depth, ops, PAD))

    def mutate(self, key: jax.Array, arch: Arch) -> Arch:
        hidden = arch.ops[1:-1]
        depth = jnp.sum(hidden != PAD)
        index = jnp.arange(self.max_layers)

        def propose(key):
            k_move, k_pos, k_op = jax.random.split(key, 3)
            op = jax.random.randint(k_op, (), 0, self.num_ops)
            at_insert = jax.random.randint(k_pos, (), 0, depth + 1)
            at_layer = jnp.minimum(at_insert, depth - 1)
            shifted_right = jnp.concatenate([jnp.array([PAD]), hidden[:-1]])
            shifted_left = jnp.concatenate([hidden[1:], jnp.array([PAD])])
            insert = jnp.where(index < at_insert, hidden,
                               jnp.where(index == at_insert, op, shifted_right))
            insert = jnp.where(depth < self.max_layers, insert, hidden)
            delete = jnp.where(index < at_layer, hidden, shifted_left)
            delete = jnp.where(depth > self.min_layers, delete, hidden)
            change = hidden.at[at_layer].set(op)
            choice = jax.random.randint(k_move, (), 0, 3)
            return chain_arch(jnp.stack([insert, delete, change])[choice])

        def accept(candidate):
            return differs(candidate, arch)

        return until_valid(key, propose, accept, arch, 64)

    def validate(self, arch: Arch) -> None:
        """The base checks, then: the hidden layers fill a prefix of the nodes (padding
        after them), between ``min_layers`` and ``max_layers`` of them, in one chain."""
        super().validate(arch)
        hidden = np.asarray(arch.ops)[1:-1]
        depth = int(np.sum(hidden != PAD))
        if (hidden[depth:] != PAD).any():
            raise ArchError("the layers of a chain fill the first nodes; found padding "
                            f"before node {depth + int(np.argmax(hidden[depth:] != PAD)) + 1}")
        if depth < self.min_layers:
            raise ArchError(f"a chain of {self.name} has at least {self.min_layers} "
                            f"layer{'s' if self.min_layers != 1 else ''}; got {depth}")
        if not np.array_equal(np.asarray(arch.adj), np.asarray(chain_arch(hidden).adj)):
            raise ArchError(f"{self.name} architectures are chains: each layer reads the one "
                            "before it and the output reads the last; these edges differ")

    def neighbours(self, arch: Arch) -> Arch:
        """Every single insertion, deletion and op change."""
        hidden = [int(o) for o in np.asarray(arch.ops)[1:-1] if o != PAD]
        results = set()
        for position, op in itertools.product(range(len(hidden) + 1), range(self.num_ops)):
            if len(hidden) < self.max_layers:
                results.add(tuple(hidden[:position] + [op] + hidden[position:]))
            if position < len(hidden) and op != hidden[position]:
                results.add(tuple(hidden[:position] + [op] + hidden[position + 1:]))
        if len(hidden) > self.min_layers:
            results.update(tuple(hidden[:i] + hidden[i + 1:]) for i in range(len(hidden)))
        results.discard(tuple(hidden))
        return self._stack(sorted(results))

    def enumerate(self) -> Arch:
        layers = [
            tuple(ops)
            for depth in range(self.min_layers, self.max_layers + 1)
            for ops in itertools.product(range(self.num_ops), repeat=depth)
        ]
        return self._stack(layers)

    def _stack(self, layer_lists) -> Arch:
        hidden = np.full((len(layer_lists), self.max_layers), PAD, np.int32)
        for row, layers in enumerate(layer_lists):
            hidden[row, :len(layers)] = layers
        archs = jax.vmap(chain_arch)(jnp.asarray(hidden))
        return Arch(adj=np.asarray(archs.adj), ops=np.asarray(archs.ops))
