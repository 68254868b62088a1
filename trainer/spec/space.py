"""Expanding a sweep's search space into runs.

Grid runs are numbered 0..R-1 in row-major order over the params in the order the config
lists them (the last varies fastest); random runs are numbered in draw order.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .config import RUN_PARAM_NAMES, Config, RunParams, check_run_value
from .draws import draw_columns
from .errors import UserError
from .runs import (Labels, Runs, check_column, check_runs, default_column, python_value,
                   raise_for, resolve)

# Runs in one sweep, at most: each costs a few hundred bytes of bookkeeping before any
# training, and 10 million already make a results table of gigabytes.
MAX_RUNS = 10_000_000
_GRID_FORMS = ("linspace", "logspace")
_RANDOM_FORMS = ("uniform", "loguniform")


def _range_form(value: dict, where: str, forms: tuple[str, ...]) -> tuple[str, list]:
    """Returns (form, arguments) of a ``{form: [...], int: bool}`` mapping."""
    keys = [k for k in value if k != "int"]
    if len(keys) != 1 or keys[0] not in forms:
        raise UserError(f"{where}: expected a scalar, a list or one of "
                        f"{', '.join('{' + f + ': [...]}' for f in forms)}, got {value!r}")
    if not isinstance(value.get("int", False), bool):
        raise UserError(f"{where}.int: expected true or false, got {value['int']!r}")
    form = keys[0]
    args = value[form]
    n_args = 3 if form in _GRID_FORMS else 2
    if not isinstance(args, list) or len(args) != n_args or any(
            isinstance(a, bool) or not isinstance(a, (int, float)) for a in args):
        raise UserError(f"{where}.{form}: expected a list of {n_args} numbers, got {args!r}")
    if not all(math.isfinite(a) for a in args):
        raise UserError(f"{where}.{form}: expected finite numbers, got {args!r}")
    if form in _GRID_FORMS and args[2] > MAX_RUNS:
        raise UserError(f"{where}.{form}: {args[2]:g} points is more than a sweep holds "
                        f"({MAX_RUNS:,} runs)")
    if form in _GRID_FORMS and (args[2] != int(args[2]) or args[2] < 1):
        raise UserError(f"{where}.{form}: the count (third number) must be an integer >= 1, "
                        f"got {args[2]!r}")
    if form == "loguniform" and not 0 < args[0] <= args[1]:
        raise UserError(f"{where}.loguniform: expected 0 < lo <= hi, got {args!r}")
    if form == "uniform" and not args[0] <= args[1]:
        raise UserError(f"{where}.uniform: expected lo <= hi, got {args!r}")
    return form, args


def grid_axis(value, where: str) -> tuple[list | np.ndarray, bool]:
    """The values one grid param takes, in order (before type checks): a list of config
    values, or a float64 array of a linspace or logspace; and whether ``int: true`` rounded
    them."""
    if isinstance(value, list):
        if not value:
            raise UserError(f"{where}: an empty list gives no runs")
        return value, False
    if isinstance(value, dict):
        form, (lo, hi, n) = _range_form(value, where, _GRID_FORMS)
        with np.errstate(over="ignore"):      # 10**400 becomes inf, refused below
            xs = np.linspace(lo, hi, int(n)) if form == "linspace" else np.logspace(lo, hi, int(n))
        if not np.isfinite(xs).all():
            raise UserError(f"{where}.{form}: {value[form]!r} reaches numbers beyond float range")
        rounded = value.get("int", False)
        return (np.round(xs) if rounded else xs), rounded
    return [value], False


def _random_spec(value, where: str) -> tuple:
    """How one random param is drawn, as draws.draw_columns takes it."""
    if isinstance(value, list):
        if not value:
            raise UserError(f"{where}: an empty list gives no runs")
        return ("choice", len(value))
    if isinstance(value, dict):
        form, (lo, hi) = _range_form(value, where, _RANDOM_FORMS)
        return (form, lo, hi)
    return ("fixed",)


def expand(config: Config) -> Runs:
    """All runs of the sweep, in run_id order, as columns, checked and resolved.

    Each param's distinct values are checked once (check_column); a grid's columns are
    its axes repeated and tiled, a random sweep's are draws. An error names the first run,
    in run_id order, that takes a bad value, and its first such param: as checking run
    after run would.
    """
    params = {k: _widths_axis(v) if k == "hidden" else v for k, v in config.sweep.params.items()}
    config = dataclasses.replace(config, sweep=dataclasses.replace(config.sweep, params=params))
    names = list(config.sweep.params)
    wheres = [f"sweep.params.{k}" for k in names]
    if config.sweep.strategy == "grid":
        axes = [grid_axis(config.sweep.params[k], w) for k, w in zip(names, wheres)]
        lengths = [len(values) for values, _ in axes]
        size = math.prod(lengths)
        if size > MAX_RUNS:
            raise UserError(f"sweep.params: the grid has {size:,} runs, more than a sweep "
                            f"holds ({MAX_RUNS:,}); split it into several sweeps")
        strides = [math.prod(lengths[k + 1:]) for k in range(len(names))]
        checked = [check_column(k, values, rounded) for k, (values, rounded) in zip(names, axes)]
        # The first bad value of axis k is first used by run (its index) * (its stride).
        firsts = [(int(np.argmax(bad)) * stride, int(np.argmax(bad))) if bad.any() else None
                  for (_, bad), stride in zip(checked, strides)]
        sources = axes
        columns = {k: _grid_column(col, stride, size)
                   for k, (col, _), stride in zip(names, checked, strides)}
    else:
        size = config.sweep.samples
        if size > MAX_RUNS:
            raise UserError(f"sweep.samples: {size:,} runs is more than a "
                            f"sweep holds ({MAX_RUNS:,}); split it into several sweeps")
        specs = [_random_spec(config.sweep.params[k], w) for k, w in zip(names, wheres)]
        drawn = draw_columns(config.sweep.seed, specs, size)
        columns, firsts, sources = {}, [], []
        for k, spec, draws in zip(names, specs, drawn):
            value = config.sweep.params[k]
            if spec[0] == "fixed":
                values, rounded = [value], False
                col, bad = check_column(k, values)
                columns[k] = _constant_like(col, size)
                firsts.append((0, 0) if bad[0] and size else None)
            elif spec[0] == "choice":        # draws: indices into the list
                values, rounded = value, False
                col, bad = check_column(k, values)
                columns[k] = col[draws]
                bad_runs = bad[draws]
                first = int(np.argmax(bad_runs)) if bad_runs.any() else None
                firsts.append(None if first is None else (first, int(draws[first])))
            else:                             # draws: the values
                rounded = value.get("int", False)
                values = np.round(draws) if rounded else draws
                columns[k], bad = check_column(k, values, rounded)
                first = int(np.argmax(bad)) if bad.any() else None
                firsts.append(None if first is None else (first, first))
            sources.append((values, rounded))
    defaults = {"hidden": config.model.hidden, "activation": config.model.activation,
                **config.train}
    for name in RUN_PARAM_NAMES:
        if name not in columns and (name in defaults or getattr(RunParams, name) is not None):
            columns[name] = default_column(name, defaults.get(name, getattr(RunParams, name)),
                                           size)
    # Bad values are placeholders in the columns, only in runs from the first bad one on:
    # a run before it that fails the checks across params is the first error, as checking
    # run after run (values, then across them) would find.
    errors = [(first[0], k) for k, first in enumerate(firsts) if first is not None]
    runs = Runs(resolve(columns))
    check_runs(runs, before=min(errors)[0] if errors else None)
    if errors:
        _, k = min(errors)
        values, rounded = sources[k]
        raise_for(names[k], python_value(values, firsts[k][1], rounded), wheres[k])
    return runs


def fixed_values(config: Config) -> tuple[dict, list[str]]:
    """What every run of the sweep shares, checked: the model section's architecture and the
    train section's values, overridden by the sweep params that take one value (``hidden:
    [16]`` is one architecture); and the names of the params that take several."""
    fixed = {"hidden": config.model.hidden, "activation": config.model.activation,
             **config.train}
    swept = []
    for name, value in config.sweep.params.items():
        value = _widths_axis(value) if name == "hidden" else value
        if isinstance(value, list) and len(value) == 1:
            fixed[name] = check_run_value(name, value[0], f"sweep.params.{name}")
        elif isinstance(value, (list, dict)):
            swept.append(name)
        else:
            fixed[name] = check_run_value(name, value, f"sweep.params.{name}")
    return fixed, swept


def _widths_axis(value):
    """sweep.params.hidden: a list of lists is an axis of architectures; a list of widths
    (or []) is one architecture."""
    if isinstance(value, list) and not any(isinstance(v, (list, dict)) for v in value):
        return [value]
    return value


def _grid_column(col, stride: int, size: int):
    """An axis as a grid column: each value repeated ``stride`` times, the whole tiled
    to ``size`` runs; a one-value axis stays one value (constant)."""
    if len(col) == 1:
        return _constant_like(col, size)
    index = np.arange(size, dtype=np.int64) // stride % len(col)
    return col[index]


def _constant_like(col, size: int):
    """The first value of a column, for each of ``size`` runs (zero-stride)."""
    if isinstance(col, Labels):
        return Labels(np.broadcast_to(col.codes[:1], (size,)), col.choices)
    return np.broadcast_to(col[:1], (size,))
