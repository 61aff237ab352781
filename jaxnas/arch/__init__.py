"""Architecture encoding, validation, host-side graph functions and benchmark interop."""

from jaxnas.arch._encoding import (
    INPUT,
    OUTPUT,
    PAD,
    Arch,
    ArchError,
    is_valid,
    live_nodes,
    make,
    num_edges,
    prune,
    reaches_output,
    stack,
    unstack,
    validate,
)
from jaxnas.arch._graph import canonical_hash, is_isomorphic, live_mask, prune_numpy
from jaxnas.arch._json import describe, from_json, population_from_json, population_to_json, to_json
from jaxnas.arch._nasbench101 import (
    NB101_OPS,
    nb101_from_arch,
    nb101_hash,
    nb101_prune,
    nb101_to_arch,
)
from jaxnas.arch._nasbench201 import (
    NB201_ADJ,
    NB201_EDGES,
    NB201_OPS,
    nb201_from_str,
    nb201_to_str,
    nb201_unique_str,
)
from jaxnas.arch._nasbench_graph import (
    NBG_ALL_LINKS,
    NBG_LINKS,
    NBG_OPS,
    nbg_from_arch,
    nbg_key,
    nbg_link_index,
    nbg_to_arch,
)

__all__ = [
    "INPUT", "OUTPUT", "PAD", "Arch", "ArchError", "is_valid", "live_nodes", "make",
    "num_edges", "prune", "reaches_output", "stack", "unstack", "validate",
    "canonical_hash", "is_isomorphic", "live_mask", "prune_numpy",
    "describe", "from_json", "population_from_json", "population_to_json", "to_json",
    "NB101_OPS", "nb101_from_arch", "nb101_hash", "nb101_prune", "nb101_to_arch",
    "NB201_ADJ", "NB201_EDGES", "NB201_OPS", "nb201_from_str", "nb201_to_str", "nb201_unique_str",
    "NBG_ALL_LINKS", "NBG_LINKS", "NBG_OPS", "nbg_from_arch", "nbg_key", "nbg_link_index",
    "nbg_to_arch",
]
