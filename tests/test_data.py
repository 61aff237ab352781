"""Tests for jaxnas.data: built-in facts, splits, normalisation and every bad-input message."""

import ast
import pathlib
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnas.data import DataError, Dataset, from_arrays, load, names

SPLITS = ("train", "val", "test")


def split_arrays(ds: Dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    return getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")


def unnormalise(ds: Dataset, x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) * ds.std + ds.mean


def sorted_rows(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1)
    return flat[np.lexsort(flat.T[::-1])]


def assert_one_line(excinfo: pytest.ExceptionInfo) -> None:
    message = str(excinfo.value)
    assert message and "\n" not in message


@pytest.fixture(scope="module")
def digits_raw():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images[..., None], digits.target


@pytest.fixture(scope="module")
def digits():
    return load("digits")


@pytest.fixture(scope="module")
def mnist1d():
    """The package's own default generation, and ours, with the global RNG state checked."""
    from mnist1d.data import get_dataset_args, make_dataset

    raw = make_dataset(get_dataset_args())
    python_state = random.getstate()
    numpy_state = np.random.get_state()  # noqa: NPY002
    dataset = load("mnist1d")
    state_kept = python_state == random.getstate() and all(
        np.array_equal(before, after)
        for before, after in zip(numpy_state, np.random.get_state(), strict=True)  # noqa: NPY002
    )
    return {"raw": raw, "dataset": dataset, "state_kept": state_kept}


def test_names_are_the_built_ins():
    assert names() == ("digits", "mnist1d")


def test_digits_facts(digits):
    assert digits.name == "digits"
    assert digits.num_classes == 10
    assert digits.input_shape == (8, 8, 1)
    assert sum(digits.sizes.values()) == 1797
    for split in SPLITS:
        x, y = split_arrays(digits, split)
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert x.shape == (len(y), 8, 8, 1)


def test_digits_splits_are_a_partition_normalised_with_train_statistics(digits, digits_raw):
    raw_x, raw_y = digits_raw
    restored = {}
    for split in SPLITS:
        x, _ = split_arrays(digits, split)
        values = unnormalise(digits, x)
        # Digits pixels are integers 0..16, so train statistics must map every split back to
        # integers; statistics from any other rows would not.
        np.testing.assert_allclose(values, np.rint(values), atol=1e-3)
        restored[split] = np.rint(values)
    all_rows = np.concatenate([restored[split] for split in SPLITS])
    np.testing.assert_array_equal(sorted_rows(all_rows), sorted_rows(raw_x))
    all_labels = np.concatenate([split_arrays(digits, split)[1] for split in SPLITS])
    np.testing.assert_array_equal(np.bincount(all_labels), np.bincount(raw_y))

    train_raw = restored["train"]
    mean, std = train_raw.mean(axis=0), train_raw.std(axis=0)
    scale = np.where(std < 1e-6, 1.0, std)
    np.testing.assert_allclose(digits.mean, mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(digits.std, scale, rtol=1e-5)
    for split in ("val", "test"):
        x, _ = split_arrays(digits, split)
        np.testing.assert_allclose(x, (restored[split] - mean) / scale, rtol=1e-5, atol=1e-5)

    varies = std > 1e-6
    assert (~varies).any(), "digits has always-blank pixels"
    np.testing.assert_allclose(digits.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(digits.x_train.std(axis=0)[varies], 1.0, rtol=1e-4)
    assert np.all(digits.x_train[:, ~varies] == 0.0)


def test_mnist1d_facts_and_fixed_test_set(mnist1d):
    ds, raw = mnist1d["dataset"], mnist1d["raw"]
    assert ds.name == "mnist1d"
    assert ds.num_classes == 10
    assert ds.input_shape == (40, 1)
    assert ds.sizes["train"] + ds.sizes["val"] == 4000
    assert ds.sizes["test"] == 1000
    np.testing.assert_array_equal(ds.y_test, raw["y_test"])

    train_raw = unnormalise(ds, ds.x_train)[..., 0]
    # Recover which raw rows went to train, then recompute their statistics with numpy.
    squared = (
        (train_raw**2).sum(axis=1)[:, None] + (raw["x"] ** 2).sum(axis=1)[None, :]
        - 2.0 * train_raw @ raw["x"].T
    )
    train_rows = squared.argmin(axis=1)
    assert squared.min(axis=1).max() < 1e-6
    assert len(set(train_rows.tolist())) == len(train_rows)
    mean, std = raw["x"][train_rows].mean(axis=0), raw["x"][train_rows].std(axis=0)
    np.testing.assert_allclose(ds.x_test[..., 0], (raw["x_test"] - mean) / std, atol=1e-4)
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1.0, rtol=1e-4)


def test_mnist1d_leaves_global_random_state_alone(mnist1d):
    assert mnist1d["state_kept"]


def test_every_class_in_every_split_in_proportion(digits, mnist1d):
    for split in SPLITS:
        counts = np.bincount(split_arrays(digits, split)[1], minlength=10)
        assert counts.min() > 0
    total = np.bincount(np.concatenate([split_arrays(digits, s)[1] for s in SPLITS]))
    for split in ("val", "test"):
        counts = np.bincount(split_arrays(digits, split)[1], minlength=10)
        assert np.all(np.abs(counts - 0.2 * total) <= 1)
    ds = mnist1d["dataset"]
    train_val = np.bincount(ds.y_trainval, minlength=10)
    assert np.all(np.abs(np.bincount(ds.y_val, minlength=10) - 0.2 * train_val) <= 1)


def test_same_seed_is_bit_identical_and_other_seeds_differ(digits):
    again = load("digits", seed=0)
    other = load("digits", seed=1)
    for split in SPLITS:
        for first, second in zip(split_arrays(digits, split), split_arrays(again, split),
                                 strict=True):
            assert first.dtype == second.dtype and first.tobytes() == second.tobytes()
    assert not np.array_equal(digits.x_test, other.x_test)
    assert not np.array_equal(digits.y_train, other.y_train)


def test_trainval_concatenates_train_then_val(digits):
    assert digits.x_trainval.shape == (digits.sizes["train"] + digits.sizes["val"], 8, 8, 1)
    np.testing.assert_array_equal(digits.y_trainval[: digits.sizes["train"]], digits.y_train)
    np.testing.assert_array_equal(digits.x_trainval[digits.sizes["train"]:], digits.x_val)
    assert "train=" in repr(digits) and "input_shape=(8, 8, 1)" in repr(digits)


def make_arrays(seed=0, rows_per_class=10, num_classes=3, num_features=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows_per_class * num_classes, num_features)) * 3.0 + 2.0
    y = np.repeat(np.arange(num_classes), rows_per_class)
    return x, y


def test_npz_round_trip_equals_from_arrays(tmp_path):
    x, y = make_arrays()
    path = tmp_path / "toy.npz"
    np.savez(path, x=x, y=y, notes=np.arange(3))
    ds = load(str(path), seed=5)
    expected = from_arrays(x, y, seed=5, name="toy")
    assert ds.name == "toy"
    assert sum(ds.sizes.values()) == len(y)
    for split in SPLITS:
        for got, want in zip(split_arrays(ds, split), split_arrays(expected, split), strict=True):
            assert got.tobytes() == want.tobytes()


def test_npz_with_test_set_keeps_it_and_carves_val_from_train(tmp_path):
    x, y = make_arrays(rows_per_class=10)
    x_test, y_test = make_arrays(seed=1, rows_per_class=4)
    path = tmp_path / "with_test.npz"
    np.savez(path, x=x, y=y, x_test=x_test, y_test=y_test)
    ds = load(path, val_fraction=0.3)
    assert ds.sizes == {"train": 21, "val": 9, "test": 12}
    np.testing.assert_array_equal(ds.y_test, y_test)
    train_raw = unnormalise(ds, ds.x_train)
    mean, std = train_raw.mean(axis=0), train_raw.std(axis=0)
    np.testing.assert_allclose(ds.x_test, (x_test - mean) / std, rtol=1e-5, atol=1e-5)
    # The restored train rows really are rows of x.
    distances = np.abs(train_raw[:, None, :] - x[None, :, :]).max(axis=2).min(axis=1)
    assert distances.max() < 1e-5


def test_constant_feature_is_centred_not_blown_up():
    x, y = make_arrays()
    x[:, 1] = 5.0
    x_test = x[:6].copy()
    x_test[:, 1] = 7.0
    ds = from_arrays(x, y, x_test=x_test, y_test=y[:6])
    assert np.all(ds.x_train[:, 1] == 0.0)
    np.testing.assert_allclose(ds.x_test[:, 1], 2.0)
    assert ds.std[1] == 1.0


def test_whole_number_float_labels_and_integer_features_are_accepted():
    x, y = make_arrays()
    ds = from_arrays(np.rint(x).astype(np.int16), y.astype(np.float64))
    assert ds.y_train.dtype == np.int32 and ds.x_train.dtype == np.float32
    assert ds.num_classes == 3


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(3, 12), min_size=2, max_size=5),
    val_fraction=st.floats(0.05, 0.45),
    test_fraction=st.floats(0.05, 0.45),
    seed=st.integers(0, 2**32),
    shuffle_seed=st.integers(0, 1000),
)
def test_splits_are_disjoint_cover_all_rows_and_keep_every_class(
    counts, val_fraction, test_fraction, seed, shuffle_seed
):
    y = np.random.default_rng(shuffle_seed).permutation(np.repeat(np.arange(len(counts)), counts))
    x = np.stack([np.arange(len(y)), y], axis=1).astype(np.float64)
    ds = from_arrays(x, y, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    row_ids = []
    for split in SPLITS:
        x_split, y_split = split_arrays(ds, split)
        restored = np.rint(unnormalise(ds, x_split)).astype(np.int64)
        np.testing.assert_array_equal(restored[:, 1], y_split)
        np.testing.assert_array_equal(y[restored[:, 0]], y_split)
        assert set(y_split.tolist()) == set(range(len(counts)))
        row_ids.append(restored[:, 0])
    np.testing.assert_array_equal(np.sort(np.concatenate(row_ids)), np.arange(len(y)))


def bad_array_cases():
    x, y = make_arrays()
    wrong_float = y.astype(np.float64)
    wrong_float[3] = 0.5
    with_nan = x.copy()
    with_nan[0, 0] = np.nan
    with_nan[1, 2] = np.inf
    with_nan[5, 1] = -np.inf
    gap = y.copy()
    gap[gap == 1] = 3
    lonely = np.concatenate([y, [3]])
    return [
        ("x has 30 rows but y has 29", dict(x=x, y=y[:-1])),
        (r"x must have at least 2 dims .*got shape \(30,\)", dict(x=x[:, 0], y=y)),
        (r"x has no rows", dict(x=x[:0], y=y[:0])),
        (r"x has no features per row", dict(x=x[:, :0], y=y)),
        (r"x must hold real numbers; got dtype <U", dict(x=x.astype(str), y=y)),
        (r"x must hold real numbers; got dtype complex128", dict(x=x + 1j, y=y)),
        (r"x is not a rectangular array", dict(x=[[1.0, 2.0], [3.0]], y=[0, 0])),
        (r"x contains NaN or inf \(3 values\)", dict(x=with_nan, y=y)),
        (r"y must be 1-D with one label per row; got shape \(30, 1\)", dict(x=x, y=y[:, None])),
        (r"labels in y must be integers; got float64 values such as 0\.5",
         dict(x=x, y=wrong_float)),
        (r"labels in y must be integers; got dtype <U", dict(x=x, y=y.astype(str))),
        (r"label -1 in y is negative", dict(x=x, y=y - 1)),
        (r"class 1 has no samples but the largest label is 3", dict(x=x, y=gap)),
        (r"class 3 has only 1 sample; need at least 3 to split into train, val and test",
         dict(x=np.concatenate([x, x[:1]]), y=lonely)),
        (r"class 3 has only 1 sample; need at least 2 to split into train and val",
         dict(x=np.concatenate([x, x[:1]]), y=lonely, x_test=x, y_test=y)),
        ("x_test was given without y_test", dict(x=x, y=y, x_test=x)),
        ("y_test was given without x_test", dict(x=x, y=y, y_test=y)),
        (r"x_test examples have shape \(3,\) but x examples have shape \(4,\)",
         dict(x=x, y=y, x_test=x[:, :3], y_test=y)),
        (r"x_test has 30 rows but y_test has 10", dict(x=x, y=y, x_test=x, y_test=y[:10])),
        (r"x_test contains NaN or inf \(3 values\)", dict(x=x, y=y, x_test=with_nan, y_test=y)),
        (r"label 12 in y_test is out of range; y has classes 0\.\.2",
         dict(x=x, y=y, x_test=x[:2], y_test=[0, 12])),
        (r"label -2 in y_test is negative", dict(x=x, y=y, x_test=x[:2], y_test=[0, -2])),
        (r"val_fraction must be in \(0, 1\); got 0", dict(x=x, y=y, val_fraction=0)),
        (r"val_fraction must be in \(0, 1\); got 1\.5", dict(x=x, y=y, val_fraction=1.5)),
        (r"test_fraction must be in \(0, 1\); got nan", dict(x=x, y=y, test_fraction=np.nan)),
        (r"test_fraction must be in \(0, 1\); got -0\.1", dict(x=x, y=y, test_fraction=-0.1)),
        (r"val_fraction must be a number in \(0, 1\); got '0\.2'",
         dict(x=x, y=y, val_fraction="0.2")),
        (r"val_fraction \+ test_fraction must be below 1; got 0\.6 \+ 0\.4",
         dict(x=x, y=y, val_fraction=0.6, test_fraction=0.4)),
        (r"seed must be a non-negative integer; got -1", dict(x=x, y=y, seed=-1)),
        (r"seed must be a non-negative integer; got 1\.5", dict(x=x, y=y, seed=1.5)),
        (r"labels in y hold a single class; classification needs at least two",
         dict(x=x, y=np.zeros_like(y))),
    ]


@pytest.mark.parametrize(("match", "kwargs"), bad_array_cases())
def test_bad_arrays_raise_one_line_data_error(match, kwargs):
    kwargs = dict(kwargs)
    with pytest.raises(DataError, match=match) as excinfo:
        from_arrays(kwargs.pop("x"), kwargs.pop("y"), **kwargs)
    assert_one_line(excinfo)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_bad_dataset_construction_is_rejected():
    ds = from_arrays(*make_arrays())
    with pytest.raises(DataError, match=r"x_val examples have shape \(3,\) but input_shape"):
        Dataset(**{**vars(ds), "x_val": ds.x_val[:, :3]})
    with pytest.raises(DataError, match=r"y_train has shape"):
        Dataset(**{**vars(ds), "y_train": ds.y_train[:-1]})


def write_bytes(path: pathlib.Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_bad_names_and_files_raise_one_line_data_error(tmp_path):
    x, y = make_arrays()
    good = tmp_path / "good.npz"
    np.savez(good, x=x, y=y)
    truncated = write_bytes(tmp_path / "truncated.npz", good.read_bytes()[:200])
    damaged = bytearray(good.read_bytes())
    damaged[300:400] = b"\0" * 100
    np.save(tmp_path / "single.npy", x)
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    np.savez(tmp_path / "no_y.npz", x=x, labels=y)
    np.savez(tmp_path / "no_y_test.npz", x=x, y=y, x_test=x)
    (tmp_path / "folder.npz").mkdir()
    cases = [
        ("digts", r"unknown dataset 'digts'; built-in names are digits, mnist1d"),
        (str(tmp_path / "missing.npz"), r"missing\.npz does not exist"),
        (write_bytes(tmp_path / "a.txt", b"1,2,3\n"), r"a\.txt is not an \.npz file"),
        ("data/no_extension", r"data/no_extension is not an \.npz file"),
        (write_bytes(tmp_path / "garbage.npz", b"not a zip at all"),
         r"garbage\.npz is not a readable \.npz file: not a zip archive"),
        (truncated, r"truncated\.npz is not a readable \.npz file: not a zip archive"),
        (write_bytes(tmp_path / "damaged.npz", bytes(damaged)),
         r"damaged\.npz is not a readable \.npz file: Bad CRC-32"),
        (write_bytes(tmp_path / "empty.npz", b""),
         r"empty\.npz is not a readable \.npz file: not a zip archive"),
        (str(tmp_path / "single.npz"), r"single\.npz holds a single array \(\.npy format\)"),
        (str(tmp_path / "no_y.npz"),
         r"no_y\.npz has no array named 'y' \(arrays found: 'labels', 'x'\)"),
        (str(tmp_path / "no_y_test.npz"),
         r"no_y_test\.npz has an array named 'x_test' but none named 'y_test'"),
        (str(tmp_path / "folder.npz"), r"folder\.npz is a directory, not an \.npz file"),
    ]
    for source, match in cases:
        with pytest.raises(DataError, match=match) as excinfo:
            load(source)
        assert_one_line(excinfo)


def test_npz_array_problems_name_the_file(tmp_path):
    x, y = make_arrays()
    path = tmp_path / "short_y.npz"
    np.savez(path, x=x, y=y[:-1])
    with pytest.raises(DataError, match=r"short_y\.npz: x has 30 rows but y has 29") as excinfo:
        load(str(path))
    assert_one_line(excinfo)
    with pytest.raises(DataError, match=r"^val_fraction must be in \(0, 1\); got 1$"):
        load(str(path), val_fraction=1)


def test_npz_holding_object_arrays_is_rejected_without_unpickling(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([{"a": 1}] * 30, dtype=object), y=np.zeros(30, dtype=int))
    with pytest.raises(DataError, match=r"array 'x': it holds Python objects") as excinfo:
        load(str(path))
    assert_one_line(excinfo)


def test_data_layer_imports_numpy_only_at_module_level():
    package = pathlib.Path(__file__).parents[1] / "jaxnas" / "data"
    allowed = {"numpy", "dataclasses", "numbers", "os", "random", "zipfile", "zlib",
               "collections", "jaxnas", "__future__", "urllib"}
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text())
        for node in tree.body:
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{module.name} imports {roots - allowed}"
        assert "import jax\n" not in module.read_text()
