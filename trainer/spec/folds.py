"""Cross-validation folds as a run axis (``data.cv``).

A fold is a row table, like the shuffle orders: ``fold_assignment`` gives every row its
fold for every repeat, int32 [repeats, n], and a run trained on (repeat r, fold k) has as
its training rows the rows whose fold is not k (in their original order) and as its
validation split the rows whose fold is k (in their original order too).

How a sweep trains them (sweep.py): every setting of the search space trains once per
(repeat, fold) -- a *split*, numbered ``repeat * folds + fold``. The runs are numbered
split-major, so that one split's runs are a contiguous range of run_ids: all settings on
split 0, then all on split 1, ... A split is then trained exactly like a whole sweep
without folds is: its own Dataset (built once, from the row table), its runs cut into
chunks that never straddle two splits, each chunk through the unchanged backend path.
That keeps every backend, chunking, --resume and the Ray executor as they are (a chunk
still has one Dataset), and ``standardize`` takes its statistics from the split's own
training rows for free (Dataset.standardization). The loop over splits is a loop over
distinct values, like the loop over architectures, never over runs.

Config: ``data.cv: K`` (an int >= 2) or ``{folds: K, repeats: R, shuffle_seed: S}``; from
the Python API also ``{assignment: [n] or [R, n] fold ids}`` (a scikit-learn splitter's
test folds, as row tables).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import UserError, check_keys

if TYPE_CHECKING:
    import numpy as np

    from .data import Dataset

# Losses whose targets are classes: their folds are stratified.
CLASS_LOSSES = ("bce_with_logits", "cross_entropy")
CV_KEYS = ("folds", "repeats", "shuffle_seed", "assignment")
MAX_REPEATS = 1000


def _whole(value, where: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise UserError(f"{where}: expected an integer >= {lo}, got {value!r}")
    return int(value)


def check_cv(value: Any, val_fraction: float) -> dict | None:
    """``data.cv`` checked, as the resolved config records it: None, or a dict
    ``{folds, repeats, shuffle_seed}`` or ``{folds, repeats, assignment}`` (assignment a
    list of R lists of n ints). Row counts and classes are checked with the data
    (``make_assignment``)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        folds = _whole(value, "data.cv", 2)
        value = {"folds": folds}
    check_keys(value, CV_KEYS, "data.cv")
    if val_fraction:
        raise UserError(f"data.cv and data.val_fraction ({val_fraction!r}): each fold is "
                        f"the validation split of its runs; drop val_fraction")
    if "assignment" in value:
        if "shuffle_seed" in value:
            raise UserError("data.cv.shuffle_seed: not used with data.cv.assignment, which "
                            "gives every repeat's folds")
        table = check_assignment(value["assignment"])
        folds = int(table.max()) + 1
        # folds and repeats may be given (a resolved config records them): they must agree
        if "folds" in value and _whole(value["folds"], "data.cv.folds", 2) != folds:
            raise UserError(f"data.cv.folds: {value['folds']!r}, but data.cv.assignment "
                            f"holds folds 0..{folds - 1}")
        if "repeats" in value and _whole(value["repeats"], "data.cv.repeats", 1) != len(table):
            raise UserError(f"data.cv.repeats: {value['repeats']!r}, but data.cv.assignment "
                            f"holds {len(table)}")
        return {"folds": folds, "repeats": len(table), "assignment": table.tolist()}
    if "folds" not in value:
        raise UserError("data.cv.folds: required (an integer >= 2), e.g. data.cv: {folds: 5}")
    folds = _whole(value["folds"], "data.cv.folds", 2)
    repeats = _whole(value.get("repeats", 1), "data.cv.repeats", 1)
    if repeats > MAX_REPEATS:
        raise UserError(f"data.cv.repeats: expected at most {MAX_REPEATS}, got {repeats}")
    seed = _whole(value.get("shuffle_seed", 0), "data.cv.shuffle_seed", 0)
    if seed >= 2**63:
        raise UserError(f"data.cv.shuffle_seed: expected an integer below 2**63, got {seed}")
    return {"folds": folds, "repeats": repeats, "shuffle_seed": seed}


def fold_assignment(y, *, folds: int, repeats: int = 1, shuffle_seed: int = 0,
                    stratify: bool) -> np.ndarray:
    """The fold of every row in every repeat: int32 [repeats, n], values 0..folds-1.

    y: the targets, [n] (or [n, k]: several regression outputs; never stratified).
    stratify: keep each class's share in every fold (classification losses), else plain.

    Each repeat is one seeded permutation of the rows (repeat r is row r of one
    ``default_rng(shuffle_seed).random((repeats, n))`` draw, so adding repeats keeps the
    earlier ones), stably sorted by class when stratified; the j-th row in that order
    goes to fold ``j % folds``. So fold sizes differ by at most one, and so do one class's
    counts in the folds (as scikit-learn's StratifiedKFold; the rows drawn differ). No
    loop over rows or repeats: one argsort of [repeats, n].

    Raises UserError: y with NaN, fewer rows than folds, or (stratified) a class with fewer
    rows than folds, naming the class and its count.
    """
    import numpy as np

    y = np.asarray(y)
    n = len(y)
    folds = _whole(folds, "data.cv.folds", 2)
    repeats = _whole(repeats, "data.cv.repeats", 1)
    shuffle_seed = _whole(shuffle_seed, "data.cv.shuffle_seed", 0)
    if y.dtype.kind in "fc" and np.isnan(y).any():
        bad = int(np.flatnonzero(np.isnan(y).reshape(n, -1).any(axis=1))[0])
        raise UserError(f"data.cv: y has NaN (first at row {bad}); folds need a label or "
                        f"target for every row")
    if n < folds:
        raise UserError(f"data.cv.folds: {folds} folds of {n} rows; each fold needs a row "
                        f"(at most {n} folds)")
    u = np.random.default_rng(shuffle_seed).random((repeats, n))
    if stratify:
        if y.ndim != 1:
            raise UserError(f"data.cv: stratified folds need one label per row, got y of "
                            f"shape {tuple(y.shape)}")
        classes, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
        small = np.flatnonzero(counts < folds)
        if len(small):
            c = small[np.argmin(counts[small])]
            label = classes[c].item()
            label = int(label) if isinstance(label, float) and label.is_integer() else label
            raise UserError(f"data.cv.folds: {folds} folds, but class {label!r} has only "
                            f"{counts[c]} rows; stratified folds need at least {folds} rows "
                            f"of each class")
        key = codes.reshape(1, n) + u        # class first, then the random draw: u < 1
    else:
        key = u
    order = np.argsort(key, axis=1, kind="stable")                    # [repeats, n]
    table = np.empty((repeats, n), np.int32)
    np.put_along_axis(table, order, (np.arange(n) % folds).astype(np.int32)[None, :], axis=1)
    return table


def check_assignment(assignment, n: int | None = None) -> np.ndarray:
    """A user-given fold table (``data.cv.assignment``) checked: whole numbers >= 0, shape
    [n] or [R, n], every fold 0..max non-empty in every repeat, at least 2 folds. Returns
    int32 [R, n]. ``n``: the rows of the data, when known."""
    import numpy as np

    try:
        a = np.asarray(assignment)
    except (ValueError, TypeError) as e:
        raise UserError(f"data.cv.assignment: cannot be read as an array of fold ids "
                        f"({str(e).splitlines()[0]})") from None
    if a.dtype.kind == "f" and np.isfinite(a).all() and (a == np.round(a)).all():
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu" or a.size == 0:
        raise UserError(f"data.cv.assignment: expected whole-number fold ids, got an array of "
                        f"dtype {a.dtype} and shape {tuple(a.shape)}")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise UserError(f"data.cv.assignment: expected shape [n] or [repeats, n], got "
                        f"{tuple(a.shape)}")
    if n is not None and a.shape[1] != n:
        raise UserError(f"data.cv.assignment: {a.shape[1]} fold ids for {n} rows")
    if a.min() < 0:
        raise UserError(f"data.cv.assignment: fold ids are 0, 1, 2, ...; got {int(a.min())}")
    folds = int(a.max()) + 1
    if folds < 2:
        raise UserError("data.cv.assignment: every row is in fold 0; expected at least 2 folds")
    if folds > a.shape[1]:
        raise UserError(f"data.cv.assignment: fold id {folds - 1} with {a.shape[1]} rows; "
                        f"some fold is empty")
    # counts[r, k]: rows of fold k in repeat r, one bincount over repeat * folds + fold
    counts = np.bincount((np.arange(len(a))[:, None] * folds + a).ravel(),
                         minlength=len(a) * folds).reshape(len(a), folds)
    if (counts == 0).any():
        r, k = map(int, np.argwhere(counts == 0)[0])
        where = f" of repeat {r}" if len(a) > 1 else ""
        raise UserError(f"data.cv.assignment: fold {k}{where} is empty (fold ids 0..{folds - 1} "
                        f"must each hold a row)")
    return a.astype(np.int32)


@dataclass(eq=False)
class Folds:
    """A sweep's splits: ``full`` (every row, as Dataset.x_train/y_train, no validation
    rows), ``table`` int32 [R, n] the fold of each row per repeat, ``settings`` the runs
    per split. Run i trains on split ``i // settings``."""

    full: Dataset
    table: np.ndarray
    settings: int
    _cache: dict = field(default_factory=dict, repr=False)   # the last split's Dataset

    @property
    def folds(self) -> int:
        return int(self.table.max()) + 1

    @property
    def repeats(self) -> int:
        return len(self.table)

    @property
    def splits(self) -> int:
        return self.repeats * self.folds

    def split_of(self, run: int) -> int:
        return run // self.settings

    def bounds(self, chunk_runs: int) -> list[tuple[int, int]]:
        """The chunks (lo, hi) of the sweep: each split's runs cut in pieces of at most
        ``chunk_runs``, never across two splits."""
        out = []
        for s in range(self.splits):
            start, end = s * self.settings, (s + 1) * self.settings
            out += [(lo, min(lo + chunk_runs, end)) for lo in range(start, end, chunk_runs)]
        return out

    def n_train(self) -> np.ndarray:
        """int64 [splits]: the training rows of each split."""
        import numpy as np
        n = self.table.shape[1]
        sizes = np.stack([np.bincount(row, minlength=self.folds) for row in self.table])
        return (n - sizes).ravel().astype(np.int64)

    def dataset(self, split: int) -> Dataset:
        """Split ``split``'s Dataset: training rows = the other folds, validation = its
        fold, each in the original row order. The last one asked for is kept (chunks come
        split by split)."""
        if split not in self._cache:
            import torch

            from .data import Dataset
            repeat, fold = divmod(split, self.folds)
            val = torch.from_numpy(self.table[repeat] == fold)
            x, y = self.full.x_train, self.full.y_train
            self._cache.clear()
            self._cache[split] = Dataset(x[~val], y[~val], x[val], y[val],
                                         self.full.feature_names, self.full.n_outputs)
        return self._cache[split]

    def columns(self, runs: int) -> dict[str, np.ndarray]:
        """The results table's columns for ``runs`` runs: fold, and repeat when R > 1."""
        import numpy as np
        split = np.arange(runs, dtype=np.int64) // self.settings
        out = {"fold": split % self.folds}
        if self.repeats > 1:
            out["repeat"] = split // self.folds
        return out

    def __getstate__(self) -> dict:            # Ray ships the plan: no cached Dataset
        return {"full": self.full, "table": self.table, "settings": self.settings}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)


def make_assignment(cv: dict, y, loss: str) -> np.ndarray:
    """The fold table of a checked ``data.cv`` (check_cv) for targets y [n]."""
    if "assignment" in cv:
        return check_assignment(cv["assignment"], len(y))
    return fold_assignment(y, folds=cv["folds"], repeats=cv["repeats"],
                           shuffle_seed=cv["shuffle_seed"], stratify=loss in CLASS_LOSSES)

