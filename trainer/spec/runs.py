"""A sweep's runs as columns: one numpy array per hyperparameter, one entry per run.

A million runs is a normal sweep, so runs are never Python objects on its path: the search
space expands into columns (space.py), the columns are checked at once (``check_column``),
and chunks, backends and results slice, group and sort them with numpy. A hyperparameter
that no run varies is a zero-stride view of its one value, so it costs no memory whatever
the sweep's size. ``RunParams`` (config.py) stays the single source of the names, kinds,
defaults and checks; ``Runs.row`` gives one run as a RunParams where a per-run loop is the
point (the reference backend, diagnose's handful of runs, tests).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import (RUN_PARAM_NAMES, RunParams, check_run_value, run_field, widths_of,
                     widths_text)
from .errors import UserError

# numpy dtype of each kind of hyperparameter (config.py's field metadata); a choice is an
# int8 code into its field's choices (see Labels).
DTYPES = {"float": np.float64, "int": np.int64, "bool": np.bool_, "choice": np.int8,
          "widths": np.int8}
_INT64_LIMIT = 2.0**63


class Labels:
    """The column of a choice hyperparameter (input_norm, optimizer, lr_schedule): int8
    codes [R] into ``choices``. Compares with a string like an array of strings would
    (``runs.optimizer == "sgd"`` is a bool array) at the cost of int8 codes: a column of
    strings is 16 to 44 bytes a run, and gathering numpy's StringDType is 8x slower."""

    __slots__ = ("codes", "choices")

    def __init__(self, codes: np.ndarray, choices: tuple[str, ...]):
        self.codes, self.choices = codes, choices

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, key) -> Labels:
        return Labels(self.codes[key], self.choices)

    def code(self, value: str) -> int:
        """The code of ``value``; -1 (matches no run) for a value not among the choices."""
        return self.choices.index(value) if value in self.choices else -1

    def __eq__(self, value) -> np.ndarray:
        return self.codes == self.code(value)

    def __ne__(self, value) -> np.ndarray:
        return self.codes != self.code(value)

    __hash__ = None

    def text(self) -> np.ndarray:
        """The values as an object array of (shared) str."""
        return np.array(self.choices, dtype=object)[self.codes]


Column = np.ndarray | Labels


def constant(value, n: int, dtype) -> np.ndarray:
    """``value`` for each of ``n`` runs: a read-only zero-stride view, no memory per run."""
    return np.broadcast_to(np.asarray(value, dtype=dtype), (n,))


def _values(col: Column) -> np.ndarray:
    """A column's numpy array: a choice's codes, any other column itself."""
    return col.codes if isinstance(col, Labels) else col


def is_constant(column: Column) -> bool:
    codes = _values(column)
    return codes.strides == (0,) or len(codes) <= 1


class Runs:
    """R runs, one column [R] per RunParams field (resolved: weight_decay and step_size
    filled in), each checked. ``runs.lr`` is a float64 array, ``runs.input_norm`` a Labels;
    ``runs[lo:hi]`` and ``runs[index]`` are Runs again."""

    def __init__(self, columns: dict[str, Column]):
        missing = set(RUN_PARAM_NAMES) - set(columns)
        if missing:
            raise ValueError(f"Runs: no column for {sorted(missing)}")
        self.columns = {name: columns[name] for name in RUN_PARAM_NAMES}
        self.n = len(self.columns[RUN_PARAM_NAMES[0]])

    def __len__(self) -> int:
        return self.n

    def __getattr__(self, name: str) -> Column:
        try:
            return self.__dict__["columns"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key) -> Runs:
        """The runs a slice, an index array or a bool mask selects, as Runs."""
        if isinstance(key, (int, np.integer)):
            raise TypeError("Runs[i] selects runs as Runs; use Runs.row(i) for one RunParams")
        return Runs({name: col[key] for name, col in self.columns.items()})

    def replace(self, **columns: Column) -> Runs:
        """These runs with some columns replaced (each [R])."""
        return Runs({**self.columns, **columns})

    def __repr__(self) -> str:
        return f"Runs({self.n})"

    def __eq__(self, other) -> bool:
        """Same runs, same values (NaN equal to NaN), column by column."""
        if not isinstance(other, Runs) or len(other) != len(self):
            return NotImplemented if not isinstance(other, Runs) else False
        return all(np.array_equal(_values(a), _values(other.columns[k]), equal_nan=True)
                   for k, a in self.columns.items())

    __hash__ = None

    def distinct(self, name: str) -> np.ndarray:
        """The sorted distinct values of a numeric column; one read for a constant one
        (np.unique would sort all R entries)."""
        col = _values(self.columns[name])
        return np.unique(col[:1] if is_constant(col) else col)

    def row(self, i: int) -> RunParams:
        """Run ``i`` as a RunParams (for per-run loops over a handful of runs)."""
        values = {}
        for name, col in self.columns.items():
            if isinstance(col, Labels):
                values[name] = col.choices[int(col.codes[i])]
            else:
                values[name] = col[i].item()
        values["hidden"] = widths_of(values["hidden"])
        return RunParams(**values)

    def architectures(self) -> list[tuple[int, ...]]:
        """The hidden widths the runs may take (a superset of those they take)."""
        return [widths_of(t) for t in self.hidden.choices]

    def rows(self) -> list[RunParams]:
        return [self.row(i) for i in range(self.n)]

    @staticmethod
    def from_rows(rows: list[RunParams]) -> Runs:
        """Runs from resolved RunParams (a handful: diagnose's sweep, tests)."""
        columns = {}
        for name in RUN_PARAM_NAMES:
            values = [getattr(r, name) for r in rows]
            meta = run_field(name)
            if meta["kind"] == "choice":
                columns[name] = Labels(np.array([meta["choices"].index(v) for v in values],
                                                dtype=np.int8), meta["choices"])
            elif meta["kind"] == "widths":
                columns[name] = _widths_column(values)
            else:
                columns[name] = np.array(values, dtype=DTYPES[meta["kind"]])
        return Runs(columns)

    # Pickled (Ray ships the plan to every task) with constant columns as one value, not R.
    def __getstate__(self) -> dict:
        packed = {}
        for name, col in self.columns.items():
            codes = _values(col)
            choices = col.choices if isinstance(col, Labels) else None
            packed[name] = ("constant", codes[:1].copy(), self.n, choices) if is_constant(codes) \
                else ("array", np.ascontiguousarray(codes), None, choices)
        return {"packed": packed}

    def __setstate__(self, state: dict) -> None:
        columns = {}
        for name, (how, values, n, choices) in state["packed"].items():
            codes = constant(values[0], n, values.dtype) if how == "constant" and n > 0 \
                else values
            columns[name] = Labels(codes, choices) if choices is not None else codes
        self.__init__(columns)


# ---- checks, a column at a time ----------------------------------------------------------
def check_column(name: str, values: list | np.ndarray, rounded: bool = False
                 ) -> tuple[Column, np.ndarray]:
    """Checks the values one hyperparameter takes; returns (column, bad).

    values: a list of config values (any Python types: each checked as check_run_value
    does), or a float64 array from a numeric form (linspace, uniform, ...; ``rounded``: its
    ``int: true`` values, integral, stand for Python ints). bad: bool [len(values)], the
    values check_run_value refuses; their entries in the column are placeholders. The
    caller raises for the first bad value a run uses (``raise_for``), so the error names
    the same key and value as a check per run would.
    """
    meta = run_field(name)
    kind = meta["kind"]
    if isinstance(values, np.ndarray):
        return _check_array(meta, values, rounded)
    out, bad = [], np.zeros(len(values), dtype=bool)
    placeholder = meta["choices"][0] if kind == "choice" else getattr(RunParams, name)
    placeholder = 0 if placeholder is None else placeholder
    for i, value in enumerate(values):      # the distinct values the user wrote
        try:
            out.append(check_run_value(name, value, "-"))
        except UserError:
            out.append(placeholder)
            bad[i] = True
    if kind == "choice":
        return Labels(np.array([meta["choices"].index(v) for v in out], np.int8),
                      meta["choices"]), bad
    if kind == "widths":
        return _widths_column(out), bad
    return np.array(out, dtype=DTYPES[kind]), bad


def _widths_column(values: list[tuple[int, ...]]) -> Labels:
    """Hidden widths as a Labels column: int8 codes into the distinct architectures' text
    (config.widths_text: "16-16"), in order of first appearance."""
    texts = [widths_text(v) for v in values]
    choices = tuple(dict.fromkeys(texts)) or ("none",)
    if len(choices) > 127:
        raise UserError(f"hidden: {len(choices)} architectures in one sweep; at most 127")
    return Labels(np.array([choices.index(t) for t in texts], np.int8), choices)


def _check_array(meta: dict, xs: np.ndarray, rounded: bool) -> tuple[Column, np.ndarray]:
    """check_column on a float64 array, vectorized: the same verdicts as check_run_value
    on each float (or int, if ``rounded``), value by value (tests/test_runs.py checks)."""
    kind = meta["kind"]
    if kind in ("bool", "choice", "widths"):   # numbers are never true/false or a choice
        bad = np.ones(len(xs), dtype=bool)
        if kind == "choice":
            return Labels(np.zeros(len(xs), np.int8), meta["choices"]), bad
        if kind == "widths":
            return Labels(np.zeros(len(xs), np.int8), ("none",)), bad
        return np.zeros(len(xs), dtype=bool), bad
    bad = ~np.isfinite(xs)
    if rounded:                              # an int past 1000 bits is out of range
        bad |= np.abs(xs) >= 2.0**1000
    if kind == "int":
        bad |= (xs != np.trunc(xs)) | (np.abs(xs) >= _INT64_LIMIT)   # every int check < 2**63
        column = np.where(bad, 0, xs).astype(np.int64)
    else:
        column = np.where(bad, 0.0, xs)
    if meta["check"] is not None:
        bad |= ~np.asarray(meta["check"](column), dtype=bool)
    return column, bad


def raise_for(name: str, value: Any, where: str) -> None:
    """Raises the UserError check_run_value gives for a value check_column marked bad."""
    check_run_value(name, value, where)
    raise AssertionError(f"{where}: check_column refused {value!r}, check_run_value did not")


def python_value(values: list | np.ndarray, i: int, rounded: bool):
    """Entry ``i`` of check_column's input as the config value it stands for."""
    if isinstance(values, np.ndarray):
        return int(values[i]) if rounded else float(values[i])
    return values[i]


def resolve(columns: dict[str, Column]) -> dict[str, Column]:
    """Fills in the defaults that depend on other hyperparameters, as RunParams.resolved
    does: weight_decay (0.01 for adamw, else 0) and step_size (max(1, epochs // 3)), where
    ``columns`` lacks them."""
    out = dict(columns)
    if "weight_decay" not in out:
        adamw = out["optimizer"].code("adamw")
        out["weight_decay"] = _derive(out["optimizer"].codes,
                                      lambda c: np.where(c == adamw, 0.01, 0.0))
    if "step_size" not in out:
        out["step_size"] = _derive(out["epochs"], lambda e: np.maximum(1, e // 3))
    return out


def _derive(source: np.ndarray, fn) -> np.ndarray:
    """fn over a column; over a constant column's one value, so the result stays constant."""
    if is_constant(source) and len(source):
        return np.broadcast_to(fn(source[:1]), source.shape)
    return fn(source)


def check_runs(runs: Runs, where: str = "sweep", before: int | None = None) -> None:
    """The checks that involve more than one hyperparameter: as torch.optim.SGD, nesterov
    needs momentum > 0. ``before``: only runs before this one are checked."""
    bad = (runs.optimizer == "sgd") & runs.nesterov & (runs.momentum <= 0)
    if before is not None:
        bad = bad[:before]
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{where}: run {i}: nesterov: true needs momentum > 0 (as in "
                        f"torch.optim.SGD), got momentum {float(runs.momentum[i])}")


def default_column(name: str, value, n: int) -> Column:
    """A column of ``n`` runs that all take ``value`` (checked), no memory per run."""
    meta = run_field(name)
    if meta["kind"] == "choice":
        return Labels(constant(meta["choices"].index(value), n, np.int8), meta["choices"])
    if meta["kind"] == "widths":
        return Labels(constant(0, n, np.int8), (widths_text(value),))
    return constant(value, n, DTYPES[meta["kind"]])


def tile_runs(runs: Runs, times: int) -> Runs:
    """``runs`` repeated ``times`` times, one after the other (a split's settings, for each
    split); a constant column stays a zero-stride view."""
    columns = {}
    n = len(runs) * times
    for name, col in runs.columns.items():
        codes = col.codes if isinstance(col, Labels) else col
        codes = constant(codes[0], n, codes.dtype) if is_constant(codes) and len(codes) \
            else np.tile(codes, times)
        columns[name] = Labels(codes, col.choices) if isinstance(col, Labels) else codes
    return Runs(columns)
