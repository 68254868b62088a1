"""tinysweep.sklearn: scikit-learn's contract, on scikit-learn's bundled data sets.

The oracle for fold handling is scikit-learn itself driving the reference backend:
GridSearchCV over MLPClassifier(backend="reference") fits every (candidate, fold) on its
own, and SweepSearchCV's split scores, trained as one sweep, must equal its.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone                                          # noqa: E402
from sklearn.datasets import load_diabetes, load_digits, load_iris, load_wine  # noqa: E402
from sklearn.metrics import r2_score                                    # noqa: E402
from sklearn.model_selection import (GridSearchCV, GroupKFold, KFold,  # noqa: E402
                                     RepeatedStratifiedKFold, ShuffleSplit, StratifiedKFold,
                                     TimeSeriesSplit,
                                     cross_val_score)
from sklearn.pipeline import make_pipeline                              # noqa: E402
from sklearn.preprocessing import StandardScaler                       # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks      # noqa: E402

from tinysweep.sklearn import MLPClassifier, MLPRegressor, SweepSearchCV  # noqa: E402

# Checks of scikit-learn's suite that these estimators are expected to fail, each with its
# reason (as LightGBM's wrapper lists them). None today; README lists this too.
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {"MLPClassifier": {}, "MLPRegressor": {}}


def _scaled(loader, rows=None):
    X, y = loader(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    return (X, y) if rows is None else (X[:rows], y[:rows])


@pytest.fixture(scope="module")
def wine():
    return _scaled(load_wine)


@pytest.fixture(scope="module")
def diabetes():
    X, y = _scaled(load_diabetes, 240)
    return X, (y - y.mean()) / y.std()


def test_import_tinysweep_does_not_import_sklearn():
    code = "import sys, tinysweep; tinysweep.Sweep; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# Few epochs and a large lr keep the suite at a few seconds; scikit-learn's accuracy
# checks (check_classifiers_train wants 0.83 on its blobs) still pass with them.
@parametrize_with_checks(
    [MLPClassifier(epochs=20, lr=0.01), MLPRegressor(epochs=20, lr=0.01)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS[type(est).__name__])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        check(estimator)


def _grid_search_oracle(X, y, grid, cv, **fixed):
    """GridSearchCV fitting MLPClassifier once per (candidate, fold), reference backend."""
    return GridSearchCV(MLPClassifier(backend="reference", **fixed), grid, cv=cv,
                        refit=False).fit(X, y)


@pytest.mark.parametrize("cv", [StratifiedKFold(3, shuffle=True, random_state=0),
                                RepeatedStratifiedKFold(n_splits=2, n_repeats=2,
                                                        random_state=1)],
                         ids=["stratified3", "repeated2x2"])
def test_split_scores_equal_one_fit_per_fold(wine, cv):
    X, y = wine
    grid = {"lr": [0.003, 0.03], "hidden": [(8,), (4, 4)]}
    fixed = dict(epochs=6, batch_size=16, activation="tanh")
    search = SweepSearchCV(grid, cv=cv, backend="reference", refit=False, **fixed).fit(X, y)
    oracle = _grid_search_oracle(X, y, grid, cv, **fixed)
    ours, theirs = search.cv_results_, oracle.cv_results_
    assert search.n_splits_ == oracle.n_splits_
    assert set(theirs) <= set(ours), set(theirs) - set(ours)
    assert ours["params"] == theirs["params"]
    for k in range(oracle.n_splits_):
        np.testing.assert_allclose(ours[f"split{k}_test_score"], theirs[f"split{k}_test_score"],
                                   rtol=0, atol=1e-6, err_msg=f"split {k}")
    np.testing.assert_allclose(ours["mean_test_score"], theirs["mean_test_score"], atol=1e-6)
    np.testing.assert_allclose(ours["std_test_score"], theirs["std_test_score"], atol=1e-6)
    np.testing.assert_array_equal(ours["rank_test_score"], theirs["rank_test_score"])
    for name in ("param_lr", "param_hidden"):
        assert isinstance(ours[name], np.ma.MaskedArray)
        assert list(ours[name]) == list(theirs[name])
    assert search.best_params_ == oracle.best_params_
    assert search.best_index_ == oracle.best_index_
    assert search.results_.table["fold"].max() == 1 or search.n_splits_ == 3


def test_r2_split_scores_equal_r2_score_per_fold(diabetes):
    X, y = diabetes
    cv = KFold(3, shuffle=True, random_state=0)
    search = SweepSearchCV({"lr": [0.01, 0.03]}, cv=cv, epochs=8, hidden=(8,), loss="mse",
                           backend="reference").fit(X, y)
    for k, (train, test) in enumerate(cv.split(X)):
        for c, params in enumerate(search.cv_results_["params"]):
            m = MLPRegressor(epochs=8, hidden=(8,), backend="reference", **params)
            expected = r2_score(y[test], m.fit(X[train], y[train]).predict(X[test]))
            assert search.cv_results_[f"split{k}_test_score"][c] == pytest.approx(expected,
                                                                                 abs=2e-5)
    neg = SweepSearchCV({"lr": [0.01, 0.03]}, cv=cv, epochs=8, hidden=(8,), loss="mse",
                        backend="reference", scoring="neg_mean_squared_error").fit(X, y)
    assert (neg.cv_results_["mean_test_score"] < 0).all()
    assert search.score(X, y) == pytest.approx(r2_score(y, search.predict(X)))


def test_digits_search_trains_once_and_predicts(tmp_path):
    X, y = load_digits(return_X_y=True)
    X, y = X[:600] / 16, y[:600]
    search = SweepSearchCV({"lr": [0.003, 0.01], "batch_size": [32, 128]}, cv=3, epochs=15,
                           hidden=(32,), seeds=2).fit(X, y)
    res = search.cv_results_
    assert len(search.results_.table) == 4 * 3 * 2          # candidates x folds x seeds
    assert search.best_score_ == res["mean_test_score"].max() > 0.85
    assert res["rank_test_score"][search.best_index_] == 1
    assert np.array_equal(search.classes_, np.arange(10))
    assert search.predict_proba(X).shape == (600, 10)
    assert search.score(X, y) > 0.9
    # refit: one run per seed on every row, the lowest final training loss kept
    refit = search.best_estimator_.results_.table
    assert len(refit) == 2 and search.best_estimator_.seed == int(
        refit["seed"][refit["final_train_loss"].idxmin()])
    again = clone(search.best_estimator_).fit(X, y)         # the same seed: the same model
    np.testing.assert_array_equal(again.predict_proba(X), search.predict_proba(X))
    summary = search.results_.summary()
    assert len(summary) == 4 and (summary["n"] == 6).all()


def test_string_labels_and_binary(wine):
    X, y = wine
    names = np.array(["barolo", "grignolino", "barbera"])[y]
    search = SweepSearchCV({"lr": [0.01, 0.03]}, cv=3, epochs=10).fit(X, names)
    assert list(search.classes_) == ["barbera", "barolo", "grignolino"]
    assert set(search.predict(X)) <= set(names) and search.score(X, names) > 0.8
    binary = names == "barolo"
    m = MLPClassifier(epochs=10, lr=0.03).fit(X, binary)
    assert m.loss_function_ == "bce_with_logits" and m.decision_function(X).shape == (len(X),)
    assert np.array_equal(m.predict(X), m.decision_function(X) > 0)
    np.testing.assert_allclose(m.predict_proba(X).sum(axis=1), 1)


def test_dataframe_columns_reach_the_refitted_model():
    X, y = load_wine(return_X_y=True, as_frame=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")             # no feature-name or read-only warnings
        search = SweepSearchCV({"lr": [0.01]}, cv=3, epochs=3, input_norm="standardize")
        search.fit(X, y).predict(X.iloc[:3])
    assert list(search.best_estimator_.feature_names_in_) == list(X.columns)


def test_loss_auto_follows_type_of_target(wine, diabetes):
    X, y = wine
    kw = dict(cv=3, epochs=2, refit=False)
    assert SweepSearchCV({"lr": [0.01]}, **kw).fit(X, y).loss_function_ == "cross_entropy"
    assert SweepSearchCV({"lr": [0.01]}, **kw).fit(X, y == 1).loss_function_ == "bce_with_logits"
    Xd, yd = diabetes
    assert SweepSearchCV({"lr": [0.01]}, **kw).fit(Xd, yd).loss_function_ == "mse"
    s = SweepSearchCV({"lr": [0.01]}, **kw).fit(Xd, np.stack([yd, -yd], 1))   # two outputs
    assert s.loss_function_ == "mse" and s.results_.n_outputs(0) == 2


def test_pipeline_cross_val_score_clone(wine, diabetes):
    X, y = wine
    pipe = make_pipeline(StandardScaler(), MLPClassifier(epochs=10, lr=0.03))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.85
    est = MLPRegressor(hidden=(4,), lr=0.1)
    twin = clone(est).set_params(lr=0.2, epochs=3)
    assert est.get_params()["lr"] == 0.1 and twin.get_params()["lr"] == 0.2
    search = make_pipeline(StandardScaler(),
                           SweepSearchCV({"lr": [0.01, 0.03]}, cv=3, epochs=10))
    assert search.fit(X, y).score(X, y) > 0.85
    assert clone(search[-1]).get_params()["param_grid"] == {"lr": [0.01, 0.03]}


def test_group_folds_and_a_list_of_grids(wine):
    X, y = wine
    groups = np.arange(len(y)) % 4
    search = SweepSearchCV([{"lr": [0.01]}, {"lr": [0.03], "hidden": [(4,)]}], cv=GroupKFold(4),
                           epochs=3, refit=False).fit(X, y, groups=groups)
    res = search.cv_results_
    assert search.n_splits_ == 4 and len(res["params"]) == 2
    assert list(res["param_hidden"].mask) == [True, False]
    table = search.results_.table
    assert sorted(table["fold"].unique()) == [0, 1, 2, 3]


def test_diverged_candidate_scores_nan_and_ranks_last(diabetes):
    X, y = diabetes
    search = SweepSearchCV({"lr": [1e4, 1e5, 0.01]}, cv=3, epochs=3, optimizer="sgd",
                           loss="mse", refit=False).fit(X, y)
    res = search.cv_results_
    assert np.isnan(res["mean_test_score"][:2]).all() and np.isfinite(res["mean_test_score"][2])
    assert list(res["rank_test_score"]) == [2, 2, 1]
    assert search.best_params_ == {"lr": 0.01}


@pytest.mark.parametrize("kwargs, fit_y, match", [
    (dict(cv=1), None, "cv=1: cross-validation needs at least 2 folds"),
    (dict(cv=200), None, "cv=200: 200 folds of 178 rows"),
    (dict(cv=60), None, "class 2 has only 48 rows; stratified folds need at least 60"),
    (dict(cv=ShuffleSplit(3, random_state=0)), None, "test rows overlap an earlier fold"),
    (dict(cv=TimeSeriesSplit(3)), None, "trains on"),
    (dict(cv=[(np.arange(100, 178), np.arange(100)), (np.arange(50), np.arange(50, 178))]),
     None, "overlap"),
    (dict(cv=[(np.arange(100, 178), np.arange(100))]), None,
     "cv \\(list of \\(train, test\\) splits\\): 78 of 178 rows are in no test fold"),
    (dict(param_grid={"learning_rate_init": [0.1]}), None, "tinysweep calls it lr"),
    (dict(param_grid={"batchsize": [8]}), None, "did you mean 'batch_size'"),
    (dict(param_grid={"loss": ["mse"]}), None, "'loss' is not a per-run hyperparameter"),
    (dict(param_grid={"seed": [0, 1]}), None, "use SweepSearchCV\\(seeds=N\\)"),
    (dict(scoring="f1"), None, "scoring: expected None or one of accuracy, neg_log_loss"),
    (dict(param_grid={"lr": [-1.0]}), None, "lr: must be > 0"),
    (dict(), "nan", "y contains NaN"),
    (dict(), "one", "one class only"),
])
def test_bad_input_is_one_line_value_error(wine, kwargs, fit_y, match):
    X, y = wine
    if fit_y == "nan":
        y = np.where(np.arange(len(y)) == 7, np.nan, y.astype(float))
    elif fit_y == "one":
        y = np.zeros(len(y))
    args = {"param_grid": {"lr": [0.01]}, "epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=match) as info:
        SweepSearchCV(**args).fit(X, y)
    assert "\n" not in str(info.value)


def test_predict_with_the_wrong_width_names_both(wine):
    X, y = wine
    m = MLPClassifier(epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="X has 5 features, but MLPClassifier is expecting 13"):
        m.predict(X[:, :5])
    for bad in (np.where(np.arange(len(y)) == 3, np.nan, y), np.ones(len(y))):
        with pytest.raises(ValueError, match="NaN|one class only"):
            MLPClassifier(epochs=1).fit(X, bad)
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier(epochs=1).fit(X, np.linspace(0, 1, len(y)))


def test_iris_single_models_learn():
    X, y = _scaled(load_iris)
    assert MLPClassifier(epochs=30, lr=0.01).fit(X, y).score(X, y) > 0.9
