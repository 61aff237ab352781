"""Node-labelled DAG cells with NAS-Bench-101 semantics (``dag``, ``nasbench101``)."""

from __future__ import annotations

import dataclasses
import itertools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.arch import INPUT, OUTPUT, PAD, Arch, live_mask, nb101_from_arch, nb101_hash, prune
from jaxnas.spaces._base import Space, differs, pick, unique_population, until_valid

_ENUMERATE_LIMIT = 2_000_000


def _ends(n: int) -> jax.Array:
    index = jnp.arange(n)
    return jnp.where(index == 0, INPUT, jnp.where(index == n - 1, OUTPUT, 0))


def _host_prune(adj: np.ndarray, ops: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """In-place pruning on the host (dead nodes become PAD); None if disconnected."""
    keep = live_mask(adj)
    if keep is None:
        return None
    return adj * np.outer(keep, keep).astype(np.int8), np.where(keep, ops, PAD).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class DagSpace(Space):
    """DAG cells whose nodes carry ops; a node sums its predecessors, then applies its op.

    ``sample`` draws NAS-Bench-101's random spec: every upper-triangular edge
    is present with probability 1/2 and every inner node gets a uniform op; a
    draw is rejected unless the output is reachable and the pruned graph has at
    most ``max_edges`` edges; dead nodes are then pruned into padding. This is
    uniform over valid N-node specs, not over unique (isomorphism-free) graphs.

    ``mutate`` draws one of five moves uniformly (add a node, add an edge,
    remove a node, remove an edge, change an op) and retries until the result
    is valid and differs from the parent.
    """

    topology: ClassVar[str] = "dag"

    max_tries: int = 512

    def sample_one(self, key: jax.Array) -> Arch:
        n = self.max_nodes
        upper = jnp.triu(jnp.ones((n, n), bool), 1)

        def propose(key):
            k_adj, k_ops = jax.random.split(key)
            adj = (jax.random.bernoulli(k_adj, 0.5, (n, n)) & upper).astype(jnp.int8)
            inner = jax.random.randint(k_ops, (n,), 0, self.num_ops)
            ops = jnp.where((jnp.arange(n) > 0) & (jnp.arange(n) < n - 1), inner, _ends(n))
            return prune(Arch(adj=adj, ops=ops.astype(jnp.int32)))

        return until_valid(key, propose, self.is_valid, self._fallback(), self.max_tries)

    def _fallback(self) -> Arch:
        """The smallest valid cell: input -> op 0 -> output (or input -> output)."""
        n = self.max_nodes
        adj = np.zeros((n, n), np.int8)
        ops = np.full(n, PAD, np.int32)
        ops[0], ops[-1] = INPUT, OUTPUT
        if n > 2 and self.max_edges >= 2:
            adj[0, 1] = adj[1, n - 1] = 1
            ops[1] = 0
        else:
            adj[0, n - 1] = 1
        return Arch(adj=jnp.asarray(adj), ops=jnp.asarray(ops))

    def mutate(self, key: jax.Array, arch: Arch) -> Arch:
        n = self.max_nodes
        index = jnp.arange(n)
        upper = index[:, None] < index[None, :]

        def propose(key):
            k_move, k_add, k_remove, k_b, k_c, k_d = jax.random.split(key, 6)
            compute = arch.ops >= 0
            real = arch.ops != PAD
            adj, ops = arch.adj, arch.ops

            # add an edge between two existing nodes
            cell, _ = pick(k_add, upper & real[:, None] & real[None, :] & (adj == 0))
            add_edge = Arch(adj.at[cell // n, cell % n].set(1), ops)
            # remove an edge
            cell, _ = pick(k_remove, adj == 1)
            remove_edge = Arch(adj.at[cell // n, cell % n].set(0), ops)
            # change the op of a compute node
            node, _ = pick(k_b, compute)
            shift = jax.random.randint(k_c, (), 1, max(self.num_ops, 2))
            change_op = Arch(adj, ops.at[node].set((ops[node] + shift) % self.num_ops))
            # remove a compute node with its edges
            keep = (index != node).astype(adj.dtype)
            remove_node = Arch(adj * keep[:, None] * keep[None, :], ops.at[node].set(PAD))
            # add a node in a padding slot, fed by an earlier node, feeding a later one
            k_p, k_pred, k_succ, k_op = jax.random.split(k_d, 4)
            slot, _ = pick(k_p, ops == PAD)
            pred, _ = pick(k_pred, real & (index < slot))
            succ, _ = pick(k_succ, real & (index > slot))
            new_op = jax.random.randint(k_op, (), 0, self.num_ops)
            add_node = Arch(adj.at[pred, slot].set(1).at[slot, succ].set(1),
                            ops.at[slot].set(new_op))

            moves = (add_node, add_edge, remove_node, remove_edge, change_op)
            choice = jax.random.randint(k_move, (), 0, len(moves))
            chosen = jax.tree_util.tree_map(
                lambda *leaves: jnp.stack(leaves)[choice], *moves
            )
            return prune(chosen)

        def accept(candidate):
            return self.is_valid(candidate) & differs(candidate, arch)

        return until_valid(key, propose, accept, arch, self.max_tries)

    def neighbours(self, arch: Arch) -> Arch:
        """Every result of one basic move: op change, edge addition or removal, node
        removal, and node addition (a padding slot fed by one earlier node and
        feeding one later node). Results are pruned, valid and distinct encodings.
        """
        adj = np.asarray(arch.adj, np.int8)
        ops = np.asarray(arch.ops, np.int32)
        n = len(ops)
        candidates = []
        for node in np.flatnonzero(ops >= 0):
            for op in range(self.num_ops):
                if op != ops[node]:
                    changed = ops.copy()
                    changed[node] = op
                    candidates.append((adj, changed))
            removed = adj.copy()
            removed[node, :] = removed[:, node] = 0
            gone = ops.copy()
            gone[node] = PAD
            candidates.append((removed, gone))
        real = ops != PAD
        for slot in np.flatnonzero(ops == PAD):
            for pred, succ, op in itertools.product(np.flatnonzero(real[:slot]),
                                                    slot + 1 + np.flatnonzero(real[slot + 1:]),
                                                    range(self.num_ops)):
                grown, grown_ops = adj.copy(), ops.copy()
                grown[pred, slot] = grown[slot, succ] = 1
                grown_ops[slot] = op
                candidates.append((grown, grown_ops))
        for i, j in itertools.combinations(range(n), 2):
            if real[i] and real[j]:
                flipped = adj.copy()
                flipped[i, j] = 1 - flipped[i, j]
                candidates.append((flipped, ops))
        result = []
        for cand_adj, cand_ops in candidates:
            pruned = _host_prune(cand_adj, cand_ops)
            if pruned is None or pruned[0].sum() > self.max_edges:
                continue
            if np.array_equal(pruned[0], adj) and np.array_equal(pruned[1], ops):
                continue
            result.append(Arch(adj=pruned[0], ops=pruned[1]))
        return unique_population(result, n)

    def enumerate(self) -> Arch:
        """Every full cell in compact form: real nodes first, then padding, output last.

        Distinct encodings, isomorphic copies included; raises ValueError when the
        space holds more than two million of them (count it instead).
        """
        n = self.max_nodes
        blocks = []
        for size in range(2, n + 1):
            matrices = _full_dags(size, self.max_edges)
            inner = size - 2
            total = len(matrices) * self.num_ops ** inner
            if sum(len(b[0]) for b in blocks) + total > _ENUMERATE_LIMIT:
                raise ValueError(f"space {self.name} has more than {_ENUMERATE_LIMIT:,} "
                                 "architectures; too many to enumerate (use count)")
            if not len(matrices):
                continue
            labellings = np.array(list(itertools.product(range(self.num_ops), repeat=inner)),
                                  np.int32).reshape(self.num_ops ** inner, inner)
            padded = np.zeros((len(matrices), n, n), np.int8)
            position = np.r_[np.arange(size - 1), n - 1]
            padded[:, position[:, None], position[None, :]] = matrices
            ops = np.full((len(labellings), n), PAD, np.int32)
            ops[:, 0], ops[:, -1] = INPUT, OUTPUT
            ops[:, 1:size - 1] = labellings
            blocks.append((np.repeat(padded, len(labellings), 0),
                           np.tile(ops, (len(matrices), 1))))
        return Arch(adj=np.concatenate([b[0] for b in blocks]),
                    ops=np.concatenate([b[1] for b in blocks]))


def _full_dags(size: int, max_edges: int) -> np.ndarray:
    """All (M, size, size) upper-triangular DAGs whose every node is on an in->out path."""
    rows, cols = np.triu_indices(size, 1)
    codes = np.arange(2 ** len(rows), dtype=np.int64)
    bits = ((codes[:, None] >> np.arange(len(rows))) & 1).astype(np.int8)
    bits = bits[bits.sum(1) <= max_edges]
    adj = np.zeros((len(bits), size, size), np.int8)
    adj[:, rows, cols] = bits
    forward = np.zeros((len(bits), size), bool)
    forward[:, 0] = True
    for j in range(1, size):
        forward[:, j] = (forward[:, :j] & (adj[:, :j, j] != 0)).any(1)
    backward = np.zeros((len(bits), size), bool)
    backward[:, -1] = True
    for i in range(size - 2, -1, -1):
        backward[:, i] = (backward[:, i + 1:] & (adj[:, i, i + 1:] != 0)).any(1)
    return adj[(forward & backward).all(1)]


@dataclasses.dataclass(frozen=True)
class NasBench101Space(DagSpace):
    """NAS-Bench-101's cell space; its hash is NAS-Bench-101's own ``hash_spec``."""

    def canonical_hash(self, arch: Arch) -> str:

        return nb101_hash(*nb101_from_arch(arch))
