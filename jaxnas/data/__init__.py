"""Built-in and user datasets as fixed-shape, split and normalised numpy arrays.

Imports numpy only; scikit-learn and mnist1d are imported by the loaders that need them.
"""

from jaxnas.data._checks import DataError
from jaxnas.data._datasets import Dataset, from_arrays, load, names, register

__all__ = ["DataError", "Dataset", "from_arrays", "load", "names", "register"]
