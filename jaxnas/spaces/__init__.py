"""Search spaces: static configuration plus pure ``sample`` / ``mutate`` functions.

``get(name, **config)`` builds a registered space; ``names()`` lists them;
``count(space)`` counts its valid and unique architectures exactly. For writing a
space: ``until_valid`` (a jittable rejection loop) and ``pick`` (a uniform draw
among the True entries of a mask).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from jaxnas.arch import NBG_OPS
from jaxnas.spaces._base import Space, pick, until_valid
from jaxnas.spaces._chain import ChainSpace, chain_arch
from jaxnas.spaces._count import count
from jaxnas.spaces._dag import DagSpace, NasBench101Space
from jaxnas.spaces._nasbench201 import NasBench201Space
from jaxnas.spaces._nasbench_graph import NasBenchGraphSpace, nasbench_graph_arch

NB101_OPS = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
DENSE_CELL_OPS = ("dense-relu", "dense-tanh", "skip", "zero")
CONV_CELL_OPS = ("conv3-bn-relu", "conv5-bn-relu", "maxpool3", "skip")


def nasbench101(max_nodes: int = 7, max_edges: int = 9) -> Space:
    """NAS-Bench-101: at most 7 nodes and 9 edges, three ops on nodes."""
    return NasBench101Space("nasbench101", max_nodes, NB101_OPS, max_edges)


def nasbench201() -> Space:
    """NAS-Bench-201: a 4-node cell, 5 ops on each of its 6 edges."""
    return NasBench201Space()


def nasbench_graph(ops: Sequence[str] = NBG_OPS) -> Space:
    """NAS-Bench-Graph: 4 GNN op nodes, each reading the input or an earlier op node.

    Searched by table lookup (``jaxnas.tables``); it is not in the registry of
    trainable spaces because jaxnas has no GNN ops.
    """
    return NasBenchGraphSpace(op_names=tuple(ops))


def mlp(widths: Sequence[int] = (32, 64, 128),
        activations: Sequence[str] = ("relu", "tanh", "gelu"),
        max_layers: int = 4) -> Space:
    """Chains of 1..max_layers dense layers; each layer picks a width and an activation."""
    ops = tuple(f"dense{w}-{a}" for w in widths for a in activations)
    return ChainSpace("mlp", max_layers + 2, ops, max_layers + 1)


def dag(ops: Sequence[str] = DENSE_CELL_OPS, max_nodes: int = 8,
        max_edges: int | None = None, name: str = "dag") -> Space:
    """A generic DAG cell over the ops the user names (default: the dense cell)."""
    if max_nodes < 2:
        raise ValueError(f"max_nodes must be at least 2; got {max_nodes}")
    if not ops:
        raise ValueError("a dag space needs at least one op")
    limit = max_nodes * (max_nodes - 1) // 2
    return DagSpace(name, max_nodes, tuple(ops), limit if max_edges is None else max_edges)


def conv(ops: Sequence[str] = CONV_CELL_OPS, max_nodes: int = 6, max_edges: int = 8) -> Space:
    """A convolutional DAG cell for sequences (MNIST-1D) and images: NAS-Bench-101's
    sampling rule over conv-norm-relu with kernels 3 and 5, max pooling and skip."""
    return dag(ops, max_nodes, max_edges, name="conv")


_REGISTRY: dict[str, Callable[..., Space]] = {
    "nasbench101": nasbench101,
    "nasbench201": nasbench201,
    "mlp": mlp,
    "dag": dag,
    "conv": conv,
}


def names() -> list[str]:
    """Names of the registered spaces."""
    return list(_REGISTRY)


def register(name: str, factory: Callable[..., Space]) -> None:
    """Adds (or replaces) the space ``name``: ``factory(**config) -> Space``.

    The factory's space should carry ``name`` as its ``name``, so that run directories
    and architecture files that name it find it again.
    """
    if not callable(factory):
        raise TypeError(f"the factory of space {name!r} must be callable")
    _REGISTRY[name] = factory


def get(name: str, **config) -> Space:
    """Builds the space registered under ``name`` with optional configuration."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown space {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name](**config)


__all__ = [
    "ChainSpace", "DagSpace", "NasBench101Space", "NasBench201Space", "NasBenchGraphSpace",
    "Space", "chain_arch", "conv", "count", "dag", "get", "mlp", "nasbench101", "nasbench201",
    "nasbench_graph", "nasbench_graph_arch", "names", "pick", "register", "until_valid",
    "NB101_OPS", "DENSE_CELL_OPS", "CONV_CELL_OPS",
]
