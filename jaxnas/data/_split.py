"""Stratified splitting and train-only normalisation."""

import numpy as np

from jaxnas.data._checks import DataError

# Features whose training std is below this are only centred, not scaled: dividing by a
# near-zero std would blow up any val/test value that differs from the training constant.
STD_FLOOR = 1e-6


def stratified_split(
    rng: np.random.Generator, y: np.ndarray, fractions: tuple[float, ...]
) -> tuple[np.ndarray, ...]:
    """Splits row indices class by class.

    Args:
      rng: the generator that shuffles; the only source of randomness.
      y: (n,) int labels with every class 0..C-1 present.
      fractions: the share of each class for each held-out part, e.g. (test, val).

    Returns:
      One shuffled index array per held-out part, then the rest (training) last. Every class
      puts at least one row into every part, so each class needs len(fractions) + 1 rows.
    """
    num_parts = len(fractions) + 1
    parts: list[list[np.ndarray]] = [[] for _ in range(num_parts)]
    for label in range(int(y.max()) + 1):
        rows = np.flatnonzero(y == label)
        if rows.size < num_parts:
            noun = "sample" if rows.size == 1 else "samples"
            raise DataError(
                f"class {label} has only {rows.size} {noun}; need at least {num_parts} "
                f"to split into {_describe(num_parts)}"
            )
        rows = rng.permutation(rows)
        start = 0
        for part, fraction in enumerate(fractions):
            # Round to nearest, but leave one row for each later part and for training.
            remaining_parts = num_parts - part - 1
            count = int(np.clip(np.floor(rows.size * fraction + 0.5), 1,
                                rows.size - start - remaining_parts))
            parts[part].append(rows[start:start + count])
            start += count
        parts[-1].append(rows[start:])
    return tuple(rng.permutation(np.concatenate(part)) for part in parts)


def feature_stats(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and divisor over the training rows.

    Args:
      x_train: (n_train, *input_shape) raw features.

    Returns:
      `(mean, std)`, each (*input_shape,) float64; `std` is 1 where the training std is below
      `STD_FLOOR`.
    """
    mean = x_train.mean(axis=0, dtype=np.float64)
    std = x_train.std(axis=0, dtype=np.float64)
    return mean, np.where(std < STD_FLOOR, 1.0, std)


def normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Returns `(x - mean) / std` as float32, computed in float64."""
    return ((x.astype(np.float64) - mean) / std).astype(np.float32)


def _describe(num_parts: int) -> str:
    return "train, val and test" if num_parts == 3 else "train and val"
