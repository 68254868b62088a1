"""Expanding a sweep's search space into runs.

Grid runs are numbered 0..R-1 in row-major order over the params in the order the config
lists them (the last varies fastest); random runs are numbered in draw order.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .config import Config, RunParams, check_run, check_run_value
from .errors import UserError

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


def _as_python(x, rounded: bool):
    return int(round(float(x))) if rounded else float(x)


def grid_axis(value, where: str) -> list:
    """The values one grid param takes, in order (before type checks)."""
    if isinstance(value, list):
        if not value:
            raise UserError(f"{where}: an empty list gives no runs")
        return value
    if isinstance(value, dict):
        form, (lo, hi, n) = _range_form(value, where, _GRID_FORMS)
        with np.errstate(over="ignore"):      # 10**400 becomes inf, refused below
            xs = np.linspace(lo, hi, int(n)) if form == "linspace" else np.logspace(lo, hi, int(n))
        if not np.isfinite(xs).all():
            raise UserError(f"{where}.{form}: {value[form]!r} reaches numbers beyond float range")
        return [_as_python(x, value.get("int", False)) for x in xs]
    return [value]


def _draw(value, where: str, rng: np.random.Generator):
    """One random draw of one param: list -> uniform choice; uniform; loguniform; scalar."""
    if isinstance(value, list):
        if not value:
            raise UserError(f"{where}: an empty list gives no runs")
        return value[int(rng.integers(len(value)))]
    if isinstance(value, dict):
        form, (lo, hi) = _range_form(value, where, _RANDOM_FORMS)
        x = rng.uniform(lo, hi) if form == "uniform" else np.exp(rng.uniform(np.log(lo), np.log(hi)))
        return _as_python(x, value.get("int", False))
    return value


def expand(config: Config) -> list[RunParams]:
    """All runs of the sweep, in run_id order, each checked and resolved."""
    names = list(config.sweep.params)
    if config.sweep.strategy == "grid":
        axes = [grid_axis(config.sweep.params[k], f"sweep.params.{k}") for k in names]
        size = math.prod(len(a) for a in axes)
        if size > MAX_RUNS:
            raise UserError(f"sweep.params: the grid has {size:,} runs, more than a sweep "
                            f"holds ({MAX_RUNS:,}); split it into several sweeps")
        combos = list(itertools.product(*axes))
    else:
        if config.sweep.samples > MAX_RUNS:
            raise UserError(f"sweep.samples: {config.sweep.samples:,} runs is more than a "
                            f"sweep holds ({MAX_RUNS:,}); split it into several sweeps")
        rng = np.random.default_rng(config.sweep.seed)
        combos = [tuple(_draw(config.sweep.params[k], f"sweep.params.{k}", rng) for k in names)
                  for _ in range(config.sweep.samples)]
    runs = []
    for run_id, combo in enumerate(combos):
        values = dict(config.train)
        for k, v in zip(names, combo):
            values[k] = check_run_value(k, v, f"sweep.params.{k}")
        run = RunParams(**values).resolved()
        check_run(run, f"sweep: run {run_id}")
        runs.append(run)
    return runs
