"""Small Hugging Face datasets that tests build and save with ``save_to_disk``: the
network is never tried (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE are set before
``datasets`` is imported)."""

import os

os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"

from pathlib import Path  # noqa: E402

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

# Rows of scikit-learn's digits in each split of the saved image dataset: as many as
# load("digits") puts in each, so that a search on it runs the programs (and hits the
# compilation cache entries) of the same search on "digits".
SPLITS = {"train": slice(0, 1079), "validation": slice(1079, 1438), "test": slice(1438, None)}


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) uint8 greyscale images and their (1797,) labels."""
    digits = load_digits()
    return (digits.images * 15).astype(np.uint8), digits.target


def save_digit_images(path: Path) -> Path:
    """A DatasetDict of train / validation / test splits: an ``Image`` column, a
    ``ClassLabel`` column and a string column the loader must leave alone."""
    images, labels = digit_images()
    features = datasets.Features({
        "image": datasets.Image(), "note": datasets.Value("string"),
        "label": datasets.ClassLabel(names=[f"digit {d}" for d in range(10)])})
    splits = {name: datasets.Dataset.from_dict(
        {"image": list(images[rows]), "note": ["scanned"] * len(labels[rows]),
         "label": labels[rows].tolist()}, features=features)
        for name, rows in SPLITS.items()}
    datasets.DatasetDict(splits).save_to_disk(str(path))
    return path


def save_table(path: Path, columns: dict) -> Path:
    """One ``Dataset`` (no splits) of plain columns, their features inferred."""
    datasets.Dataset.from_dict(columns).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Directories written by ``save_to_disk``, by what they hold."""
    root = tmp_path_factory.mktemp("hf")
    rng = np.random.default_rng(0)
    rows = 120
    table = {"a": rng.normal(size=rows).tolist(), "b": rng.integers(0, 9, rows).tolist(),
             "c": rng.normal(size=rows).astype(np.float32).tolist(),
             "label": np.arange(rows) % 3}
    return {
        "images": save_digit_images(root / "images"),
        "table": save_table(root / "table", table),
        "no_label": save_table(root / "no_label", {
            "a": table["a"], "target": ["yes", "no"] * (rows // 2)}),
        "text": save_table(root / "text", {
            "sentence": ["a cat", "a dog"] * (rows // 2), "label": table["label"]}),
        "table_columns": table,
    }
