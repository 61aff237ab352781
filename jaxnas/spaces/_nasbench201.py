"""NAS-Bench-201's cell space in jaxnas's node-op form."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.arch import INPUT, NB201_ADJ, NB201_OPS, OUTPUT, Arch, ArchError, nb201_unique_str
from jaxnas.spaces._base import Space

_INNER = slice(1, 7)


@dataclasses.dataclass(frozen=True)
class NasBench201Space(Space):
    """The 4-node NAS-Bench-201 cell: 6 edges, each with one of 5 ops.

    Edges become nodes (see ``jaxnas.arch.NB201_ADJ``), so the topology is
    fixed and an architecture is its 6 op ids. ``sample`` is uniform over the
    15,625 cells; ``mutate`` changes one op to a different one, uniformly;
    ``canonical_hash`` follows NATS-Bench's unique-architecture rule.
    """

    topology: ClassVar[str] = "fixed"

    name: str = "nasbench201"
    max_nodes: int = 8
    op_names: tuple[str, ...] = NB201_OPS
    max_edges: int = 10
    edge_labelled: bool = True

    def _build(self, inner_ops: jax.Array) -> Arch:
        ops = jnp.concatenate([jnp.array([INPUT]), inner_ops, jnp.array([OUTPUT])])
        return Arch(adj=jnp.asarray(NB201_ADJ), ops=ops.astype(jnp.int32))

    def sample_one(self, key: jax.Array) -> Arch:
        return self._build(jax.random.randint(key, (6,), 0, self.num_ops))

    def mutate(self, key: jax.Array, arch: Arch) -> Arch:
        k_edge, k_shift = jax.random.split(key)
        edge = jax.random.randint(k_edge, (), 0, 6)
        shift = jax.random.randint(k_shift, (), 1, self.num_ops)
        inner = arch.ops[_INNER]
        return self._build(inner.at[edge].set((inner[edge] + shift) % self.num_ops))

    def neighbours(self, arch: Arch) -> Arch:
        """The 24 cells that differ in exactly one edge op."""
        inner = np.asarray(arch.ops)[_INNER]
        result = []
        for edge, op in itertools.product(range(6), range(self.num_ops)):
            if op != inner[edge]:
                changed = inner.copy()
                changed[edge] = op
                result.append(changed)
        return self._build_host(np.stack(result))

    def enumerate(self) -> Arch:
        """All 15,625 cells, the first edge's op varying slowest."""
        return self._build_host(
            np.array(list(itertools.product(range(self.num_ops), repeat=6)), np.int32)
        )

    def encoding_index(self, archs: Arch) -> jax.Array:
        """Enumeration index (``enumerate`` order) of cells with any leading axes
        (jittable): the six edge ops as base-5 digits, the first most significant."""
        digits = archs.ops[..., _INNER].astype(jnp.int32)
        return digits @ (self.num_ops ** jnp.arange(5, -1, -1, dtype=jnp.int32))

    def _build_host(self, inner: np.ndarray) -> Arch:
        count = len(inner)
        ops = np.empty((count, 8), np.int32)
        ops[:, 0], ops[:, -1], ops[:, _INNER] = INPUT, OUTPUT, inner
        return Arch(adj=np.broadcast_to(NB201_ADJ, (count, 8, 8)).copy(), ops=ops)

    def validate(self, arch: Arch) -> None:
        super().validate(arch)
        if not np.array_equal(np.asarray(arch.adj), NB201_ADJ):
            raise ArchError("a nasbench201 cell has the fixed edge->node adjacency "
                                "jaxnas.arch.NB201_ADJ; this adjacency differs")
        if (np.asarray(arch.ops)[_INNER] < 0).any():
            raise ArchError("every edge of a nasbench201 cell needs an op; found padding")

    def is_valid(self, arch: Arch) -> jax.Array:
        return (super().is_valid(arch) & jnp.all(arch.adj == jnp.asarray(NB201_ADJ))
                & jnp.all(arch.ops[_INNER] >= 0))

    def fixed_adj(self) -> np.ndarray:
        return NB201_ADJ

    def canonical_hash(self, arch: Arch) -> str:
        return hashlib.md5(nb201_unique_str(arch).encode()).hexdigest()
