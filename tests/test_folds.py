"""data.cv: cross-validation folds as a run axis.

The reference backend defines what a fold run is (its training rows are the other folds, in
their order; its validation split is its fold); every backend matches it run by run. The
data are scikit-learn's bundled tables (wine, diabetes, digits) when scikit-learn is
installed, else a generated table of the same kind.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import tinysweep
from tinysweep.trainer import cli
from tinysweep.trainer.spec.errors import UserError
from tinysweep.trainer.spec.folds import check_assignment, fold_assignment
from tinysweep.trainer.pipeline.store import ChunkStore
from tinysweep.trainer.pipeline.sweep import execute, prepare, train_slice

from conftest import assert_same_runs

try:
    import sklearn.datasets as datasets
except ImportError:             # the test extra installs scikit-learn; without it, a stand-in
    datasets = None


def wine():
    """178 rows, 13 features, 3 classes (59, 71, 48 rows)."""
    if datasets is not None:
        return datasets.load_wine(return_X_y=True)
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [59, 71, 48])
    return rng.normal(y[:, None] * 50, 10 + y[:, None], (178, 13)), y


def diabetes(n: int = 101):
    """The first n rows of diabetes: 10 features, a continuous target in the hundreds."""
    if datasets is not None:
        x, y = datasets.load_diabetes(return_X_y=True)
    else:
        rng = np.random.default_rng(1)
        x = rng.normal(0, 0.05, (442, 10))
        y = 150 + x @ rng.normal(0, 300, 10)
    return x[:n], y[:n]


def digits():
    """1,797 rows of 8x8 images, 10 classes of about 180."""
    if datasets is not None:
        return datasets.load_digits(return_X_y=True)
    rng = np.random.default_rng(2)
    return rng.integers(0, 16, (1797, 64)).astype(float), np.arange(1797) % 10


def cv_config(cv, hidden=(4,), loss="cross_entropy", params=None, **train):
    return {"name": "cv", "data": {"cv": cv},
            "model": {"hidden": list(hidden), "activation": "tanh", "loss": loss},
            "train": {"epochs": 2, "lr": 0.02, **train},
            "sweep": {"params": params or {}}}


# ---- the partition -----------------------------------------------------------------------
def test_stratified_folds_partition_the_rows_and_keep_each_class_share():
    _, y = digits()
    table = fold_assignment(y, folds=5, repeats=3, shuffle_seed=7, stratify=True)
    assert table.shape == (3, len(y)) and table.dtype == np.int32
    assert set(np.unique(table)) == {0, 1, 2, 3, 4}            # every row in one fold, each
    for r in range(3):
        sizes = np.bincount(table[r], minlength=5)
        assert sizes.sum() == len(y) and sizes.max() - sizes.min() <= 1
        for c in np.unique(y):                              # each class as evenly as can be
            counts = np.bincount(table[r][y == c], minlength=5)
            assert counts.max() - counts.min() <= 1, (r, c, counts)
    assert not (table[0] == table[1]).all()                 # repeats are other partitions
    # seeded: the same table again; another seed another; more repeats keep the first ones
    np.testing.assert_array_equal(
        table, fold_assignment(y, folds=5, repeats=3, shuffle_seed=7, stratify=True))
    assert (table != fold_assignment(y, folds=5, repeats=3, shuffle_seed=8,
                                     stratify=True)).any()
    np.testing.assert_array_equal(
        table[:2], fold_assignment(y, folds=5, repeats=2, shuffle_seed=7, stratify=True))


def test_plain_folds_are_a_shuffled_even_partition():
    _, y = diabetes(101)
    table = fold_assignment(y, folds=4, stratify=False)
    assert sorted(np.bincount(table[0])) == [25, 25, 25, 26]
    # shuffled: no fold is a block of consecutive rows
    for k in range(4):
        assert np.diff(np.flatnonzero(table[0] == k)).max() > 1
    # stratified folds of a class that is not spread evenly in row order
    y2 = np.r_[np.zeros(40), np.ones(10)]
    t2 = fold_assignment(y2, folds=5, stratify=True)[0]
    assert [int(y2[t2 == k].sum()) for k in range(5)] == [2] * 5


def test_a_given_assignment_is_checked():
    np.testing.assert_array_equal(check_assignment([0, 1, 0, 1.0]), [[0, 1, 0, 1]])
    with pytest.raises(UserError, match=r"^data\.cv\.assignment: 3 fold ids for 4 rows$"):
        check_assignment([0, 1, 0], 4)
    with pytest.raises(UserError, match=r"fold 1 of repeat 1 is empty"):
        check_assignment([[0, 1, 2, 0], [0, 2, 2, 0]])
    with pytest.raises(UserError, match=r"every row is in fold 0"):
        check_assignment([0, 0, 0])
    with pytest.raises(UserError, match=r"got -1"):
        check_assignment([0, -1, 1])
    with pytest.raises(UserError, match=r"whole-number fold ids"):
        check_assignment([0, 0.5, 1])


# ---- what the reference does with a fold --------------------------------------------------
@pytest.mark.parametrize("shuffle", [True, False])
def test_a_fold_run_is_a_run_on_the_other_folds_validated_on_its_fold(shuffle):
    """Run (repeat r, fold k) trains exactly as a sweep without folds on the rows outside
    fold k, in their order (standardize's statistics from those rows), and its validation
    loss is its model's loss on fold k's rows."""
    x, y = wine()
    config = cv_config({"folds": 3, "repeats": 2, "shuffle_seed": 4},
                       shuffle=shuffle, input_norm="standardize",
                       params={"batch_size": [17, 64]})
    res = tinysweep.run(config, backend="reference", data=(x, y))
    table = fold_assignment(y, folds=3, repeats=2, shuffle_seed=4, stratify=True)
    assert list(res.table.columns[-8:-6]) == ["fold", "repeat"]      # after the params
    assert len(res.table) == 12
    # split-major: 2 settings on (repeat 0, fold 0), then on fold 1, ...
    assert res.table.fold.tolist() == [0, 0, 1, 1, 2, 2] * 2
    assert res.table.repeat.tolist() == [0] * 6 + [1] * 6
    assert res.table.batch_size.tolist() == [17, 64] * 6
    for run_id in (3, 8):                        # (repeat 0, fold 1) and (repeat 1, fold 1)
        row = res.table.loc[run_id]
        val = table[int(row["repeat"])] == int(row["fold"])
        alone = tinysweep.run({**config, "data": {}, "sweep": {"params": {
            "batch_size": int(row.batch_size)}}}, backend="reference",
            data=(x[~val], y[~val]))
        for name, value in alone.params.items():
            np.testing.assert_array_equal(res.params[name][run_id], value[0], err_msg=name)
        np.testing.assert_array_equal(res.curves["train_loss"][run_id],
                                      alone.curves["train_loss"][0])
        model = res.model(run_id)
        with torch.no_grad():
            logits = model(torch.as_tensor(x[val], dtype=torch.float32))
        expected = torch.nn.functional.cross_entropy(logits, torch.as_tensor(y[val])).item()
        assert row.final_val_loss == pytest.approx(expected, rel=1e-5)
        accuracy = (logits.argmax(1).numpy() == y[val]).mean()
        assert row.final_val_accuracy == pytest.approx(accuracy)


# ---- every backend against the reference --------------------------------------------------
def _odd_regression_sweep():
    """diabetes' first 101 rows (a prime) in 4 folds of 25 and 26: 75 or 76 training rows,
    batch sizes 7 and 16 leave short last batches; every input norm, shuffled or not."""
    return cv_config(4, hidden=(3,), loss="mse",
                     params={"batch_size": [7, 16], "shuffle": [True, False],
                             "input_norm": ["none", "standardize", "batchnorm"]},
                     lr=0.01, seed=5)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_backends_match_the_reference_run_by_run_with_folds(backend):
    if backend == "numba":
        pytest.importorskip("numba")
    x, y = diabetes(101)
    y = (y - y.mean()) / y.std()
    config = _odd_regression_sweep()
    ref = tinysweep.run(config, backend="reference", data=(x, y))
    assert len(ref.table) == 12 * 4 and sorted(set(ref.table.fold)) == [0, 1, 2, 3]
    assert_same_runs(tinysweep.run(config, backend=backend, data=(x, y), chunk_runs=5), ref)


def test_classification_folds_match_on_every_backend():
    """Stratified folds of wine, 3 classes, 2 repeats; torch and numba, in odd chunks."""
    pytest.importorskip("numba")
    x, y = wine()
    config = cv_config({"folds": 3, "repeats": 2}, input_norm="standardize",
                       params={"batch_size": [13, 32], "seed": [0, 1]})
    ref = tinysweep.run(config, backend="reference", data=(x, y))
    for backend in ("torch", "numba"):
        assert_same_runs(tinysweep.run(config, backend=backend, data=(x, y), chunk_runs=7),
                         ref)


def test_triton_matches_the_reference_with_folds():
    pytest.importorskip("triton")
    x, y = diabetes(23)
    y = (y - y.mean()) / y.std()
    config = cv_config(3, hidden=(3,), loss="mse", lr=0.01,
                       params={"shuffle": [True, False], "input_norm": ["none", "standardize"]})
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ref = tinysweep.run(config, backend="reference", data=(x, y))
    assert len(ref.table) == 12
    assert_same_runs(tinysweep.run(config, backend="triton", device=device, data=(x, y)), ref)


# ---- chunks, resume, Ray's task body --------------------------------------------------------
def test_chunks_never_straddle_folds_and_resume_and_ray_tasks_give_the_same_runs(tmp_path):
    x, y = wine()
    config = cv_config(3, params={"lr": [0.01, 0.03, 0.1, 0.3, 1.0]})
    plan = prepare(config, backend="torch", chunk_runs=2, data=(x, y))
    assert plan.bounds() == [(0, 2), (2, 4), (4, 5), (5, 7), (7, 9), (9, 10), (10, 12),
                             (12, 14), (14, 15)]
    whole = execute(prepare(config, backend="torch", data=(x, y)))
    store = ChunkStore(tmp_path)
    store.start(plan)
    first = execute(plan, store=store)
    assert_same_runs(first, whole, rtol=1e-5, atol=1e-6)
    (store.dir / "chunk-000000005.npz").unlink()          # an interrupted sweep
    assert_same_runs(execute(plan, store=store), first, rtol=0, atol=0)
    # a Ray task gets the plan pickled (no cached Dataset) and trains one chunk of a fold
    shipped = pickle.loads(pickle.dumps(plan))
    part = train_slice(shipped, 7, 9)
    np.testing.assert_array_equal(part.final["1.weight"], first.params["final.1.weight"][7:9])


# ---- bad input: one line, exit 2, nothing written -------------------------------------------
@pytest.fixture
def wine_csv(tmp_path):
    x, y = wine()
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])]).assign(label=y)
    frame.to_csv(tmp_path / "wine.csv", index=False)
    return frame


def refused(tmp_path, capsys, data: dict, loss="cross_entropy", sweep=None) -> str:
    config = {"name": "bad", "data": {"source": "csv",
                                      "params": {"path": "wine.csv", "target": "label"}, **data},
              "model": {"hidden": [2], "loss": loss}, "train": {"epochs": 1},
              "sweep": sweep or {"params": {}}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    assert cli.main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()
    return err.removeprefix("tinysweep: error: ").strip()


def test_bad_cv_values_are_one_line_naming_the_key(tmp_path, capsys, wine_csv):
    assert refused(tmp_path, capsys, {"cv": 1}) == "data.cv: expected an integer >= 2, got 1"
    assert refused(tmp_path, capsys, {"cv": "5"}) == "data.cv: expected an integer >= 2, got '5'"
    assert refused(tmp_path, capsys, {"cv": 2.5}) == "data.cv: expected an integer >= 2, got 2.5"
    assert refused(tmp_path, capsys, {"cv": {"folds": 3, "repets": 2}}) == \
        "data.cv.repets: unknown key; did you mean 'repeats'?"
    assert refused(tmp_path, capsys, {"cv": {"folds": 3, "repeats": 0}}) == \
        "data.cv.repeats: expected an integer >= 1, got 0"
    assert refused(tmp_path, capsys, {"cv": 5, "val_fraction": 0.2}).startswith(
        "data.cv and data.val_fraction (0.2): each fold is the validation split")


def test_more_folds_than_rows_or_than_a_class_holds_are_refused(tmp_path, capsys, wine_csv):
    small = wine_csv.iloc[:4]
    small.to_csv(tmp_path / "wine.csv", index=False)
    assert refused(tmp_path, capsys, {"cv": 5}, loss="mse") == \
        "data.cv.folds: 5 folds of 4 rows; each fold needs a row (at most 4 folds)"
    rare = pd.concat([wine_csv[wine_csv.label != 2], wine_csv[wine_csv.label == 2].iloc[:3]])
    rare.to_csv(tmp_path / "wine.csv", index=False)
    assert refused(tmp_path, capsys, {"cv": 4}) == (
        "data.cv.folds: 4 folds, but class 2 has only 3 rows; stratified folds need at "
        "least 4 rows of each class")
    wine_csv.assign(label=wine_csv.label.astype(float).where(wine_csv.index != 9)).to_csv(
        tmp_path / "wine.csv", index=False)
    assert refused(tmp_path, capsys, {"cv": 3}) == \
        "data.params.path: wine.csv has NaN or inf in column 'label'"
    wine_csv.to_csv(tmp_path / "wine.csv", index=False)
    assert refused(tmp_path, capsys, {"cv": 3},
                   sweep={"params": {"lr": [0.1]}, "halving": {"rungs": [1]}}).startswith(
        "sweep.halving: not used with data.cv yet")


def test_bad_assignments_and_nan_targets_in_the_python_api():
    x, y = wine()
    with pytest.raises(UserError, match=r"^data\.cv\.assignment: 177 fold ids for 178 rows$"):
        tinysweep.run(cv_config({"assignment": np.arange(177) % 3}), data=(x, y))
    with pytest.raises(UserError, match=r"^data\.cv\.assignment: fold 1 is empty"):
        tinysweep.run(cv_config({"assignment": np.where(np.arange(178) < 90, 0, 2)}),
                      data=(x, y))
    with pytest.raises(UserError, match=r"^data\.cv: y has NaN \(first at row 3\)"):
        fold_assignment(np.r_[0.0, 1, 2, np.nan, 1], folds=2, stratify=False)


def test_an_assignment_is_the_folds_it_names():
    """A scikit-learn splitter's test folds, given as row tables: the runs train on them."""
    x, y = wine()
    assignment = np.stack([np.arange(178) % 3, (np.arange(178) // 60)])      # 2 repeats
    res = tinysweep.run(cv_config({"assignment": assignment}), backend="torch", data=(x, y))
    assert res.config["data"]["cv"]["folds"] == 3 and res.config["data"]["cv"]["repeats"] == 2
    assert res.table.fold.tolist() == [0, 1, 2, 0, 1, 2]
    assert res.table.repeat.tolist() == [0, 0, 0, 1, 1, 1]
    # run 4 is (repeat 1, fold 1): rows 60..119 were its validation split
    val = assignment[1] == 1
    with torch.no_grad():
        logits = res.model(4)(torch.as_tensor(x[val], dtype=torch.float32))
    loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(y[val])).item()
    assert res.table.final_val_loss[4] == pytest.approx(loss, rel=1e-5)


def test_commands_that_train_no_folds_refuse_cv(tmp_path, capsys, wine_csv):
    """tune and diagnose train no folds yet: data.cv is one line there, not ignored."""
    config = {"name": "bad", "data": {"source": "csv", "cv": 3,
                                      "params": {"path": "wine.csv", "target": "label"}},
              "model": {"hidden": [2], "loss": "cross_entropy"}, "train": {"epochs": 1},
              "sweep": {"params": {}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["diagnose", str(path), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinysweep: error: data.cv: only `tinysweep run`") and \
        err.count("\n") == 1


@pytest.mark.parametrize("cv", [4, {"folds": 3, "repeats": 2, "shuffle_seed": 9},
                                {"assignment": [[0, 1] * 89, [1, 0] * 89]}])
def test_the_resolved_config_reads_back_to_the_same_folds(cv, tmp_path):
    """config.yaml records data.cv so that --resume and a rerun find the same folds."""
    from tinysweep.trainer.spec.config import load_config
    x, y = wine()
    res = tinysweep.run(cv_config(cv), backend="torch", data=(x, y), out=tmp_path / "o",
                        save_data=True)
    again = load_config(tmp_path / "o" / "config.yaml")
    assert again.to_dict() == res.config
    rerun = tinysweep.run(tmp_path / "o" / "config.yaml", backend="torch")
    assert_same_runs(rerun, res, rtol=0, atol=0)
