"""The `Dataset` container, user arrays and files, and the built-in datasets."""

import dataclasses
import os
import random
import zipfile
import zlib
from collections.abc import Callable

import numpy as np

from jaxnas.data import _checks, _hf, _split
from jaxnas.data._checks import DataError

_NPY_MAGIC = b"\x93NUMPY"

# (x, y, x_test, y_test) before splitting; x_test and y_test are None without a fixed test set.
_RawArrays = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train / val / test splits as fixed-shape numpy arrays.

    Features are float32 normalised with the training split's per-feature statistics; labels
    are int32 in 0..num_classes-1.
    """

    name: str
    x_train: np.ndarray  # (n_train, *input_shape) float32
    y_train: np.ndarray  # (n_train,) int32
    x_val: np.ndarray  # (n_val, *input_shape) float32
    y_val: np.ndarray  # (n_val,) int32
    x_test: np.ndarray  # (n_test, *input_shape) float32
    y_test: np.ndarray  # (n_test,) int32
    num_classes: int
    input_shape: tuple[int, ...]  # per example, e.g. (8, 8, 1)
    # x = (raw - mean) / std; None when the arrays were not normalised by this module.
    mean: np.ndarray | None = None  # (*input_shape,) float32
    std: np.ndarray | None = None  # (*input_shape,) float32, 1 for constant features

    def __post_init__(self):
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.shape[1:] != tuple(self.input_shape):
                raise DataError(
                    f"x_{split} examples have shape {x.shape[1:]} but input_shape is "
                    f"{tuple(self.input_shape)}"
                )
            if y.shape != x.shape[:1]:
                raise DataError(f"y_{split} has shape {y.shape} but x_{split} has {len(x)} rows")

    @property
    def x_trainval(self) -> np.ndarray:
        """(n_train + n_val, *input_shape) train then val features, for a final retrain."""
        return np.concatenate([self.x_train, self.x_val])

    @property
    def y_trainval(self) -> np.ndarray:
        """(n_train + n_val,) train then val labels, aligned with `x_trainval`."""
        return np.concatenate([self.y_train, self.y_val])

    @property
    def sizes(self) -> dict[str, int]:
        """Rows per split: {"train": n_train, "val": n_val, "test": n_test}."""
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def __repr__(self) -> str:
        sizes = ", ".join(f"{split}={size}" for split, size in self.sizes.items())
        return (
            f"Dataset(name={self.name!r}, {sizes}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes})"
        )


def from_arrays(
    x,
    y,
    *,
    x_test=None,
    y_test=None,
    name: str = "arrays",
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> Dataset:
    """Splits and normalises in-memory data.

    Labels must be integers 0..C-1 where C = max(y) + 1, and every class must occur in `y`
    (float labels are accepted when they are whole numbers). Splits are stratified by class and
    deterministic in `seed`; every class appears in every split. Mean and std come from the
    training split only and are applied to all splits.

    Args:
      x: (n, *input_shape) real features, finite; at least 2 dims (rows, features).
      y: (n,) labels.
      x_test: optional (n_test, *input_shape) fixed test features; then validation is carved
        out of `x` and `test_fraction` is unused.
      y_test: (n_test,) labels in 0..C-1; given exactly when `x_test` is.
      name: stored as `Dataset.name`.
      seed: non-negative int seeding `np.random.default_rng`.
      val_fraction: share of each class (of `x`) held out for validation, in (0, 1).
      test_fraction: share of each class held out for testing when `x_test` is None, in (0, 1).

    Returns:
      The `Dataset`.

    Raises:
      DataError: with one line naming the problem, for any malformed input.
    """
    seed, val_fraction, test_fraction = _checks.check_split_settings(
        seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
    )
    if (x_test is None) != (y_test is None):
        given, missing = ("x_test", "y_test") if y_test is None else ("y_test", "x_test")
        raise DataError(f"{given} was given without {missing}")

    x = _checks.as_features("x", x)
    y = _checks.as_labels("y", y)
    _checks.check_rows("x", x, "y", y)
    num_classes = _checks.count_classes("y", y)
    y = y.astype(np.int64)
    rng = np.random.default_rng(seed)

    if x_test is None:
        if val_fraction + test_fraction >= 1.0:
            raise DataError(
                f"val_fraction + test_fraction must be below 1; got {val_fraction} + "
                f"{test_fraction}"
            )
        test_rows, val_rows, train_rows = _split.stratified_split(
            rng, y, (test_fraction, val_fraction)
        )
        x_test, y_test = x[test_rows], y[test_rows]
    else:
        x_test, y_test = _checks.as_test_split(x_test, y_test, x.shape[1:], num_classes)
        val_rows, train_rows = _split.stratified_split(rng, y, (val_fraction,))

    mean, std = _split.feature_stats(x[train_rows])
    return Dataset(
        name=name,
        x_train=_split.normalise(x[train_rows], mean, std),
        y_train=y[train_rows].astype(np.int32),
        x_val=_split.normalise(x[val_rows], mean, std),
        y_val=y[val_rows].astype(np.int32),
        x_test=_split.normalise(x_test, mean, std),
        y_test=y_test.astype(np.int32),
        num_classes=num_classes,
        input_shape=tuple(int(size) for size in x.shape[1:]),
        mean=mean.astype(np.float32),
        std=std.astype(np.float32),
    )


def load(
    name_or_path: str | os.PathLike,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> Dataset:
    """Loads a built-in dataset by name, or a user's .npz file, split and normalised.

    Built-ins (see `names()`), generated or read locally, never downloaded:
      "digits": scikit-learn's 1,797 handwritten 8x8 digits, input_shape (8, 8, 1), 10 classes.
      "mnist1d": MNIST-1D made by the `mnist1d` package with its default arguments: 4,000
        train and 1,000 fixed test sequences, input_shape (40, 1), 10 classes.

    An .npz file holds arrays `x` (n, *input_shape) and `y` (n,), optionally `x_test` and
    `y_test`; other arrays are ignored. See `from_arrays` for the label rules and splitting.

    "hf:NAME[:CONFIG]" is a Hugging Face dataset of the Hub (downloaded once into Hugging
    Face's cache), "hf:DIRECTORY" one saved with `save_to_disk` (read offline); a suffix
    "?input=COL&label=COL" names its columns, else they are found from its features
    (needs the `hf` extra; see `jaxnas.data._hf`).

    Args:
      name_or_path: a built-in name, a path ending in ".npz" or "hf:...".
      seed: non-negative int; the same seed gives bit-identical splits.
      val_fraction: share of each class held out for validation, in (0, 1).
      test_fraction: share of each class held out for testing when the source has no fixed
        test set, in (0, 1).

    Returns:
      The `Dataset`.

    Raises:
      DataError: one line naming the problem (unknown name, unreadable file, bad arrays).
    """
    source = os.fspath(name_or_path)
    split_settings = dict(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    if source.startswith(_hf.PREFIX):
        return _hf.load_hf(source, **split_settings)
    if source in _BUILTINS:
        x, y, x_test, y_test = _BUILTINS[source]()
        return from_arrays(x, y, x_test=x_test, y_test=y_test, name=source, **split_settings)
    if not source.endswith(".npz"):
        if os.path.exists(source) or os.sep in source or os.path.splitext(source)[1]:
            raise DataError(f"{source} is not an .npz file")
        raise DataError(
            f"unknown dataset {source!r}; built-in names are {', '.join(names())}, "
            "or pass a path to an .npz file"
        )
    # Settings first, so that problems with the file's arrays alone carry its path.
    _checks.check_split_settings(**split_settings)
    x, y, x_test, y_test = _read_npz(source)
    name = os.path.splitext(os.path.basename(source))[0]
    try:
        return from_arrays(x, y, x_test=x_test, y_test=y_test, name=name, **split_settings)
    except DataError as err:
        raise DataError(f"{source}: {err}") from None


def names() -> tuple[str, ...]:
    """The names of the built-in and registered datasets, e.g. ("digits", "mnist1d")."""
    return tuple(_BUILTINS)


def register(name: str, loader: Callable[[], tuple]) -> None:
    """Adds (or replaces) the dataset ``name``, which ``load(name)`` then reads.

    Args:
      name: the name to load it by (not ending in ".npz").
      loader: ``loader() -> (x, y)`` or ``(x, y, x_test, y_test)``, numpy arrays as for
        ``from_arrays``; called by every ``load``, which splits and normalises.
    """
    if not callable(loader):
        raise TypeError(f"the loader of dataset {name!r} must be callable")
    if name.endswith(".npz"):
        raise ValueError(f"a dataset name must not end in .npz; got {name!r}")

    def raw() -> _RawArrays:
        arrays = tuple(loader())
        if len(arrays) not in (2, 4):
            raise DataError(f"the loader of dataset {name!r} must return (x, y) or "
                            f"(x, y, x_test, y_test); got {len(arrays)} arrays")
        return arrays if len(arrays) == 4 else (*arrays, None, None)

    _BUILTINS[name] = raw


def _read_npz(path: str) -> _RawArrays:
    if os.path.isdir(path):
        raise DataError(f"{path} is a directory, not an .npz file")
    if not os.path.exists(path):
        raise DataError(f"{path} does not exist")
    try:
        with open(path, "rb") as file:
            magic = file.read(len(_NPY_MAGIC))
        if magic == _NPY_MAGIC:
            raise DataError(f"{path} holds a single array (.npy format), not an .npz archive")
        if not zipfile.is_zipfile(path):
            raise DataError(f"{path} is not a readable .npz file: not a zip archive")
        arrays = {}
        with np.load(path, allow_pickle=False) as archive:
            for key in archive.files:
                arrays[key] = _read_member(path, archive, key)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{path} is not a readable .npz file: {reason}") from None
    for required in ("x", "y"):
        if required not in arrays:
            found = ", ".join(repr(key) for key in sorted(arrays)) or "none"
            raise DataError(f"{path} has no array named {required!r} (arrays found: {found})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        given, missing = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise DataError(f"{path} has an array named {given!r} but none named {missing!r}")
    return arrays["x"], arrays["y"], arrays.get("x_test"), arrays.get("y_test")


def _read_member(path: str, archive, key: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as err:
        # Object arrays need unpickling, which could run code from the file: never do it.
        reason = (
            "it holds Python objects, which are never unpickled"
            if "allow_pickle" in str(err)
            else str(err).splitlines()[0]
        )
        raise DataError(f"{path} is not a readable .npz file: array {key!r}: {reason}") from None


def _digits() -> _RawArrays:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            "the 'digits' dataset needs scikit-learn: pip install 'jaxnas[datasets]'"
        ) from None
    # Bundled with scikit-learn; nothing is downloaded.
    digits = load_digits()
    return digits.images[..., None], digits.target, None, None


def _mnist1d() -> _RawArrays:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise ImportError(
            "the 'mnist1d' dataset needs the mnist1d package: pip install 'jaxnas[datasets]'"
        ) from None
    # make_dataset generates offline but reseeds the global `random` and `np.random` states;
    # restore them so loading leaves no trace on the caller's randomness.
    python_state, numpy_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)  # noqa: NPY002
    return data["x"][..., None], data["y"], data["x_test"][..., None], data["y_test"]


_BUILTINS: dict[str, Callable[[], _RawArrays]] = {"digits": _digits, "mnist1d": _mnist1d}
