"""Input checks for user data; each failure is one `DataError` line naming the problem."""

import numbers

import numpy as np


class DataError(ValueError):
    """Raised for malformed datasets, files and split settings; the message is one line."""


def check_split_settings(
    *, seed: object, val_fraction: object, test_fraction: object
) -> tuple[int, float, float]:
    """Returns `seed` as an int >= 0 and each fraction as a float in the open interval (0, 1)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise DataError(f"seed must be a non-negative integer; got {seed!r}")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise DataError(f"{name} must be a number in (0, 1); got {value!r}")
        if not 0.0 < float(value) < 1.0:
            raise DataError(f"{name} must be in (0, 1); got {value!r}")
    return int(seed), float(val_fraction), float(test_fraction)


def as_features(name: str, x: object) -> np.ndarray:
    """Checks that `x` is a finite numeric array of shape (rows, *example_shape)."""
    try:
        x = np.asarray(x)
    except ValueError as err:
        raise DataError(f"{name} is not a rectangular array: {_first_line(err)}") from None
    if x.dtype.kind not in "biuf":
        raise DataError(f"{name} must hold real numbers; got dtype {x.dtype}")
    if x.ndim < 2:
        raise DataError(
            f"{name} must have at least 2 dims (rows, features...); got shape {x.shape}"
        )
    if x.shape[0] == 0:
        raise DataError(f"{name} has no rows (shape {x.shape})")
    if any(size == 0 for size in x.shape[1:]):
        raise DataError(f"{name} has no features per row (shape {x.shape})")
    if x.dtype.kind == "f":
        num_bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        if num_bad:
            raise DataError(f"{name} contains NaN or inf ({num_bad} values)")
    return x


def as_labels(name: str, y: object) -> np.ndarray:
    """Checks that `y` is a 1-D array of non-negative integers and returns it as int64.

    Float arrays are accepted when every value is a whole number (e.g. labels saved as 1.0).
    """
    try:
        y = np.asarray(y)
    except ValueError as err:
        raise DataError(f"{name} is not a rectangular array: {_first_line(err)}") from None
    if y.ndim != 1:
        raise DataError(f"{name} must be 1-D with one label per row; got shape {y.shape}")
    if y.dtype.kind == "f":
        not_whole = ~np.isfinite(y) | (y != np.round(y))
        if not_whole.any():
            example = y[np.argmax(not_whole)]
            raise DataError(
                f"labels in {name} must be integers; got {y.dtype} values such as {example}"
            )
    elif y.dtype.kind not in "biu":
        raise DataError(f"labels in {name} must be integers; got dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise DataError(
            f"label {_as_number(y.min())} in {name} is negative; labels must be 0..C-1"
        )
    return y


def count_classes(name: str, y: np.ndarray) -> int:
    """Returns C = max(y) + 1 after checking that every class 0..C-1 occurs in `y`."""
    # np.unique rather than bincount: a stray huge label must not allocate a huge array.
    classes = np.unique(y)
    expected = np.arange(classes.size)
    if not np.array_equal(classes, expected):
        missing = int(expected[np.argmax(classes != expected)])
        raise DataError(
            f"labels in {name} must cover 0..C-1 with every class present; class {missing} "
            f"has no samples but the largest label is {_as_number(classes[-1])}"
        )
    if classes.size < 2:
        raise DataError(f"labels in {name} hold a single class; classification needs at "
                        "least two")
    return int(classes.size)


def check_label_range(name: str, y: np.ndarray, num_classes: int, source: str) -> None:
    """Checks that labels `y` lie in 0..num_classes-1, the classes found in `source`."""
    if y.size and y.max() >= num_classes:
        raise DataError(
            f"label {_as_number(y.max())} in {name} is out of range; "
            f"{source} has classes 0..{num_classes - 1}"
        )


def check_rows(x_name: str, x: np.ndarray, y_name: str, y: np.ndarray) -> None:
    """Checks that features and labels have the same number of rows."""
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{x_name} has {x.shape[0]} rows but {y_name} has {y.shape[0]}")


def _as_number(value: np.generic) -> int | float:
    number = value.item()
    return int(number) if float(number).is_integer() else number


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def as_test_split(x_test, y_test, input_shape: tuple[int, ...],
                  num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A given test split as arrays, checked against the examples' shape and classes of x, y."""
    x_test = as_features("x_test", x_test)
    y_test = as_labels("y_test", y_test)
    check_rows("x_test", x_test, "y_test", y_test)
    if x_test.shape[1:] != input_shape:
        raise DataError(
            f"x_test examples have shape {x_test.shape[1:]} but x examples have shape "
            f"{input_shape}"
        )
    check_label_range("y_test", y_test, num_classes, "y")
    return x_test, y_test
