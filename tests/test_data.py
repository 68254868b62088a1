"""Tests for tinysweep.trainer.spec.data: generators, file loading, checks and the split."""

import pathlib

import numpy as np
import pytest
import torch

from tinysweep.trainer.spec.data import SOURCES, Dataset, load_data
from tinysweep.trainer.spec.errors import UserError


def load(source, params=None, *, seed=0, val_fraction=0.0, loss="mse", base_dir=pathlib.Path(".")):
    return load_data(source, params or {}, seed=seed, val_fraction=val_fraction, loss=loss,
                     base_dir=base_dir)


# ---------------------------------------------------------------- generators


@pytest.mark.parametrize("source, d, names", [
    ("line", 1, ("x",)), ("heart_rate", 1, ("heart_rate",)),
    ("moons", 2, ("x1", "x2")), ("circles", 2, ("x1", "x2")), ("xor", 2, ("x1", "x2")),
])
def test_generator_defaults_shapes_dtypes(source, d, names):
    ds = load(source)
    assert ds.x_train.shape == (1000, d) and ds.y_train.shape == (1000,)
    assert ds.x_val.shape == (0, d) and ds.y_val.shape == (0,)
    for t in (ds.x_train, ds.y_train, ds.x_val, ds.y_val):
        assert t.dtype == torch.float32
    assert ds.feature_names == names
    assert (ds.n_features, ds.n_train, ds.n_val) == (d, 1000, 0)


def test_sources_tuple():
    assert SOURCES == ("line", "heart_rate", "moons", "circles", "xor", "blobs", "spirals",
                       "csv", "npz")


def test_line_exact_without_noise():
    ds = load("line", {"slope": 2.5, "intercept": -1, "n": 11, "noise": 0, "x0": -2, "x1": 3})
    x = np.linspace(-2, 3, 11)
    assert torch.equal(ds.x_train[:, 0], torch.from_numpy(x.astype(np.float32)))
    assert torch.equal(ds.y_train, torch.from_numpy((2.5 * x - 1).astype(np.float32)))


def test_line_defaults_formula():
    ds = load("line", {"noise": 0})
    x = ds.x_train[:, 0]
    assert x[0] == 0 and x[-1] == 1
    torch.testing.assert_close(ds.y_train, -4 * x)
    noisy = load("line")  # default noise 0.05
    residual = noisy.y_train - (-4 * noisy.x_train[:, 0])
    assert 0.03 < residual.std() < 0.07


def test_heart_rate_labels_follow_threshold():
    ds = load("heart_rate", {"threshold": 100})
    rate, label = ds.x_train[:, 0], ds.y_train
    assert torch.equal(label, (rate >= 100).float())
    assert 85 < rate.mean() < 99 and 12 < rate.std() < 18  # unscaled around 92 +- 15
    assert 0 < label.mean() < 1


@pytest.mark.parametrize("source", ["moons", "circles", "xor", "heart_rate"])
def test_binary_labels_and_classes_present(source):
    ds = load(source, loss="bce_with_logits")
    assert set(ds.y_train.unique().tolist()) == {0.0, 1.0}


def test_moons_and_circles_balanced_odd_n():
    for source in ("moons", "circles"):
        ds = load(source, {"n": 7})
        assert ds.n_train == 7 and ds.y_train.sum() == 4  # n // 2 outer, rest inner


def test_circles_radii_without_noise():
    ds = load("circles", {"noise": 0, "factor": 0.3, "n": 100})
    r = ds.x_train.norm(dim=1)
    torch.testing.assert_close(r[ds.y_train == 0], torch.ones(50))
    torch.testing.assert_close(r[ds.y_train == 1], torch.full((50,), 0.3))


def test_xor_without_noise_is_exact():
    ds = load("xor", {"noise": 0})
    x = ds.x_train
    assert x.abs().max() <= 1
    assert torch.equal(ds.y_train, (x[:, 0] * x[:, 1] > 0).float())


@pytest.mark.parametrize("source", ["line", "heart_rate", "moons", "circles", "xor"])
def test_determinism(source):
    a, b = load(source, seed=3, val_fraction=0.2), load(source, seed=3, val_fraction=0.2)
    c = load(source, seed=4, val_fraction=0.2)
    for name in ("x_train", "y_train", "x_val", "y_val"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.y_train, c.y_train) or not torch.equal(a.x_train, c.x_train)


# ---------------------------------------------------------------- split


@pytest.mark.parametrize("n, frac, n_val", [(1000, 0.2, 200), (10, 0.25, 2), (10, 0.35, 4),
                                            (3, 0.5, 2), (5, 0.0, 0)])
def test_split_sizes(n, frac, n_val):
    ds = load("line", {"n": n}, val_fraction=frac)
    assert (ds.n_val, ds.n_train) == (n_val, n - n_val)  # Python round: round(2.5) == 2


def test_split_disjoint_and_order_kept():
    full = load("line", {"n": 50, "noise": 0})
    ds = load("line", {"n": 50, "noise": 0}, val_fraction=0.3)
    xs = full.x_train[:, 0]
    train, val = ds.x_train[:, 0], ds.x_val[:, 0]
    assert len(set(train.tolist()) & set(val.tolist())) == 0
    assert sorted(train.tolist() + val.tolist()) == xs.tolist()
    assert torch.all(train[1:] > train[:-1]) and torch.all(val[1:] > val[:-1])  # original order
    assert not torch.equal(val, xs[-15:])  # a random subset, not the tail
    torch.testing.assert_close(ds.y_train, -4 * train)  # rows stay paired


def test_split_does_not_change_generated_data():
    full = load("moons", seed=7)
    ds = load("moons", seed=7, val_fraction=0.5)
    assert sorted(full.x_train[:, 0].tolist()) == sorted(
        ds.x_train[:, 0].tolist() + ds.x_val[:, 0].tolist())


# ---------------------------------------------------------------- standardization


def test_standardization_matches_torch():
    ds = load("moons", val_fraction=0.2)
    mean, std = ds.standardization()
    assert mean.shape == std.shape == (2,)
    torch.testing.assert_close(mean, ds.x_train.mean(0))
    torch.testing.assert_close(std, ds.x_train.std(0))
    # only training rows count
    assert not torch.allclose(mean, torch.cat([ds.x_train, ds.x_val]).mean(0), rtol=0, atol=0)


def _ds(x):
    x = torch.tensor(x, dtype=torch.float32)
    return Dataset(x, torch.zeros(len(x)), x[:0], torch.zeros(0), tuple(f"x{i}" for i in range(x.shape[1])))


def test_standardization_constant_feature():
    mean, std = _ds([[0.1, 1.0], [0.1, 2.0], [0.1, 4.0]]).standardization()
    assert std[0] == 1 and mean[0] == torch.tensor(0.1)
    torch.testing.assert_close(std[1], torch.tensor([1.0, 2.0, 4.0]).std())


def test_standardization_single_row():
    mean, std = _ds([[3.0, -2.0]]).standardization()
    assert torch.equal(mean, torch.tensor([3.0, -2.0])) and torch.equal(std, torch.ones(2))


# ---------------------------------------------------------------- csv


def write(path, text):
    path.write_text(text)
    return path


def test_csv_relative_path_and_columns(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "data.csv", "a,name,label,b\n1,x,0,2.5\n2,y,1,3.5\n3,z,1,4.5\n")
    ds = load("csv", {"path": "sub/data.csv", "target": "label"}, base_dir=tmp_path,
              loss="bce_with_logits")
    assert ds.feature_names == ("a", "b")  # non-numeric 'name' ignored, file order kept
    assert torch.equal(ds.x_train, torch.tensor([[1, 2.5], [2, 3.5], [3, 4.5]]))
    assert torch.equal(ds.y_train, torch.tensor([0.0, 1, 1]))
    assert ds.x_train.dtype == ds.y_train.dtype == torch.float32


def test_csv_absolute_path(tmp_path):
    f = write(tmp_path / "d.csv", "x,y\n1,2\n3,4\n")
    ds = load("csv", {"path": str(f), "target": "y"}, base_dir=pathlib.Path("/nonexistent"))
    assert torch.equal(ds.y_train, torch.tensor([2.0, 4.0]))


@pytest.mark.parametrize("text, params, match", [
    (None, {"path": "nope.csv", "target": "y"}, r"data\.params\.path: file not found: .*nope\.csv"),
    ("a,b\n1,2\n", {"path": "data.csv", "target": "bpm"},
     r"data\.params\.target: column 'bpm' not in data\.csv; available columns: a, b"),
    ("a,b\n1,x\n", {"path": "data.csv", "target": "b"}, r"data\.params\.target: column 'b'.*not numeric"),
    ("a,b\nx,1\n", {"path": "data.csv", "target": "b"}, r"data\.params\.path: data\.csv has no numeric feature"),
    ("y\n1\n2\n", {"path": "data.csv", "target": "y"}, r"data\.params\.path: data\.csv has no numeric feature"),
    ("a,b\n", {"path": "data.csv", "target": "b"}, r"data\.params\.path: data\.csv has no data rows"),
    ("", {"path": "data.csv", "target": "b"}, r"data\.params\.path: data\.csv is empty"),
    ("bpm,y\n1,0\n,1\n", {"path": "data.csv", "target": "y"},
     r"data\.params\.path: data\.csv has NaN or inf in column 'bpm'"),
    ("bpm,y\n1,0\n2,inf\n", {"path": "data.csv", "target": "y"},
     r"data\.params\.path: data\.csv has NaN or inf in column 'y'"),
    ("bpm,y\n1,1e39\n", {"path": "data.csv", "target": "y"}, r"data\.csv has NaN or inf in column 'y'"),
    ("a,y\n1,0\n2,2\n3,3\n", {"path": "data.csv", "target": "y", "loss": "bce_with_logits"},
     r"data\.params\.path: data\.csv has 2 labels not 0 or 1 \(e\.g\. 2\)"),
    ("a,y\n1,0\n", {"path": "data.csv"}, r"data\.params\.target: required for source 'csv'"),
    ("a,y\n1,0\n", {}, r"data\.params\.path: required for source 'csv'; also missing target"),
    ("a,y\n1,0\n", {"path": "data.csv", "target": "y", "tagret": 1}, r"data\.params\.tagret: unknown key; did you mean 'target'\?"),
    ("a,y\n1,0\n", {"path": 3, "target": "y"}, r"data\.params\.path: expected a non-empty string, got 3"),
])
def test_csv_errors(tmp_path, text, params, match):
    if text is not None:
        write(tmp_path / "data.csv", text)
    params = dict(params)
    loss = params.pop("loss", "mse")
    with pytest.raises(UserError, match=match):
        load("csv", params, base_dir=tmp_path, loss=loss)


# ---------------------------------------------------------------- npz


def test_npz_2d_features(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.arange(12.0).reshape(4, 3), y=np.array([[0], [1], [0], [1]]))
    ds = load("npz", {"path": "d.npz"}, base_dir=tmp_path, loss="bce_with_logits")
    assert ds.feature_names == ("x0", "x1", "x2")
    assert torch.equal(ds.x_train, torch.arange(12.0).reshape(4, 3))
    assert torch.equal(ds.y_train, torch.tensor([0.0, 1, 0, 1]))
    assert ds.x_train.dtype == ds.y_train.dtype == torch.float32


def test_npz_1d_feature(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.array([1, 2, 3], dtype=np.int64), y=np.array([1.5, 2.5, 3.5]))
    ds = load("npz", {"path": "d.npz"}, base_dir=tmp_path)
    assert ds.feature_names == ("x",) and ds.x_train.shape == (3, 1)


@pytest.mark.parametrize("arrays, match", [
    (None, r"data\.params\.path: file not found: .*d\.npz"),
    ({"X": np.zeros((3, 1))}, r"data\.params\.path: d\.npz has no array 'y'; arrays present: X"),
    ({"y": np.zeros(3)}, r"data\.params\.path: d\.npz has no array 'X'"),
    ({"X": np.zeros((3, 2)), "y": np.zeros(4)}, r"data\.params\.path: d\.npz: X has 3 rows but y has 4"),
    ({"X": np.array([1, "a"], dtype=object), "y": np.zeros(2)}, r"data\.params\.path: d\.npz: cannot load"),
    ({"X": np.array(["a", "b"]), "y": np.zeros(2)}, r"d\.npz: array 'X' has dtype"),
    ({"X": np.zeros((2, 2, 2)), "y": np.zeros(2)}, r"d\.npz: array 'X' has shape"),
    ({"X": np.zeros((2, 0)), "y": np.zeros(2)}, r"d\.npz: array 'X' has shape"),
    ({"X": np.zeros((2, 1)), "y": np.zeros((2, 2, 1))}, r"d\.npz: array 'y' has shape"),
    ({"X": np.zeros((0, 2)), "y": np.zeros(0)}, r"data\.params\.path: d\.npz has no data rows"),
    ({"X": np.array([[1, np.nan]]), "y": np.zeros(1)}, r"d\.npz has NaN or inf in column 'x1'"),
    ({"X": np.zeros(2), "y": np.array([0, -np.inf])}, r"d\.npz has NaN or inf in column 'y'"),
])
def test_npz_errors(tmp_path, arrays, match):
    if arrays is not None:
        np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(UserError, match=match):
        load("npz", {"path": "d.npz"}, base_dir=tmp_path)


def test_npz_not_an_archive(tmp_path):
    with open(tmp_path / "d.npz", "wb") as f:
        np.save(f, np.zeros(3))  # a .npy under an .npz name
    with pytest.raises(UserError, match=r"data\.params\.path: d\.npz is not an \.npz archive"):
        load("npz", {"path": "d.npz"}, base_dir=tmp_path)
    write(tmp_path / "d.npz", "garbage")
    with pytest.raises(UserError, match=r"data\.params\.path: d\.npz: cannot load"):
        load("npz", {"path": "d.npz"}, base_dir=tmp_path)


def test_npz_bce_labels(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros(3), y=np.array([0, 0.5, 1]))
    with pytest.raises(UserError, match=r"d\.npz has 1 labels not 0 or 1 \(e\.g\. 0\.5\)"):
        load("npz", {"path": "d.npz"}, base_dir=tmp_path, loss="bce_with_logits")


# ---------------------------------------------------------------- parameter and argument errors


@pytest.mark.parametrize("source, params, match", [
    ("line", {"slop": 1}, r"data\.params\.slop: unknown key; did you mean 'slope'\?"),
    ("line", {"zzz": 1}, r"data\.params\.zzz: unknown key; expected one of slope, "),
    ("line", {"noise": "abc"}, r"data\.params\.noise: expected a number, got 'abc'"),
    ("line", {"slope": True}, r"data\.params\.slope: expected a number, got True"),
    ("line", {"slope": float("nan")}, r"data\.params\.slope: expected a number"),
    ("line", {"noise": -0.1}, r"data\.params\.noise: expected a number >= 0"),
    ("line", {"n": 0}, r"data\.params\.n: expected an integer in \[1, 10\*\*8\], got 0"),
    ("moons", {"n": 10.0}, r"data\.params\.n: expected an integer in \[1, 10\*\*8\], got 10\.0"),
    ("xor", {"n": True}, r"data\.params\.n: expected an integer in \[1, 10\*\*8\], got True"),
    ("heart_rate", {"std": 0}, r"data\.params\.std: expected a number > 0"),
    ("circles", {"factor": "big"}, r"data\.params\.factor: expected a number"),
    ("line", [1, 2], r"data\.params: expected a mapping"),
    ("moon", {}, r"data\.source: unknown source 'moon'; did you mean 'moons'\?"),
    ("line", {"slope": 1e30, "x0": 1e10}, r"data\.source: line has NaN or inf in column 'target'"),
])
def test_param_errors(source, params, match):
    with pytest.raises(UserError, match=match):
        load_data(source, params, seed=0, val_fraction=0.0, loss="mse", base_dir=pathlib.Path("."))


def test_params_none_means_defaults():
    ds = load_data("xor", None, seed=0, val_fraction=0.0, loss="mse", base_dir=pathlib.Path("."))
    assert ds.n_train == 1000


@pytest.mark.parametrize("frac", [1.0, -0.1, 1.5, True, "0.2", None])
def test_val_fraction_out_of_range(frac):
    with pytest.raises(UserError, match=r"data\.val_fraction: expected a number in \[0, 1\)"):
        load("line", val_fraction=frac)


def test_val_fraction_leaving_no_training_rows():
    with pytest.raises(UserError, match=r"data\.val_fraction: 0\.6 of 1 rows leaves no training rows"):
        load("line", {"n": 1}, val_fraction=0.6)


def test_bce_rejects_regression_labels():
    with pytest.raises(UserError, match=r"data\.source: line has \d+ labels not 0 or 1 \(e\.g\. "):
        load("line", loss="bce_with_logits")


def test_unknown_loss():
    with pytest.raises(UserError, match=r"loss: expected one of mse, bce_with_logits, "
                                        r"cross_entropy, got 'l1'"):
        load("line", loss="l1")
