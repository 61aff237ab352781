"""The search-space interface: static configuration plus pure functions."""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.arch import Arch, ArchError, canonical_hash, is_valid, stack, unstack, validate


@dataclasses.dataclass(frozen=True)
class Space(abc.ABC):
    """A search space: shapes and op names are static, the functions are pure.

    Attributes:
      name: registry name.
      max_nodes: N, the padded node count including input and output.
      op_names: names of the compute ops; op id i is ``op_names[i]``.
      max_edges: the largest number of edges an architecture may have.
      edge_labelled: True when the published form labels edges (NAS-Bench-201);
        jaxnas then stores the standard edge -> node transformation.
      topology: what an architecture's adjacency may be, for code that builds or
        reads architectures without the space's own functions (a class attribute):
        "chain" (layers in sequence, each one op; the depth is a choice, between
        ``min_layers`` and ``max_layers``; the first layer reads the raw input),
        "dag" (any DAG over the padded nodes, ops on the nodes), "fixed" (one
        adjacency, only the ops vary), "link" (NAS-Bench-Graph's macro DAG: each op
        node reads the input or one earlier op node, the leaves summed into the
        output), or None (none of these: such code refuses the space).

    ``sample`` and ``mutate`` are jittable and vmappable (the space itself is a
    hashable static value); ``neighbours``, ``enumerate`` and ``canonical_hash``
    run on the host.
    """

    topology: ClassVar[str | None] = None

    name: str
    max_nodes: int
    op_names: tuple[str, ...]
    max_edges: int
    edge_labelled: bool = False

    @property
    def num_ops(self) -> int:
        return len(self.op_names)

    def op_id(self, name: str) -> int:
        try:
            return self.op_names.index(name)
        except ValueError:
            raise ArchError(
                f"unknown op {name!r} for space {self.name}; ops are {', '.join(self.op_names)}"
            ) from None

    def sample(self, key: jax.Array, n: int) -> Arch:
        """Draws ``n`` valid architectures (a population with leading axis n)."""
        return jax.vmap(self.sample_one)(jax.random.split(key, n))

    @abc.abstractmethod
    def sample_one(self, key: jax.Array) -> Arch:
        """Draws one valid architecture (jittable)."""

    @abc.abstractmethod
    def mutate(self, key: jax.Array, arch: Arch) -> Arch:
        """Returns a valid architecture one basic move away from ``arch`` (one arch)."""

    @abc.abstractmethod
    def neighbours(self, arch: Arch) -> Arch:
        """All architectures one basic move away from ``arch`` (host, a population)."""

    @abc.abstractmethod
    def enumerate(self) -> Arch:
        """Every valid architecture of the space as one population (host; small spaces)."""

    def validate(self, arch: Arch) -> None:
        """Raises ArchError naming the first problem of one architecture."""
        if arch.ops.ndim != 1:
            raise ArchError(
                f"expected one architecture; got a batch of shape {arch.batch_shape}"
            )
        validate(arch, num_ops=self.num_ops, max_nodes=self.max_nodes,
                     max_edges=self.max_edges)

    def validate_population(self, archs: Arch) -> None:
        """Validates every member of a population, naming the first bad index."""
        for index, arch in enumerate(unstack(archs)):
            try:
                self.validate(arch)
            except ArchError as error:
                raise ArchError(f"architecture {index}: {error}") from None

    def is_valid(self, arch: Arch) -> jax.Array:
        """Jittable validity of one architecture."""
        return is_valid(arch, self.num_ops, self.max_edges)

    def fixed_adj(self) -> np.ndarray:
        """(N, N) int8: the one adjacency of a space whose ``topology`` is "fixed"."""
        raise ValueError(f"space {self.name!r} has no fixed adjacency (its topology is "
                         f"{self.topology!r}, not 'fixed')")

    def canonical_hash(self, arch: Arch) -> str:
        """Key of an architecture's equivalence class (host): equal iff equivalent."""
        return canonical_hash(Arch(adj=np.asarray(arch.adj), ops=np.asarray(arch.ops)))


def pick(key: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Uniform index among the True entries of a flat or nd mask (jittable).

    Returns:
      (index into the flattened mask, whether any entry was True).
    """
    flat = mask.reshape(-1)
    scores = jnp.where(flat, jax.random.uniform(key, flat.shape), -1.0)
    return jnp.argmax(scores), flat.any()


def until_valid(key: jax.Array, propose, accept, fallback: Arch, max_tries: int) -> Arch:
    """Rejection loop: calls ``propose(key)`` until ``accept(arch)``; jittable.

    After ``max_tries`` failed proposals returns ``fallback`` so the loop always
    terminates under jit and vmap.
    """

    def cond(carry):
        _, _, accepted, tries = carry
        return (~accepted) & (tries < max_tries)

    def body(carry):
        key, _, _, tries = carry
        key, sub = jax.random.split(key)
        arch = propose(sub)
        return key, arch, accept(arch), tries + 1

    _, arch, accepted, _ = jax.lax.while_loop(
        cond, body, (key, fallback, jnp.asarray(False), jnp.asarray(0))
    )
    return jax.tree_util.tree_map(lambda a, b: jnp.where(accepted, a, b), arch, fallback)


def differs(a: Arch, b: Arch) -> jax.Array:
    return jnp.any(a.adj != b.adj) | jnp.any(a.ops != b.ops)


def unique_population(archs: list[Arch], num_nodes: int) -> Arch:
    """Stacks host architectures, dropping exact duplicates of the encoding."""
    seen: dict[bytes, Arch] = {}
    for arch in archs:
        a = Arch(adj=np.asarray(arch.adj, np.int8), ops=np.asarray(arch.ops, np.int32))
        seen.setdefault(a.adj.tobytes() + a.ops.tobytes(), a)
    if not seen:
        return Arch(adj=np.zeros((0, num_nodes, num_nodes), np.int8),
                        ops=np.zeros((0, num_nodes), np.int32))
    return stack(list(seen.values()))
