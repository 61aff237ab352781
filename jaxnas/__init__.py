"""jaxnas: functional neural architecture search in JAX.

Architectures are padded adjacency arrays plus op ids, so a whole population of
different networks trains as one compiled XLA program; pure ask/tell strategies
propose populations from the vectorised validation losses.
"""

__version__ = "0.1.0"

from jaxnas import arch, data, spaces, strategies  # noqa: E402
from jaxnas.arch import Arch, nb101_hash, nb101_prune  # noqa: E402
from jaxnas.search import SearchConfig, SearchResult, load, search  # noqa: E402
from jaxnas.train import TrainConfig, train_population  # noqa: E402

__all__ = [
    "Arch", "SearchConfig", "SearchResult", "TrainConfig", "__version__", "arch", "data",
    "load", "nb101_hash", "nb101_prune", "search", "spaces", "strategies", "train_population",
]
