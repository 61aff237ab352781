"""NAS-Bench-Graph's GNN space in jaxnas's node-op form (see ``jaxnas.arch`` for the DAG)."""

from __future__ import annotations

import dataclasses
import itertools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.arch import (
    INPUT,
    NBG_ALL_LINKS,
    NBG_OPS,
    OUTPUT,
    Arch,
    ArchError,
    nbg_from_arch,
    nbg_key,
    nbg_link_index,
    nbg_to_arch,
    stack,
)
from jaxnas.spaces._base import Space, differs, until_valid

_OPS = slice(1, 5)


def nasbench_graph_arch(link: jax.Array, inner_ops: jax.Array) -> Arch:
    """The 6-node DAG of 4 parents (link[i] <= i) and 4 op ids (jittable)."""
    node = jnp.arange(6)
    parent = jnp.concatenate([jnp.array([-1]), link, jnp.array([-1])])
    adj = node[:, None] == parent[None, :]
    read = jnp.any(node[:, None] == link[None, :], axis=1)
    adj = adj.at[:, 5].set((node >= 1) & (node <= 4) & ~read)
    ops = jnp.concatenate([jnp.array([INPUT]), inner_ops, jnp.array([OUTPUT])])
    return Arch(adj=adj.astype(jnp.int8), ops=ops.astype(jnp.int32))


def _link(arch: Arch) -> jax.Array:
    """(..., 4) parents of the op nodes of archs with any leading axes (jittable)."""
    return jnp.argmax(arch.adj[..., :5, 1:5], axis=-2).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class NasBenchGraphSpace(Space):
    """NAS-Bench-Graph: 4 op nodes, each reading the input or an earlier op node.

    An architecture is its link (24 patterns) and 4 op ids; the all-skip
    architecture is excluded, as in the benchmark. ``sample`` is uniform over
    these encodings; ``mutate`` changes one op or one node's parent;
    ``canonical_hash`` is the benchmark's own table key (``nbg_key``), so
    equivalent architectures share it. ``op_names`` may be a subset of the
    benchmark's ops (its proteins table covers gcn, sage, arma, fc and skip).
    """

    topology: ClassVar[str | None] = "link"
    name: str = "nasbench_graph"
    max_nodes: int = 6
    op_names: tuple[str, ...] = NBG_OPS
    max_edges: int = 8

    def __post_init__(self):
        unknown = [op for op in self.op_names if op not in NBG_OPS]
        if unknown or not self.op_names:
            raise ValueError(f"nasbench_graph ops must come from {', '.join(NBG_OPS)}; "
                             f"got {self.op_names}")

    @property
    def num_encodings(self) -> int:
        """Size of the range of ``encoding_index``: 24 link patterns x K**4 op lists."""
        return len(NBG_ALL_LINKS) * self.num_ops ** 4

    def _skip(self) -> int:
        return self.op_names.index("skip") if "skip" in self.op_names else -1

    def _allowed(self, arch: Arch) -> jax.Array:
        return ~jnp.all(arch.ops[_OPS] == self._skip())

    def sample_one(self, key: jax.Array) -> Arch:
        def propose(key):
            k_link, k_ops = jax.random.split(key)
            link = jax.random.randint(k_link, (4,), 0, jnp.arange(1, 5))
            return nasbench_graph_arch(link, jax.random.randint(k_ops, (4,), 0, self.num_ops))

        first = propose(jax.random.fold_in(key, 1))
        return until_valid(key, propose, self._allowed, first, 64)

    def mutate(self, key: jax.Array, arch: Arch) -> Arch:
        link, inner = _link(arch), arch.ops[_OPS]

        def propose(key):
            k_node, k_kind, k_shift = jax.random.split(key, 3)
            node = jax.random.randint(k_node, (), 0, 4)
            # Node 0 always reads the input: only its op can change.
            change_link = (node > 0) & jax.random.bernoulli(k_kind)
            shift = jax.random.randint(k_shift, (), 1, jnp.where(change_link, node + 1,
                                                                  self.num_ops))
            new_link = link.at[node].set((link[node] + shift) % (node + 1))
            new_ops = inner.at[node].set((inner[node] + shift) % self.num_ops)
            return nasbench_graph_arch(jnp.where(change_link, new_link, link),
                                       jnp.where(change_link, inner, new_ops))

        def accept(candidate):
            return differs(candidate, arch) & self._allowed(candidate)

        return until_valid(key, propose, accept, arch, 64)

    def neighbours(self, arch: Arch) -> Arch:
        """Every architecture with one other op or one other parent."""
        link, ops = nbg_from_arch(arch)
        results = []
        for node, op in itertools.product(range(4), range(self.num_ops)):
            if op != ops[node]:
                results.append((link, ops[:node] + (op,) + ops[node + 1:]))
        for node in range(1, 4):
            for parent in range(node + 1):
                if parent != link[node]:
                    results.append((link[:node] + (parent,) + link[node + 1:], ops))
        return stack([nbg_to_arch(link, ops) for link, ops in results
                          if self._host_allowed(ops)])

    def enumerate(self) -> Arch:
        """Every encoding (all-skip excluded), the link pattern varying slowest."""
        pairs = [(link, ops) for link in NBG_ALL_LINKS
                 for ops in itertools.product(range(self.num_ops), repeat=4)
                 if self._host_allowed(ops)]
        adj = np.stack([nbg_to_arch(link, ops).adj for link, ops in pairs])
        ops = np.array([[INPUT, *ops, OUTPUT] for _, ops in pairs], np.int32)
        return Arch(adj=adj, ops=ops)

    def _host_allowed(self, ops) -> bool:
        return not all(op == self._skip() for op in ops)

    def encoding_index(self, archs: Arch) -> jax.Array:
        """Index in ``0..num_encodings-1`` of archs with any leading axes (jittable):
        the link pattern's index, then the 4 op ids as base-K digits, first most
        significant."""
        digits = archs.ops[..., _OPS].astype(jnp.int32)
        ops_index = digits @ (self.num_ops ** jnp.arange(3, -1, -1, dtype=jnp.int32))
        link = _link(archs)
        link_index = link[..., 1] * 12 + link[..., 2] * 4 + link[..., 3]
        return link_index * self.num_ops ** 4 + ops_index

    def validate(self, arch: Arch) -> None:
        super().validate(arch)
        _, ops = nbg_from_arch(arch)
        if not self._host_allowed(ops):
            raise ArchError("the all-skip architecture is not part of NAS-Bench-Graph")

    def is_valid(self, arch: Arch) -> jax.Array:
        rebuilt = nasbench_graph_arch(_link(arch), arch.ops[_OPS])
        return (super().is_valid(arch) & ~differs(rebuilt, arch) & self._allowed(arch))

    def canonical_hash(self, arch: Arch) -> str:
        link, ops = nbg_from_arch(arch)
        return str(nbg_key(link, [NBG_OPS.index(self.op_names[op]) for op in ops]))

    def key_of_encoding(self) -> np.ndarray:
        """(num_encodings,) int64: the table key of every encoding index, -1 for all-skip."""
        keys = np.full(self.num_encodings, -1, np.int64)
        global_ops = [NBG_OPS.index(name) for name in self.op_names]
        for link in NBG_ALL_LINKS:
            base = nbg_link_index(link) * self.num_ops ** 4
            for offset, ops in enumerate(itertools.product(range(self.num_ops), repeat=4)):
                if self._host_allowed(ops):
                    keys[base + offset] = nbg_key(link, [global_ops[op] for op in ops])
        return keys
