"""scikit-learn estimators that are thin shells over a tinysweep sweep.

    from tinysweep.sklearn import SweepSearchCV, MLPClassifier, MLPRegressor

    search = SweepSearchCV({"lr": [1e-3, 1e-2], "hidden": [(16,), (32,)]}, cv=5, epochs=50)
    search.fit(X, y)                 # 4 settings x 5 folds: one sweep of 20 runs
    search.best_params_, search.best_score_, search.cv_results_
    search.predict(X_new)            # the best setting, refitted on every row

    MLPClassifier(hidden=(32,), lr=1e-2, epochs=50).fit(X, y).predict_proba(X_new)

``SweepSearchCV`` follows GridSearchCV's contract, but trains every candidate on every
fold (and every seed) at once: the folds are a run axis of the sweep (``data.cv`` with a
row table, trainer/spec/folds.py), so cross-validation costs one launch, not one fit per
(candidate, fold). ``MLPClassifier`` and ``MLPRegressor`` train one run; they are what
``best_estimator_`` holds, and they can be fitted alone, in a Pipeline or in
``cross_val_score``.

Every per-run hyperparameter of tinysweep (``lr``, ``batch_size``, ``hidden``, ...: the
fields of trainer/spec/config.py's RunParams, except ``seed``, which is a replicate, and ``bug``)
is an argument of the estimators and may be a key of ``param_grid``.

This module imports scikit-learn; ``import tinysweep`` never imports it (scikit-learn is
the optional extra ``tinysweep[sklearn]``).
"""

from __future__ import annotations

import copy
import difflib
import numbers
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import ParameterGrid, check_cv
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from .trainer.spec.config import RUN_PARAM_NAMES, check_run_value
from .trainer.spec.errors import UserError

__all__ = ["SweepSearchCV", "MLPClassifier", "MLPRegressor"]

CLASS_LOSSES = ("cross_entropy", "bce_with_logits")
# The per-run hyperparameters an estimator takes and param_grid may sweep: seed is a
# replicate (SweepSearchCV's ``seeds``), bug a diagnostic that no user model wants.
GRID_NAMES = tuple(n for n in RUN_PARAM_NAMES if n not in ("seed", "bug"))
# scikit-learn's MLP names, for the suggestion when one lands in param_grid.
_SKLEARN_NAMES = {"hidden_layer_sizes": "hidden", "learning_rate_init": "lr",
                  "learning_rate": "lr (or lr_schedule)", "max_iter": "epochs",
                  "solver": "optimizer", "beta_1": "beta1", "beta_2": "beta2",
                  "epsilon": "eps", "alpha": "weight_decay (decoupled, with optimizer adamw)",
                  "random_state": "seed (SweepSearchCV's seeds=)"}
SCORINGS = {"classifier": ("accuracy", "neg_log_loss"),
            "regressor": ("r2", "neg_mean_squared_error")}


def _value_error(e: UserError) -> ValueError:
    """tinysweep's one-line UserError as the ValueError scikit-learn users catch."""
    return ValueError(str(e))


def _nearest(name: str, choices) -> str:
    if name in _SKLEARN_NAMES:
        return f"; tinysweep calls it {_SKLEARN_NAMES[name]}"
    close = difflib.get_close_matches(str(name), list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _plain(value):
    """A numpy scalar as the Python number a config holds; a hidden spec as a list."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_plain(v) for v in value]
    return value


def _widths(hidden, where: str) -> list:
    """``hidden`` (an int, or a tuple or list of widths; () for a linear model) as a list
    of ints, checked as the config checks model.hidden."""
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        hidden = [int(hidden)]
    hidden = _plain(hidden)
    try:
        return list(check_run_value("hidden", hidden, where))
    except UserError as e:
        raise _value_error(e) from None


def _check_y_finite(y) -> None:
    y = np.asarray(y)
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        bad = int(np.flatnonzero(~np.isfinite(y).reshape(len(y), -1).all(axis=1))[0])
        raise ValueError(f"y has NaN or inf (first at row {bad}); every row needs a finite "
                         f"label or target")


def _encode_classes(y) -> tuple[np.ndarray, np.ndarray]:
    """Class labels of any dtype as (classes_ sorted, codes 0..K-1 [n]); ValueError for
    continuous targets (scikit-learn's 'Unknown label type') or a single class."""
    _check_y_finite(y)
    check_classification_targets(y)
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y has shape {y.shape}; a classifier takes one label per row")
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        label = classes[0].item() if isinstance(classes[0], np.generic) else classes[0]
        raise ValueError(f"y has one class only ({label!r}); a classifier needs at least "
                         f"2 classes")
    return classes, codes.astype(np.int64)


def _auto_loss(y) -> str:
    """cross_entropy (bce_with_logits for two classes) for class labels, mse for
    continuous targets, as ``type_of_target`` decides. Note: float targets that are all
    whole numbers (counts, scikit-learn's diabetes) are class labels to it; pass
    loss="mse" for those."""
    kind = type_of_target(y, input_name="y")
    if kind == "binary":
        return "bce_with_logits"
    if kind == "multiclass":
        return "cross_entropy"
    if kind in ("continuous", "continuous-multioutput"):
        return "mse"
    raise ValueError(f"loss='auto': y is {kind}; tinysweep trains one label per row "
                     f"(binary or multiclass) or continuous targets")


# ---------------------------------------------------------------- one model


class _TinyMLP(BaseEstimator):
    """What the classifier and the regressor share: the arguments, the sweep that trains
    them, and the forward pass."""

    _losses: tuple = ()

    def __init__(self, hidden=(16,), activation="relu", loss="auto", optimizer="adam",
                 lr=1e-3, batch_size=32, epochs=100, shuffle=True, seed=0, input_norm="none",
                 momentum=0.0, nesterov=False, beta1=0.9, beta2=0.999, eps=1e-8,
                 weight_decay=None, lr_schedule="constant", step_size=None, gamma=0.1,
                 backend="auto", device=None):
        self.hidden = hidden
        self.activation = activation
        self.loss = loss
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.shuffle = shuffle
        self.seed = seed
        self.input_norm = input_norm
        self.momentum = momentum
        self.nesterov = nesterov
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.step_size = step_size
        self.gamma = gamma
        self.backend = backend
        self.device = device

    # -- training

    def _train_section(self) -> dict:
        """The config's train section: every per-run hyperparameter but hidden and
        activation (the model section's), None meaning tinysweep's default."""
        out = {}
        for name in GRID_NAMES:
            if name in ("hidden", "activation"):
                continue
            value = _plain(getattr(self, name))
            if value is not None:
                out[name] = value
        return out

    def _fit_seeds(self, X, y, seeds: list[int]):
        """Trains one run per seed on every row, as one sweep, and keeps the one with the
        lowest final training loss (the first on a tie; the first if all diverge);
        ``seed`` becomes that run's. ``fit`` is this with seeds = [seed]."""
        X, y, loss = self._validated(X, y)
        config = {"name": type(self).__name__,
                  "model": {"hidden": _widths(self.hidden, "hidden"),
                            "activation": self.activation, "loss": loss},
                  "train": self._train_section(),
                  "sweep": {"strategy": "grid", "params": {"seed": [int(s) for s in seeds]}}}
        from .trainer.pipeline.sweep import run
        t0 = time.perf_counter()
        try:
            res = run(config, backend=self.backend, device=self.device, data=(X, y))
        except UserError as e:
            raise _value_error(e) from None
        train_loss = res.table["final_train_loss"].to_numpy(np.float64)
        diverged = res.table["diverged"].to_numpy(bool)
        masked = np.where(diverged | ~np.isfinite(train_loss), np.inf, train_loss)
        best = int(np.argmin(masked))
        if len(seeds) > 1:
            self.seed = int(seeds[best])
        self._set_fitted(res, best, loss, time.perf_counter() - t0)
        return self

    def _set_fitted(self, res, run_id: int, loss: str, seconds: float) -> None:
        row = res.table.iloc[run_id]
        self.loss_function_ = loss
        self.model_ = res.model(run_id)
        self.n_outputs_ = res.n_outputs(run_id)
        self.loss_ = float(row["final_train_loss"])
        self.loss_curve_ = res.curves["train_loss"][run_id].copy()
        self.n_iter_ = int(row["epochs"])
        self.t_ = int(row["steps"])
        self.diverged_ = bool(row["diverged"])
        self.fit_time_ = seconds
        self.results_ = res
        if self.diverged_:
            warnings.warn(f"{type(self).__name__}: training diverged (a non-finite loss or "
                          f"weight); predictions are not meaningful. Try a smaller lr.",
                          ConvergenceWarning, stacklevel=3)

    def fit(self, X, y):
        """Trains one run (``seed``) on every row of X [n, d] and y [n] (the regressor:
        also [n, k]). Returns self."""
        return self._fit_seeds(X, y, [self.seed])

    # -- prediction

    def _forward(self, X) -> np.ndarray:
        """The model's outputs [n, outputs] in float64 (logits for a classifier)."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        import torch
        # float64 inference: the same weights, and a row's output does not depend on
        # the other rows of X (float32 matmuls differ in the last bit by batch size).
        model = copy.deepcopy(self.model_).double().eval()
        with torch.no_grad():           # a copy: a DataFrame's X may be read-only
            return model(torch.from_numpy(np.array(X, np.float64, order="C"))).numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.allow_nan = False
        return tags


class MLPClassifier(ClassifierMixin, _TinyMLP):
    """One tiny MLP classifier, trained by tinysweep (one run of a sweep).

    Arguments: tinysweep's per-run hyperparameters (README, "Config"), with these
    defaults: hidden=(16,) (widths of the hidden layers; () is a linear model),
    activation="relu", optimizer="adam", lr=1e-3, batch_size=32, epochs=100, shuffle=True,
    seed=0 (initial weights and batch order), input_norm="none"; the rest as tinysweep's.
    loss: "auto" (bce_with_logits for two classes, else cross_entropy), "cross_entropy"
    or "bce_with_logits" (two classes only). backend, device: as ``tinysweep.run``'s.

    Labels of any dtype (strings too) are mapped to 0..K-1 through ``classes_``.
    Fitted attributes: classes_, n_features_in_ (feature_names_in_ for a DataFrame),
    model_ (the torch nn.Sequential, on raw inputs, returning logits), loss_function_,
    loss_ (final training loss), loss_curve_ (the training loss at each evaluated epoch),
    n_iter_ (epochs), t_ (optimizer steps), n_outputs_, diverged_, fit_time_, results_
    (the sweep's tinysweep Results).
    """

    _losses = ("auto",) + CLASS_LOSSES

    def _validated(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64)
        self.classes_, codes = _encode_classes(y)
        loss = self.loss
        if loss not in self._losses:
            raise ValueError(f"loss: expected one of {', '.join(self._losses)}, got {loss!r}")
        if loss == "auto":
            loss = "bce_with_logits" if len(self.classes_) == 2 else "cross_entropy"
        if loss == "bce_with_logits" and len(self.classes_) != 2:
            raise ValueError(f"loss='bce_with_logits' takes two classes; y has "
                             f"{len(self.classes_)}: use cross_entropy")
        return X, codes.astype(np.float64), loss

    def decision_function(self, X) -> np.ndarray:
        """Logits: [n] for two classes with bce_with_logits (> 0 predicts classes_[1]),
        else [n, K]."""
        z = self._forward(X)
        return z[:, 0] if self.loss_function_ == "bce_with_logits" else z

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities [n, K], columns in the order of classes_."""
        z = self._forward(X)
        if self.loss_function_ == "bce_with_logits":
            p = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1.0 - p, p], axis=1)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """Labels [n] from classes_: the largest logit (two classes: logit > 0)."""
        z = self._forward(X)
        codes = (z[:, 0] > 0).astype(np.int64) if self.loss_function_ == "bce_with_logits" \
            else z.argmax(axis=1)
        return self.classes_[codes]


class MLPRegressor(RegressorMixin, _TinyMLP):
    """One tiny MLP regressor, trained by tinysweep (one run of a sweep), loss mse.

    The arguments are MLPClassifier's; loss: "auto" or "mse". y [n] or [n, k] (k outputs).
    Fitted attributes: n_features_in_, model_ (the torch nn.Sequential on raw inputs),
    loss_function_, loss_, loss_curve_, n_iter_, t_, n_outputs_, diverged_, fit_time_,
    results_. Targets are not scaled: wide-ranging ones (scikit-learn's diabetes, 25 to
    346) want a larger lr or more epochs, or a TransformedTargetRegressor around this.
    """

    _losses = ("auto", "mse")

    def _validated(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        _check_y_finite(y)
        if self.loss not in self._losses:
            raise ValueError(f"loss: expected one of {', '.join(self._losses)}, got "
                             f"{self.loss!r} (MLPClassifier takes the class losses)")
        return X, np.asarray(y, np.float64), "mse"

    def predict(self, X) -> np.ndarray:
        """Predictions [n] (one output) or [n, k]."""
        z = self._forward(X)
        return z[:, 0] if self.n_outputs_ == 1 else z

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


# ---------------------------------------------------------------- the search


def _cv_name(cv) -> str:
    """How messages name ``cv``: its value, or its kind for a list of splits (whose repr
    prints every index)."""
    if isinstance(cv, numbers.Integral) or hasattr(cv, "split"):
        return f"cv={cv!r}"
    return f"cv ({type(cv).__name__} of (train, test) splits)"


def _assignment(cv, X, y, groups, classifier: bool, classes=None) -> np.ndarray:
    """``cv`` (an int, a splitter or an iterable of (train, test) splits) as the fold of
    every row per repeat, int32 [R, n], for ``data.cv.assignment``.

    An int K is scikit-learn's meaning of cv=K (``check_cv``: StratifiedKFold(K) for a
    classifier, KFold(K) otherwise, neither shuffled), so the folds are GridSearchCV's.
    A splitter's splits fill repeats in order: each split's test rows take the next fold
    id of the current repeat, and a repeat closes once every row has a fold (KFold gives
    one repeat, RepeatedKFold R). Refused with ValueError: test sets that overlap within
    a repeat, a split whose training rows are not all the other rows (ShuffleSplit,
    TimeSeriesSplit), rows left in no fold, repeats with different numbers of folds.
    """
    n = len(y)
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        if cv < 2:
            raise ValueError(f"cv={cv}: cross-validation needs at least 2 folds")
        if cv > n:
            raise ValueError(f"cv={cv}: {cv} folds of {n} rows; each fold needs a row "
                             f"(at most {n} folds)")
        if classifier:
            labels, counts = np.unique(y, return_counts=True)
            if counts.min() < cv:
                c = int(np.argmin(counts))
                label = labels[c] if classes is None else classes[labels[c]]
                label = label.item() if isinstance(label, np.generic) else label
                raise ValueError(f"cv={cv}: class {label!r} has only {counts[c]} rows; "
                                 f"stratified folds need at least {cv} rows of each class")
    name = _cv_name(cv)
    splitter = check_cv(cv, y, classifier=classifier)
    try:
        splits = list(splitter.split(X, y, groups))
    except ValueError as e:
        raise ValueError(f"{name}: {str(e).splitlines()[0]}") from None
    tables, current, k = [], np.full(n, -1, np.int32), 0
    for i, (train, test) in enumerate(splits):
        train, test = np.asarray(train), np.asarray(test)
        in_test = np.zeros(n, bool)
        in_test[test] = True
        if (current[test] >= 0).any() or in_test.sum() != len(test):
            raise ValueError(f"{name}: split {i}'s test rows overlap an earlier fold of "
                             f"the same repeat; tinysweep needs folds that partition the rows")
        in_train = np.zeros(n, bool)
        in_train[train] = True
        if len(train) != n - len(test) or (in_train == in_test).any():
            raise ValueError(f"{name}: split {i} trains on {len(train)} rows and tests on "
                             f"{len(test)} of {n}; tinysweep needs each split to train on "
                             f"every row outside its test fold")
        current[test] = k
        k += 1
        if (current >= 0).all():
            tables.append(current)
            current, k = np.full(n, -1, np.int32), 0
    if k or not tables:
        left = int((current < 0).sum()) if k else n
        raise ValueError(f"{name}: {left} of {n} rows are in no test fold; tinysweep needs "
                         f"folds that cover every row")
    folds = {int(t.max()) + 1 for t in tables}
    if len(folds) > 1:
        raise ValueError(f"{name}: its repeats have {sorted(folds)} folds; tinysweep needs "
                         f"the same number in each")
    if folds.pop() < 2:
        raise ValueError(f"{name}: a single fold holds every row; expected at least 2 folds")
    return np.stack(tables)


def _param_column(grid: dict, name: str, size: int) -> tuple[np.ndarray, bool]:
    """Values of ``name`` over a grid's candidates (keys sorted, the last varying fastest,
    as ParameterGrid orders them) as an object array, and whether the grid has it."""
    keys = sorted(grid)
    col = np.empty(size, object)
    if name not in grid:
        return col, False
    values = np.empty(len(grid[name]), object)
    for i, v in enumerate(grid[name]):        # a loop over one axis' values, not runs
        values[i] = v
    j = keys.index(name)
    inner = int(np.prod([len(grid[k]) for k in keys[j + 1:]], dtype=np.int64))
    col[:] = np.tile(np.repeat(values, inner), size // (inner * len(values)))
    return col, True


def _masked_column(col: np.ndarray, present: np.ndarray) -> np.ma.MaskedArray:
    """A param_<name> column as GridSearchCV writes it: masked where a candidate has no
    such param; numeric dtype when every value is a number."""
    values = col[present]
    if len(values) and all(isinstance(v, numbers.Number) and not isinstance(v, bool)
                           for v in values):
        data = np.zeros(len(col), np.asarray(list(values)).dtype)
        data[present] = list(values)
    else:
        data = col
    return np.ma.MaskedArray(data, mask=~present)


def _rank(means: np.ndarray) -> np.ndarray:
    """Rank 1 = the highest mean; ties share the lowest rank ("min"); NaN (a diverged
    candidate) ties for last, as GridSearchCV ranks failed fits."""
    from scipy.stats import rankdata
    if np.isnan(means).all():
        return np.ones(len(means), np.int32)
    filled = np.where(np.isnan(means), np.nanmin(means) - 1, means)
    return rankdata(-filled, method="min").astype(np.int32)


class SweepSearchCV(BaseEstimator):
    """GridSearchCV for tiny MLPs: every candidate x fold x seed trains in one sweep.

    param_grid: a dict (or a list of dicts) from per-run hyperparameter names (lr,
        batch_size, hidden, activation, epochs, optimizer, input_norm, weight_decay, ...;
        not seed) to lists of values, as GridSearchCV's. A list of dicts trains one sweep
        per dict. Hyperparameters not in it take the arguments below, or tinysweep's
        defaults (put any other one in param_grid with a single value).
    cv: an int K (scikit-learn's meaning: StratifiedKFold(K) for a classifier, KFold(K)
        otherwise, unshuffled), a scikit-learn splitter (KFold, StratifiedKFold,
        RepeatedKFold, GroupKFold, ...) or an iterable of (train, test) index pairs. The
        splits must partition the rows (per repeat): splitters whose test sets overlap or
        leave rows out (ShuffleSplit, TimeSeriesSplit) are refused with ValueError.
    epochs, hidden, activation, optimizer, lr, batch_size, input_norm: the defaults of the
        hyperparameters param_grid does not sweep.
    loss: "auto" (decided by scikit-learn's type_of_target: bce_with_logits for two
        classes, cross_entropy for more, mse for continuous targets; whole-number float
        targets count as classes, so pass loss="mse" for those), or a tinysweep loss.
    seeds: replicates: an int S (seeds 0..S-1) or a list of seeds. Each candidate trains
        once per seed on each fold; a split's score is the mean over seeds.
    scoring: None (accuracy for classifiers, R² for regressors, as scikit-learn's
        defaults), "accuracy", "neg_log_loss", "r2" or "neg_mean_squared_error".
    refit: True refits the best candidate on every row: one run per seed, in one sweep,
        keeping the run with the lowest final training loss (the first seed on a tie).
        False: no best_estimator_ (predict is then unavailable).
    backend, device, progress: as ``tinysweep.run``'s.

    Scores come from each run's last evaluation on its own fold: accuracy and log loss
    are the sweep's final_val_accuracy and final_val_loss; R² is 1 - final_val_loss /
    var(y of the fold) (equal to r2_score on the fold for one output; with several outputs
    it is r2_score's multioutput="variance_weighted"). A candidate whose run diverged on
    any (fold, seed) scores NaN there, so its mean is NaN and it ranks last.

    Fitted attributes: cv_results_ (GridSearchCV's keys: params, param_<name> (masked
    arrays), split<k>_test_score, mean_test_score, std_test_score, rank_test_score,
    mean_fit_time, std_fit_time, mean_score_time, std_score_time), best_index_,
    best_params_, best_score_, best_estimator_ and refit_time_ (refit only), n_splits_,
    classes_ (classifiers), n_features_in_, loss_function_, results_ (the search sweep's
    tinysweep Results: results_.summary() gives each setting's mean, spread and interval;
    with a list of dicts, the first dict's sweep).
    fit_time: one sweep trains every run, so mean_fit_time is its wall time shared
    equally by the (candidate, split) pairs, and std_fit_time is 0; the scores are part
    of the sweep, so the score times are 0.
    """

    def __init__(self, param_grid, cv=5, epochs=100, hidden=(16,), activation="relu",
                 loss="auto", optimizer="adam", lr=1e-3, batch_size=32, input_norm="none",
                 seeds=1, scoring=None, refit=True, backend="auto", device=None,
                 progress=False):
        self.param_grid = param_grid
        self.cv = cv
        self.epochs = epochs
        self.hidden = hidden
        self.activation = activation
        self.loss = loss
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.input_norm = input_norm
        self.seeds = seeds
        self.scoring = scoring
        self.refit = refit
        self.backend = backend
        self.device = device
        self.progress = progress

    # -- checks

    def _grids(self) -> list[dict]:
        """param_grid as a list of dicts of lists, names checked."""
        grids = self.param_grid
        if isinstance(grids, dict):
            grids = [grids]
        if not isinstance(grids, (list, tuple)) or not grids \
                or not all(isinstance(g, dict) for g in grids):
            raise ValueError(f"param_grid: expected a dict or a list of dicts, got "
                             f"{type(self.param_grid).__name__}")
        for g in grids:
            for name, values in g.items():
                if name == "seed":
                    raise ValueError("param_grid: 'seed' is a replicate, not a candidate; "
                                     "use SweepSearchCV(seeds=N) or seeds=[...]")
                if name not in GRID_NAMES:
                    raise ValueError(f"param_grid: {name!r} is not a per-run hyperparameter"
                                     f"{_nearest(name, GRID_NAMES)} (one of "
                                     f"{', '.join(GRID_NAMES)})")
                if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") \
                        or len(values) == 0:
                    raise ValueError(f"param_grid: {name!r} needs a non-empty list of values, "
                                     f"got {values!r}")
        return [dict(g) for g in grids]

    def _seed_list(self) -> list[int]:
        s = self.seeds
        if isinstance(s, numbers.Integral) and not isinstance(s, bool):
            if s < 1:
                raise ValueError(f"seeds: expected an int >= 1 or a list of seeds, got {s!r}")
            return list(range(int(s)))
        try:
            seeds = [int(v) for v in s]
        except (TypeError, ValueError):
            raise ValueError(f"seeds: expected an int >= 1 or a list of seeds, got {s!r}") \
                from None
        if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError(f"seeds: expected distinct seeds >= 0, got {s!r}")
        return seeds

    def _scoring(self, classifier: bool) -> str:
        kind = "classifier" if classifier else "regressor"
        allowed = SCORINGS[kind]
        if self.scoring is None:
            return allowed[0]
        if self.scoring not in allowed:
            raise ValueError(f"scoring: expected None or one of {', '.join(allowed)} for a "
                             f"{kind}, got {self.scoring!r}")
        return self.scoring

    def _estimator(self, params: dict, classifier: bool):
        """The single-model estimator of one candidate (seed: the first)."""
        cls = MLPClassifier if classifier else MLPRegressor
        args = {"hidden": self.hidden, "activation": self.activation, "loss": self.loss_function_,
                "optimizer": self.optimizer, "lr": self.lr, "batch_size": self.batch_size,
                "epochs": self.epochs, "input_norm": self.input_norm, "seed": self._seed_list()[0],
                "backend": self.backend, "device": self.device}
        return cls(**{**args, **params})

    # -- the search

    def fit(self, X, y, groups=None):
        """Trains every candidate of param_grid on every fold of ``cv`` (and every seed)
        as one sweep per param_grid dict, fills cv_results_ and the best_* attributes,
        and with ``refit``, refits the best candidate on every row. Returns self."""
        grids = self._grids()
        seeds = self._seed_list()
        X_given, y_given = X, y          # the refit sees them as given (DataFrame columns)
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        _check_y_finite(y)
        loss = self.loss
        if loss == "auto":
            loss = _auto_loss(y)
        elif loss not in CLASS_LOSSES + ("mse",):
            raise ValueError(f"loss: expected auto, mse, cross_entropy or bce_with_logits, "
                             f"got {loss!r}")
        classifier = loss in CLASS_LOSSES
        scoring = self._scoring(classifier)
        if classifier:
            self.classes_, codes = _encode_classes(y)
            if loss == "bce_with_logits" and len(self.classes_) != 2:
                raise ValueError(f"loss='bce_with_logits' takes two classes; y has "
                                 f"{len(self.classes_)}")
            target = codes.astype(np.float64)
        else:
            target = np.asarray(y, np.float64)
        self.loss_function_ = loss
        table = _assignment(self.cv, X, codes if classifier else target, groups, classifier,
                            self.classes_ if classifier else None)
        self.n_splits_ = len(table) * (int(table.max()) + 1)

        self._fit_time = 0.0
        parts, self.results_ = [], None

        def evaluate(grid_list: list[dict]) -> None:
            for grid in grid_list:
                parts.append(self._evaluate_grid(grid, X, target, table, seeds, scoring))

        self._run_search(evaluate, grids)
        self.cv_results_ = self._format_results(grids, parts)
        self.best_index_ = int(np.argmin(self.cv_results_["rank_test_score"]))
        self.best_params_ = self.cv_results_["params"][self.best_index_]
        self.best_score_ = float(self.cv_results_["mean_test_score"][self.best_index_])
        if self.refit:
            t0 = time.perf_counter()
            self.best_estimator_ = self._estimator(self.best_params_, classifier)
            self.best_estimator_._fit_seeds(X_given, y_given, seeds)
            self.refit_time_ = time.perf_counter() - t0
        return self

    def _run_search(self, evaluate_grids, grids: list[dict]) -> None:
        """Hands the grids to train to ``evaluate_grids`` (each grid one sweep of its
        candidates x folds x seeds), which fills the results; a search that schedules
        candidates otherwise (halving, batches of random draws) overrides only this."""
        evaluate_grids(grids)

    def _evaluate_grid(self, grid: dict, X, target, table, seeds, scoring) -> dict:
        """Trains one grid's candidates x splits x seeds as one sweep; returns its scores
        [candidates, splits] (mean over seeds), its fit seconds and its Results."""
        names = sorted(grid)            # ParameterGrid's order: the last varies fastest
        params = {}
        for name in names:
            values = [_plain(v) for v in grid[name]]
            if name == "hidden":
                values = [_widths(v, "param_grid['hidden']") for v in grid[name]]
            params[name] = values
        params["seed"] = seeds
        config = {"name": "SweepSearchCV",
                  "data": {"cv": {"assignment": table}},
                  "model": {"hidden": _widths(self.hidden, "hidden"),
                            "activation": self.activation, "loss": self.loss_function_},
                  "train": {"epochs": _plain(self.epochs), "optimizer": self.optimizer,
                            "lr": _plain(self.lr), "batch_size": _plain(self.batch_size),
                            "input_norm": self.input_norm},
                  "sweep": {"strategy": "grid", "params": params}}
        from .trainer.pipeline.sweep import run
        t0 = time.perf_counter()
        try:
            res = run(config, backend=self.backend, device=self.device, data=(X, target),
                      progress=self.progress)
        except UserError as e:
            raise _value_error(e) from None
        seconds = time.perf_counter() - t0
        n_cand = int(np.prod([len(grid[k]) for k in names], dtype=np.int64))
        n_splits = len(table) * (int(table.max()) + 1)
        # Runs are numbered split-major (trainer/spec/folds.py): [splits, candidates, seeds].
        fold = res.table["fold"].to_numpy()
        repeat = res.table["repeat"].to_numpy() if "repeat" in res.table else 0
        split = repeat * (int(table.max()) + 1) + fold
        assert (split == np.arange(len(split)) // (n_cand * len(seeds))).all()
        scores = self._run_scores(res.table, target, table, scoring)
        scores = scores.reshape(n_splits, n_cand, len(seeds)).mean(axis=2).T
        if self.results_ is None:
            self.results_ = res
        return {"scores": scores, "seconds": seconds, "candidates": n_cand}

    @staticmethod
    def _run_scores(runs, target, table, scoring: str) -> np.ndarray:
        """Each run's score on its own fold, float64 [runs]; NaN for a diverged run."""
        if scoring == "accuracy":
            s = runs["final_val_accuracy"].to_numpy(np.float64)
        elif scoring in ("neg_log_loss", "neg_mean_squared_error"):
            s = -runs["final_val_loss"].to_numpy(np.float64)
        else:                       # r2 = 1 - SSE/SST per fold, from the fold's mse
            y = target.astype(np.float32).astype(np.float64).reshape(len(target), -1)
            folds = int(table.max()) + 1
            ids = (np.arange(len(table))[:, None] * folds + table).ravel()   # [R * n]
            yy = np.tile(y, (len(table), 1))
            count = np.bincount(ids, minlength=len(table) * folds)
            sums = np.stack([np.bincount(ids, yy[:, j], len(count)) for j in range(y.shape[1])], 1)
            mean = sums / count[:, None]
            sq = np.stack([np.bincount(ids, (yy[:, j] - mean[ids, j]) ** 2, len(count))
                           for j in range(y.shape[1])], 1)
            var = sq.sum(axis=1) / count                    # [splits], summed over outputs
            split = runs["fold"].to_numpy() + folds * (runs["repeat"].to_numpy()
                                                       if "repeat" in runs else 0)
            mse = runs["final_val_loss"].to_numpy(np.float64) * y.shape[1]
            with np.errstate(divide="ignore", invalid="ignore"):
                s = np.where(var[split] > 0, 1 - mse / var[split],
                             np.where(mse == 0, 1.0, 0.0))   # r2_score's force_finite
        return np.where(runs["diverged"].to_numpy(bool), np.nan, s)

    def _format_results(self, grids: list[dict], parts: list[dict]) -> dict:
        """cv_results_ as columns, as GridSearchCV's _format_results writes them."""
        scores = np.concatenate([p["scores"] for p in parts])        # [candidates, splits]
        n_cand, n_splits = scores.shape
        sizes = [p["candidates"] for p in parts]
        out: dict = {}
        fit = np.concatenate([np.full(p["candidates"], p["seconds"] / (p["candidates"] * n_splits))
                              for p in parts])
        out["mean_fit_time"] = fit
        out["std_fit_time"] = np.zeros(n_cand)
        out["mean_score_time"] = np.zeros(n_cand)
        out["std_score_time"] = np.zeros(n_cand)
        names = sorted({k for g in grids for k in g})
        for name in names:
            cols = [_param_column(g, name, size) for g, size in zip(grids, sizes)]
            col = np.concatenate([c for c, _ in cols])
            present = np.concatenate([np.full(size, has) for (_, has), size in zip(cols, sizes)])
            out[f"param_{name}"] = _masked_column(col, present)
        out["params"] = [p for g in grids for p in ParameterGrid(g)]
        for k in range(n_splits):
            out[f"split{k}_test_score"] = scores[:, k]
        out["mean_test_score"] = scores.mean(axis=1)
        out["std_test_score"] = scores.std(axis=1)
        out["rank_test_score"] = _rank(out["mean_test_score"])
        return out

    # -- the refitted model

    def _best(self):
        check_is_fitted(self, "cv_results_")
        if not self.refit:
            raise AttributeError("SweepSearchCV(refit=False) keeps no model; refit=True to "
                                 "predict")
        return self.best_estimator_

    def predict(self, X):
        return self._best().predict(X)

    def predict_proba(self, X):
        return self._best().predict_proba(X)

    def predict_log_proba(self, X):
        return self._best().predict_log_proba(X)

    def decision_function(self, X):
        return self._best().decision_function(X)

    def score(self, X, y):
        """The refitted model's score on (X, y): ``scoring``'s (None: accuracy or R²)."""
        best = self._best()
        if self.scoring is None:
            return best.score(X, y)
        from sklearn.metrics import get_scorer
        return get_scorer(self.scoring)(best, X, y)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if self.loss in CLASS_LOSSES:
            from sklearn.utils import ClassifierTags
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags()
        elif self.loss == "mse":
            from sklearn.utils import RegressorTags
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
        return tags
