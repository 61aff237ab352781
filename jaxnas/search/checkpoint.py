"""A search's snapshot and its encoding: every array keyed by its field path.

A ``Snapshot`` is what a ``Run`` gives (``snapshot()``) and takes (``restore()``)
to continue a search; ``RunDir`` writes it into the checkpoint. Pytrees (the
strategy state, a candidate's trained parameters) are stored as a flat dict from
field path (``jax.tree_util.keystr``: ``.population.adj``, ``['params']['w']``)
to array, so a restore matches fields by name and names the first that does not
fit. Format 1 (jaxnas 0.1.0 before the run directory had an owner) numbered the
leaves instead; it is still read, by position.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from jaxnas.search.config import Record, SearchConfig, SearchError

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class CheckpointMismatch(Exception):
    """A stored pytree does not fit the one it should restore; the message names the
    field."""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Everything a search continues from.

    Attributes:
      generation: generations done.
      elapsed: search seconds spent.
      key: the run's next PRNG key.
      strategy: the strategy's state pytree.
      history: every evaluation so far, in log order.
    """

    generation: int
    elapsed: float
    key: jax.Array
    strategy: Any
    history: tuple[Record, ...] = ()


def _is_key(leaf) -> bool:
    return jnp.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key)


def _plain(leaf) -> np.ndarray:
    return np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)


def tree_to_paths(tree) -> dict[str, np.ndarray]:
    """The leaves of ``tree`` keyed by field path (PRNG keys as their key data)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): _plain(leaf) for path, leaf in leaves}


def tree_from_paths(like, stored: dict, *, fixed_shapes: bool = True, as_jax: bool = True):
    """Rebuilds a pytree shaped like ``like`` from ``tree_to_paths``'s dict.

    Host-side strategies (not jittable) may hold arrays whose length grows during a
    search: with ``fixed_shapes=False`` shapes are not compared.

    Raises:
      CheckpointMismatch: naming the first missing or unexpected field, or a field of
        another shape or dtype.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(like)
    names = [jax.tree_util.keystr(path) for path, _ in leaves]
    missing = [name for name in names if name not in stored]
    if missing:
        raise CheckpointMismatch(f"field {missing[0]} is missing")
    unexpected = sorted(set(stored) - set(names))
    if unexpected:
        raise CheckpointMismatch(f"field {unexpected[0]} is not in this state")
    restored = [_restore_leaf(name, ref, stored[name], fixed_shapes, as_jax)
                for name, (_, ref) in zip(names, leaves, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, restored)


def _spec(ref) -> jax.ShapeDtypeStruct:
    """The shape and dtype a leaf is stored with (an array or a ``ShapeDtypeStruct``)."""
    if _is_key(ref):
        return jax.eval_shape(jax.random.key_data, ref)
    return jax.ShapeDtypeStruct(np.shape(ref), getattr(ref, "dtype", None)
                                or np.asarray(ref).dtype)


def _restore_leaf(name: str, ref, value, fixed_shapes: bool, as_jax: bool):
    value = np.asarray(value)
    expected = _spec(ref)
    if fixed_shapes and value.shape != expected.shape:
        raise CheckpointMismatch(f"field {name} has shape {value.shape}; expected "
                                 f"{expected.shape}")
    if value.dtype != expected.dtype:
        raise CheckpointMismatch(f"field {name} has dtype {value.dtype}; expected "
                                 f"{expected.dtype}")
    if _is_key(ref):
        return jax.random.wrap_key_data(jnp.asarray(value))
    return jnp.asarray(value) if as_jax else value


def _tree_from_positions(like, stored: dict, fixed_shapes: bool):
    """Format 1: numbered leaves in tree order, compared by count, shape and dtype."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    if len(stored) != len(leaves):
        raise CheckpointMismatch(f"it holds {len(stored)} strategy arrays; this strategy "
                                 f"has {len(leaves)}")
    restored = [_restore_leaf(f"#{i}", ref, stored[str(i)], fixed_shapes, fixed_shapes)
                for i, ref in enumerate(leaves)]
    return jax.tree_util.tree_unflatten(treedef, restored)


def encode(snapshot: Snapshot, config: SearchConfig, log_bytes: int) -> bytes:
    """The checkpoint bytes of ``snapshot`` after ``log_bytes`` bytes of the log."""
    return serialization.msgpack_serialize({
        "version": FORMAT_VERSION,
        "config": json.dumps(dataclasses.asdict(config)),
        "generation": snapshot.generation,
        "elapsed": snapshot.elapsed,
        "log_bytes": log_bytes,
        "log_records": len(snapshot.history),
        "key": np.asarray(jax.random.key_data(snapshot.key)),
        "strategy": tree_to_paths(snapshot.strategy),
    })


@dataclasses.dataclass(frozen=True)
class Header:
    """A checkpoint's fields but the strategy state, checked on reading."""

    version: int
    config: SearchConfig
    generation: int
    elapsed: float
    log_bytes: int
    payload: dict


def decode_header(blob: bytes) -> Header:
    """Reads a checkpoint's fields.

    Raises:
      ValueError: one line saying what is wrong (the caller names the file).
    """
    try:
        payload = serialization.msgpack_restore(blob)
    except Exception as error:  # msgpack raises several types for damaged input
        raise ValueError(f"is not a checkpoint ({type(error).__name__})") from None
    if not isinstance(payload, dict) or "version" not in payload:
        raise ValueError("is not a checkpoint (no format version)")
    version = payload["version"]
    if version not in READABLE_VERSIONS:
        raise ValueError(f"has format version {version}; this jaxnas reads versions "
                         f"{', '.join(map(str, READABLE_VERSIONS))} (a newer jaxnas wrote it?)")
    missing = [k for k in ("config", "generation", "elapsed", "log_bytes", "key", "strategy")
               if k not in payload]
    if missing:
        raise ValueError(f"is damaged (no {missing[0]})")
    try:
        config = SearchConfig(**json.loads(payload["config"]))
        config.check()
    except (TypeError, ValueError, SearchError) as error:
        raise ValueError(f"holds a damaged configuration ({_first_line(error)})") from None
    return Header(version=int(version), config=config, generation=int(payload["generation"]),
                  elapsed=float(payload["elapsed"]), log_bytes=int(payload["log_bytes"]),
                  payload=payload)


def decode_snapshot(header: Header, like: Snapshot, fixed_shapes: bool) -> Snapshot:
    """The snapshot of a checkpoint, its strategy state shaped like ``like``'s (the
    history is left empty: it is the log's).

    Raises:
      CheckpointMismatch: naming the field that does not fit.
    """
    stored = header.payload["strategy"]
    if header.version == 1:
        strategy = _tree_from_positions(like.strategy, stored, fixed_shapes)
    else:
        strategy = tree_from_paths(like.strategy, stored, fixed_shapes=fixed_shapes,
                                   as_jax=fixed_shapes)
    key = jax.random.wrap_key_data(jnp.asarray(header.payload["key"]))
    return Snapshot(generation=header.generation, elapsed=header.elapsed, key=key,
                    strategy=strategy)


def params_to_bytes(params) -> bytes:
    """A parameter pytree as msgpack, its arrays keyed by field path."""
    return serialization.msgpack_serialize(tree_to_paths(params))


def params_from_bytes(blob: bytes, like):
    """The pytree ``params_to_bytes`` wrote (or format 1's numbered leaves), shaped like
    ``like`` (leading axes may differ)."""
    stored = serialization.msgpack_restore(blob)
    leaves, treedef = jax.tree_util.tree_flatten(like)
    if set(stored) == {str(i) for i in range(len(leaves))}:
        return jax.tree_util.tree_unflatten(treedef, [stored[str(i)] for i in range(len(leaves))])
    return tree_from_paths(like, stored, fixed_shapes=False, as_jax=False)


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
