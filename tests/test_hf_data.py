"""Hugging Face datasets (``hf:``) read offline from directories that ``save_to_disk``
wrote, and their refusals through the command line (one line, exit code 2)."""

import sys

import numpy as np
import pytest

from jaxnas import data
from tests import hf_datasets  # sets the offline variables before datasets loads

saved = hf_datasets.saved  # the fixture of the saved datasets


def test_saved_splits_load_with_their_images_and_labels(saved):
    loaded = data.load(f"hf:{saved['images']}", seed=4)
    images, labels = hf_datasets.digit_images()
    assert loaded.input_shape == (8, 8, 1) and loaded.num_classes == 10
    assert loaded.sizes == data.load("digits").sizes == {"train": 1079, "val": 359,
                                                         "test": 359}
    for part, split in (("val", "validation"), ("test", "test")):
        rows = hf_datasets.SPLITS[split]
        raw = getattr(loaded, f"x_{part}") * loaded.std + loaded.mean
        np.testing.assert_allclose(raw[..., 0], images[rows], atol=1e-3)
        np.testing.assert_array_equal(getattr(loaded, f"y_{part}"), labels[rows])
    # The training split is shuffled, as from_arrays shuffles, with its statistics.
    raw = np.sort((loaded.x_train * loaded.std + loaded.mean).reshape(1079, -1), axis=0)
    np.testing.assert_allclose(raw, np.sort(images[:1079].reshape(1079, -1), axis=0),
                               atol=1e-3)
    again = data.load(f"hf:{saved['images']}", seed=4)
    np.testing.assert_array_equal(again.x_train, loaded.x_train)


def test_one_split_is_split_as_from_arrays_splits(saved):
    """Numeric columns side by side, an integer "label" column, val and test carved out
    of the one split exactly as ``from_arrays`` carves them."""
    columns = saved["table_columns"]
    x = np.stack([np.asarray(columns[name], np.float64) for name in "abc"], axis=1)
    x[:, 2] = np.asarray(columns["c"], np.float32)
    expected = data.from_arrays(x, columns["label"], seed=2)
    loaded = data.load(f"hf:{saved['table']}", seed=2)
    for split in ("train", "val", "test"):
        np.testing.assert_allclose(getattr(loaded, f"x_{split}"),
                                   getattr(expected, f"x_{split}"), rtol=1e-6)
        np.testing.assert_array_equal(getattr(loaded, f"y_{split}"),
                                      getattr(expected, f"y_{split}"))
    named = data.load(f"hf:{saved['table']}?input=a,c&label=label", seed=2)
    assert named.input_shape == (2,)


def test_a_search_option_names_the_dataset(cli_main):
    result = cli_main("search", "--help")
    assert "hf:NAME[:CONFIG]" in " ".join(result.stdout.split())


@pytest.mark.parametrize("source, message", [
    ("hf:no-such-owner/no-such-dataset",
     "cannot load the Hugging Face dataset 'no-such-owner/no-such-dataset'"),
    ("{no_label}", "has no label column (no ClassLabel feature, no integer 'label')"),
    ("{no_label}?label=target", "column 'target' is Value('string'), not class labels"),
    ("{text}", "has no input column of numbers or images (sentence is Value('string'))"),
    ("{images}?input=note", "column 'note' is Value('string'), not numbers or images"),
    ("{images}?label=digit", "has no column 'digit'; columns: image, note, label"),
    ("{images}?colour=red", "unknown option 'colour'"),
])
def test_bad_datasets_are_one_line_and_exit_2(cli_main, saved, source, message):
    if source.startswith("{"):
        name, _, query = source[1:].partition("}")
        source = f"hf:{saved[name]}{query}"
    result = cli_main("search", "--dataset", source, "--budget-evals", "4")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_without_the_extra_the_error_names_it(monkeypatch, saved):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(data.DataError, match=r"pip install 'jaxnas\[hf\]'"):
        data.load(f"hf:{saved['images']}")
