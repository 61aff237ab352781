"""Hugging Face ``datasets`` as jaxnas datasets: ``load("hf:NAME[:CONFIG][?input=COL&label=COL]")``.

``NAME`` is a directory written by ``Dataset.save_to_disk`` or
``DatasetDict.save_to_disk`` (read offline with ``load_from_disk``), else a dataset of
the Hugging Face Hub, which ``load_dataset(NAME, CONFIG)`` downloads once into
Hugging Face's own cache (``~/.cache/huggingface``, or ``$HF_HOME``) and reads from
there afterwards.

Columns are found from the dataset's ``features``: the label is its one ``ClassLabel``
column (else an integer column named "label" or "labels"); the input is its one
``Image``, ``ArrayND`` or list-of-numbers column, else all its other numeric columns
side by side. ``?input=COL&label=COL`` names them instead (``input`` may list several
numeric columns, comma-separated). The splits "train", "validation" and "test" are
used where they exist; a missing validation or test split is carved out of "train"
as for ``from_arrays``.
"""

from __future__ import annotations

import os
import urllib.parse

import numpy as np

from jaxnas.data import _checks, _split
from jaxnas.data._checks import DataError

PREFIX = "hf:"
_VALIDATION = ("validation", "valid", "val", "dev")
_NUMBER_TYPES = ("bool", "int", "uint", "float")


def load_hf(source: str, *, seed: int, val_fraction: float, test_fraction: float):
    """The ``Dataset`` of ``source`` ("hf:..."; the module docstring)."""
    from jaxnas.data._datasets import Dataset

    seed, val_fraction, test_fraction = _checks.check_split_settings(
        seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    name, config, columns = _parse(source)
    splits = _read(name, config)
    train = splits.get("train")
    if train is None:
        raise DataError(f"{source} has no 'train' split (splits: {', '.join(splits)})")
    input_columns, label = _columns(source, train.features, columns)
    parts = {}
    for part, names in (("train", ("train",)), ("val", _VALIDATION), ("test", ("test",))):
        split = next((splits[n] for n in names if n in splits), None)
        if split is not None:
            parts[part] = _arrays(source, split, input_columns, label)
    x, y = parts["train"]
    num_classes = _checks.count_classes(f"{source} label column {label!r}", y)
    rng = np.random.default_rng(seed)
    missing = [part for part in ("test", "val") if part not in parts]
    fractions = {"test": test_fraction, "val": val_fraction}
    if sum(fractions[part] for part in missing) >= 1.0:
        raise DataError(f"val_fraction + test_fraction must be below 1; got {val_fraction} + "
                        f"{test_fraction}")
    *carved, train_rows = _split.stratified_split(
        rng, y, tuple(fractions[part] for part in missing))
    for part, rows in zip(missing, carved, strict=True):
        parts[part] = (x[rows], y[rows])
    parts["train"] = (x[train_rows], y[train_rows])
    for part in ("val", "test"):
        _checks.check_label_range(f"{source} {part} labels", parts[part][1], num_classes,
                                  "the train split")
    mean, std = _split.feature_stats(parts["train"][0])
    arrays = {}
    for part, (features, labels) in parts.items():
        arrays[f"x_{part}"] = _split.normalise(features, mean, std)
        arrays[f"y_{part}"] = labels.astype(np.int32)
    return Dataset(name=source, num_classes=num_classes, input_shape=tuple(x.shape[1:]),
                   mean=mean.astype(np.float32), std=std.astype(np.float32), **arrays)


def _parse(source: str) -> tuple[str, str | None, dict[str, str]]:
    """(name or directory, config or None, {"input": ..., "label": ...} as given)."""
    spec, _, query = source[len(PREFIX):].partition("?")
    columns = {}
    for key, values in urllib.parse.parse_qs(query, keep_blank_values=True).items():
        if key not in ("input", "label"):
            raise DataError(f"{source}: unknown option {key!r}; use ?input=COL&label=COL")
        columns[key] = values[-1]
    if not spec:
        raise DataError(f"{source} names no dataset; use hf:NAME[:CONFIG] or hf:DIRECTORY")
    if os.path.isdir(spec):
        return spec, None, columns
    name, _, config = spec.partition(":")
    return name, config or None, columns


def _read(name: str, config: str | None) -> dict:
    """The dataset's splits by name, each a ``datasets.Dataset``."""
    try:
        import datasets
    except ImportError:
        raise DataError("hf: datasets need the Hugging Face datasets package: "
                        "pip install 'jaxnas[hf]'") from None
    try:
        if os.path.isdir(name):
            loaded = datasets.load_from_disk(name)
        else:
            loaded = datasets.load_dataset(name, config)
    except Exception as error:  # noqa: BLE001 - any failure of the library is one line here
        what = "directory" if os.path.isdir(name) else "Hugging Face dataset"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"cannot load the {what} {name!r}"
                        f"{f' (config {config!r})' if config else ''}: {reason}") from None
    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}
    return dict(loaded)


def _columns(source: str, features, given: dict[str, str]) -> tuple[list[str], str]:
    """The input columns and the label column of a split with these ``features``."""
    import datasets

    for column in given.get("input", "").split(",") + [given.get("label", "")]:
        if column and column not in features:
            raise DataError(f"{source} has no column {column!r}; columns: "
                            f"{', '.join(features)}")
    label = given.get("label") or _find_label(source, features)
    if not _is_number(features[label]) and not isinstance(features[label],
                                                          datasets.ClassLabel):
        raise DataError(f"{source} column {label!r} is {_kind(features[label])}, not class "
                        "labels")
    if given.get("input"):
        inputs = given["input"].split(",")
    else:
        rest = [column for column in features if column != label]
        arrays = [c for c in rest if _is_array(features[c])]
        if len(arrays) > 1:
            raise DataError(f"{source} has several input columns ({', '.join(arrays)}); name "
                            "one with ?input=COL")
        inputs = arrays or [c for c in rest if _is_number(features[c])]
        if not inputs:
            found = "; ".join(f"{c} is {_kind(features[c])}" for c in rest) or "none"
            raise DataError(f"{source} has no input column of numbers or images ({found}); "
                            "name one with ?input=COL")
    for column in inputs:
        if not (_is_array(features[column]) or _is_number(features[column])):
            raise DataError(f"{source} column {column!r} is {_kind(features[column])}, not "
                            "numbers or images")
    if len(inputs) > 1 and not all(_is_number(features[c]) for c in inputs):
        raise DataError(f"{source}: several input columns must each be one number per row")
    return inputs, label


def _find_label(source: str, features) -> str:
    import datasets

    labels = [c for c, f in features.items() if isinstance(f, datasets.ClassLabel)]
    if len(labels) > 1:
        raise DataError(f"{source} has several ClassLabel columns ({', '.join(labels)}); name "
                        "one with ?label=COL")
    if not labels:
        labels = [c for c in ("label", "labels") if c in features
                  and _is_number(features[c]) and features[c].dtype.startswith(("int", "uint"))]
    if not labels:
        raise DataError(f"{source} has no label column (no ClassLabel feature, no integer "
                        f"'label'); columns: {', '.join(features)}; name one with ?label=COL")
    return labels[0]


def _is_number(feature) -> bool:
    """A ``Value`` of one number (or bool) per row."""
    import datasets

    return isinstance(feature, datasets.Value) and feature.dtype.startswith(_NUMBER_TYPES)


def _is_array(feature) -> bool:
    """An image, a fixed-shape array or a (nested) list of numbers."""
    import datasets

    if isinstance(feature, datasets.Image):
        return True
    if isinstance(feature, datasets.Array2D | datasets.Array3D | datasets.Array4D
                  | datasets.Array5D):
        return feature.dtype.startswith(_NUMBER_TYPES)
    element = feature[0] if isinstance(feature, list) and feature else getattr(
        feature, "feature", None)
    return element is not None and (_is_number(element) or _is_array(element))


def _kind(feature) -> str:
    """How a message names a feature, e.g. ``Value('string')``."""
    dtype = getattr(feature, "dtype", None)
    return f"{type(feature).__name__}({dtype!r})" if isinstance(dtype, str) else type(
        feature).__name__


def _arrays(source: str, split, inputs: list[str], label: str):
    """(x, y) of one split as numpy arrays: x (n, *input_shape), y (n,)."""
    table = split.with_format("numpy")
    try:
        if len(inputs) == 1:
            x = np.asarray(table[inputs[0]])
        else:
            x = np.stack([np.asarray(table[column]) for column in inputs], axis=1)
        y = np.asarray(table[label])
    except ValueError as error:
        raise DataError(f"{source}: {str(error).splitlines()[0]}") from None
    if x.dtype == object:
        raise DataError(f"{source} column {inputs[0]!r} holds rows of different shapes; "
                        "jaxnas needs one shape for every example")
    if x.ndim == 3 and type(split.features[inputs[0]]).__name__ == "Image":
        x = x[..., None]  # greyscale images get their channel axis
    if x.ndim == 1:
        x = x[:, None]
    x = _checks.as_features(f"{source} input", x)
    return x, _checks.as_labels(f"{source} labels", y)

