"""Jittable operations on populations: (P,) architectures stacked on a leading axis."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnas.arch import Arch


def take(archs: Arch, index: jax.Array) -> Arch:
    """Gathers members of a population: ``index`` of any shape."""
    return jax.tree_util.tree_map(lambda leaf: leaf[index], archs)


def where(condition: jax.Array, a: Arch, b: Arch) -> Arch:
    """Per-member choice between two populations; condition (P,) bool."""
    return jax.tree_util.tree_map(
        lambda x, y: jnp.where(condition.reshape(condition.shape + (1,) * (x.ndim - 1)), x, y),
        a, b)


def concat(a: Arch, b: Arch) -> Arch:
    """The members of ``a``, then those of ``b``."""
    return jax.tree_util.tree_map(lambda x, y: jnp.concatenate([x, y]), a, b)


def broadcast(arch: Arch, n: int) -> Arch:
    """n copies of one architecture as a population."""
    return jax.tree_util.tree_map(lambda leaf: jnp.broadcast_to(leaf, (n,) + leaf.shape), arch)


def set_rows(archs: Arch, rows: jax.Array, new: Arch) -> Arch:
    """``archs`` with its members at ``rows`` (K,) replaced by the K members of ``new``."""
    return jax.tree_util.tree_map(lambda old, value: old.at[rows].set(value), archs, new)


def same(a: Arch, b: Arch) -> jax.Array:
    """(P, Q) bool: exact encoding equality of every member of a with every member of b."""
    ops = jnp.all(a.ops[:, None, :] == b.ops[None, :, :], -1)
    adj = jnp.all(a.adj[:, None, :, :] == b.adj[None, :, :, :], (-2, -1))
    return ops & adj


def repeats(archs: Arch) -> jax.Array:
    """(P,) bool: members whose exact encoding already occurs at a lower index."""
    equal = same(archs, archs)
    index = jnp.arange(equal.shape[0])
    return jnp.any(equal & (index[None, :] < index[:, None]), 1)


def top_unique(scores: jax.Array, archs: Arch, k: int) -> jax.Array:
    """(k,) indices of the k highest scores among distinct encodings.

    Only the ``4k`` highest-scored members are compared with each other, which
    keeps large pools cheap; if fewer than k distinct ones remain, repeats fill up.
    """
    shortlist = min(scores.shape[0], 4 * k)
    _, order = jax.lax.top_k(scores, shortlist)
    repeated = repeats(take(archs, order))
    rescored = jnp.where(repeated, -jnp.inf, scores[order])
    _, chosen = jax.lax.top_k(rescored, k)
    return order[chosen]
