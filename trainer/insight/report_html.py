"""report.html: a sweep's results as one self-contained interactive page.

``write_html(res, out)`` writes ``out/report.html`` beside report.md. The page holds:

    parallel coordinates   one line per setting shown (its swept hyperparameters, then its
                           final metrics, means over replicates); log axes for log-spaced
                           values, coded ticks for choices; brushing on every axis and a
                           "best k%" control; the selection drives the learning curves
    importance             how much of the variance of the setting means each swept
                           parameter explains on its own, against the part that the spread
                           between seeds and folds alone would explain
    interaction heatmaps   the setting means over the most important pairs of parameters
    learning curves        the selected settings (or the best and worst), a setting's
                           hyperparameters on hover
    schedules              sweep.hyperband: a plot per bracket (stopped runs, survivors, the
                           best); sweep.pbt: the members with their exploit jumps, the best
                           lineages and the hyperparameter schedules found
                           (report_schedules.py's values, thinned)
    the best settings      a plain table, readable without JavaScript

Library: Plotly (plotly.js 4, the ``plotly.min.js`` that the ``plotly`` pip package ships in
``plotly/package_data``), inlined: 4.8 MB, no request, opens from disk offline. Chosen over
Vega-Lite because its WebGL ``parcoords`` trace brushes every axis natively (Vega-Lite has no
parallel-coordinates mark: a fold transform and a brush per axis by hand), and because pip
already ships the offline bundle (Vega-Lite needs vega, vega-lite and vega-embed from npm,
versioned by hand). plotly's Python API is never imported: the figures are built in the page
from the data, so writing the page costs no Python object per run and no plotly import
(0.6 s). A missing bundle still writes the page, with its tables and a line saying what to
install.

Scale (STYLE.md, "Reports for many runs"): runs are aggregated into settings (mean over
seed, fold and repeat) with integer codes and ``np.bincount``; the parcoords draws at most
MAX_LINES settings, the BEST_LINES best and a seeded sample of the rest, and says so ("3,000
of 40,000 settings shown"): WebGL parcoords break past 10-20k lines (plotly.js#1071).

Importance is functional ANOVA's first-order term computed on the settings themselves: the
variance of a parameter's marginal means of the setting means (log10 of a loss), as a share
of the settings' variance. On a full grid that is exactly fANOVA's main effect under the
grid's measure, with no random forest to fit (Optuna's fANOVA: 92 s at 10,000 trials, PR#5212);
a random sweep's continuous values are first cut into MAX_BINS quantile bins. It is a few
bincounts: milliseconds at a million runs. The noise floor is what the same statistic gives
when only replicate noise moves the means: sigma^2 (k - 1) / N for a parameter of k values,
sigma^2 the pooled variance between a setting's replicates, N the runs.

Each part has a ``*_info`` function that returns plain values (tested without a browser);
the drawing is ``report_assets/report.js`` in the page.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..spec.config import RUN_PARAM_NAMES, widths_of
from ..pipeline.results import Results, atomic_write

MAX_LINES = 3000          # parcoords lines at most (plotly.js#1071: WebGL breaks past 10-20k)
BEST_LINES = 500          # of them, the best settings; the rest a seeded sample
CURVE_POINTS = 60         # evaluation epochs kept per learning curve (the last always)
CURVE_REPLICATES = 8      # a setting's curve: the mean over at most this many replicates
MAX_BINS = 12             # a numeric parameter with more values: quantile bins
TOP_PAIRS = 3             # interaction heatmaps drawn
TABLE_ROWS = 15           # rows of the best-settings table
REPLICATES = ("seed", "fold", "repeat")
ASSETS = Path(__file__).with_name("report_assets")


# ---- the sweep as settings ----------------------------------------------------------------
@dataclass
class Settings:
    """The sweep's runs grouped into settings (one per combination of the swept parameters,
    its replicates over seed, fold and repeat pooled). S settings, N runs."""
    params: list[str]                       # the swept parameters, config order
    values: dict[str, np.ndarray]           # param -> its sorted distinct values [k]
    codes: dict[str, np.ndarray]            # param -> each setting's value code [S]
    log: dict[str, bool]                    # param -> shown on a log axis
    numeric: dict[str, bool]
    n: np.ndarray                           # runs per setting [S]
    diverged: np.ndarray                    # diverged runs per setting [S]
    means: dict[str, np.ndarray]            # metric -> mean over replicates [S], NaN when
                                            # any replicate has none (Results.summary's rule)
    first_run: np.ndarray                   # each setting's lowest run_id [S]
    setting_of: np.ndarray                  # each run's setting [N]
    replicates: list[str]                   # the replicate columns that vary
    metric: str                             # what "best" means (Results.default_metric)
    n_runs: int
    metrics: list[str] = field(default_factory=list)


def higher_is_better(metric: str) -> bool:
    return "accuracy" in metric


def default_metric(res: Results) -> str:
    if hasattr(res, "default_metric"):
        return res.default_metric()
    return "final_val_loss" if "final_val_loss" in res.table else "final_train_loss"


def _varies(column: pd.Series) -> bool:
    return len(column) > 0 and bool((column != column.iloc[0]).any())


def swept(res: Results) -> list[str]:
    """The parameters that name a setting: the config's swept parameters that take more
    than one value, replicates left out; where the config sweeps nothing (diagnose builds
    its sweep itself), every per-run hyperparameter that varies in the table."""
    table = res.table
    params = [p for p in res.config.get("sweep", {}).get("params", {})
              if p in table and p not in REPLICATES and _varies(table[p])]
    if not params:
        params = [p for p in RUN_PARAM_NAMES
                  if p in table and p not in REPLICATES and _varies(table[p])]
    return params


def _factorize(column: pd.Series, known=None) -> tuple[np.ndarray, np.ndarray]:
    """(codes [N], sorted distinct values [k]); ``known``: a pandas Categorical of the same
    column already factorized with sorted categories (report.factorize), reused."""
    if known is not None:
        return np.asarray(known.codes), np.asarray(known.categories)
    codes, uniques = pd.factorize(column, sort=True)
    return codes, np.asarray(uniques)


def _spec_is_log(spec, values: np.ndarray) -> bool:
    """Log axis: a logspace or loguniform parameter; a list (or no spec) of positive
    numbers spanning 20x or more whose values sit closer to evenly in log than linearly."""
    if isinstance(spec, dict):
        return any(k in spec for k in ("logspace", "loguniform"))
    if values.dtype.kind not in "if" or len(values) < 2 or not (values > 0).all():
        return False
    if values.max() / values.min() < 20:
        return False
    gaps_log, gaps_lin = np.diff(np.log(values)), np.diff(values)
    return np.std(gaps_log) / np.mean(gaps_log) < np.std(gaps_lin) / np.mean(gaps_lin)


def aggregate(res: Results, factorized: dict | None = None) -> Settings:
    """The runs of ``res`` grouped into settings: integer codes per swept parameter, one
    combined key, bincounts. ``factorized``: param -> pandas Categorical with sorted
    categories that the caller has at hand (report.write_report's), reused."""
    table = res.table
    factorized = factorized or {}
    params = swept(res)
    n_runs = len(table)
    spec = res.config.get("sweep", {}).get("params", {})
    codes, values, log, numeric = {}, {}, {}, {}
    key = np.zeros(n_runs, np.int64)
    size = 1
    for p in params:
        c, v = _factorize(table[p], factorized.get(p))
        if p == "hidden":        # architectures by depth, then width: none, 16, 16-16
            order = sorted(range(len(v)), key=lambda i: (len(widths_of(v[i])), widths_of(v[i])))
            rank = np.empty(len(v), np.int64)
            rank[order] = np.arange(len(v))
            c, v = rank[c], v[order]
        codes[p], values[p] = c, v
        numeric[p] = v.dtype.kind in "if"
        log[p] = numeric[p] and _spec_is_log(spec.get(p), v.astype(np.float64))
        key = key * len(v) + c
        size *= len(v)
    if size <= max(4 * n_runs, 1 << 16):        # a dense key: no sort
        counts = np.bincount(key, minlength=size)
        present = np.flatnonzero(counts)
        dense = np.full(size, -1, np.int64)
        dense[present] = np.arange(len(present))
        setting_of = dense[key]
        uniq = present
    else:
        uniq, setting_of = np.unique(key, return_inverse=True)
    n_set = len(uniq)
    setting_codes = {}
    rest = uniq.copy()
    for p in reversed(params):
        setting_codes[p] = rest % len(values[p])
        rest //= len(values[p])
    n = np.bincount(setting_of, minlength=n_set)
    diverged = np.bincount(setting_of, table["diverged"].to_numpy(np.float64, na_value=0),
                           minlength=n_set).astype(np.int64)
    metrics = [c for c in ("final_train_loss", "final_val_loss", "final_train_accuracy",
                           "final_val_accuracy") if c in table]
    means = {}
    for m in metrics:
        x = table[m].to_numpy(np.float64, na_value=np.nan)
        bad = ~np.isfinite(x)
        total = np.bincount(setting_of, np.where(bad, 0, x), minlength=n_set)
        failed = np.bincount(setting_of, bad, minlength=n_set) > 0
        means[m] = np.where(failed, np.nan, total / np.maximum(n, 1))
    first = np.full(n_set, np.iinfo(np.int64).max)
    if n_runs:
        np.minimum.at(first, setting_of, table["run_id"].to_numpy(np.int64))
    replicates = [c for c in REPLICATES if c in table and _varies(table[c])]
    metric = default_metric(res)
    return Settings(params=params, values=values, codes=setting_codes, log=log,
                    numeric=numeric, n=n, diverged=diverged, means=means, first_run=first,
                    setting_of=setting_of, replicates=replicates, metric=metric,
                    n_runs=n_runs, metrics=[m for m in metrics if np.isfinite(means[m]).any()])


def score(s: Settings, metric: str | None = None) -> np.ndarray:
    """The values that importance is computed on [S]: log10 of a positive loss (its effects
    are factors), an accuracy as it is; a setting with no number gets the worst one."""
    metric = metric or s.metric
    y = s.means.get(metric, np.full(len(s.n), np.nan)).copy()
    finite = np.isfinite(y)
    if finite.any() and not higher_is_better(metric) and (y[finite] > 0).all():
        y[finite] = np.log10(y[finite])
    if finite.any():
        y[~finite] = y[finite].min() if higher_is_better(metric) else y[finite].max()
    return y


def _rank_key(s: Settings, metric: str | None = None) -> np.ndarray:
    """What settings are ordered by [S]: the metric, negated when higher is better, inf
    where a setting has no number."""
    metric = metric or s.metric
    y = s.means.get(metric, np.full(len(s.n), np.nan))
    key = -y if higher_is_better(metric) else y
    return np.where(np.isfinite(key), key, np.inf)


def best_settings(s: Settings, k: int) -> np.ndarray:
    """The ``k`` best settings, best first (ties by first run, no number last): a partial
    sort, not a sort of every setting (a lexsort of a million took 0.58 s)."""
    key = _rank_key(s)
    k = min(k, len(key))
    if k < len(key):
        cut = np.partition(key, k - 1)[k - 1]
        candidates = np.flatnonzero(key <= cut)
    else:
        candidates = np.arange(len(key))
    order = np.lexsort((s.first_run[candidates], key[candidates]))
    return candidates[order][:k]


def ranks(s: Settings, which: np.ndarray) -> np.ndarray:
    """The 0-based place of the settings ``which`` among all, best first (ties share the
    better place)."""
    key = _rank_key(s)
    return np.searchsorted(np.sort(key), key[which], side="left")


# ---- importance ---------------------------------------------------------------------------
def _bins(s: Settings, p: str) -> tuple[np.ndarray, list[str]]:
    """Each setting's group for ``p`` [S] and the groups' labels: its values, or for a
    numeric parameter of more than MAX_BINS values, MAX_BINS quantile bins over the
    settings (by rank of value, so a log-spaced parameter is cut evenly in log)."""
    codes, values = s.codes[p], s.values[p]
    if not s.numeric[p] or len(values) <= MAX_BINS:
        return codes, [_fmt(v) for v in values]
    counts = np.bincount(codes, minlength=len(values))
    mid = np.cumsum(counts) - counts / 2                 # each value's mid-rank
    bin_of_value = np.minimum((mid / max(len(codes), 1) * MAX_BINS).astype(np.int64),
                              MAX_BINS - 1)
    used = np.unique(bin_of_value[counts > 0])
    relabel = np.full(MAX_BINS, -1)
    relabel[used] = np.arange(len(used))
    bin_of_value = relabel[bin_of_value]
    labels = []
    for b in range(len(used)):
        inside = values[(bin_of_value == b) & (counts > 0)]
        labels.append(f"{_fmt(inside.min())}..{_fmt(inside.max())}")
    return bin_of_value[codes], labels


def _cell_means(y: np.ndarray, group: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(group, minlength=k).astype(np.float64)
    sums = np.bincount(group, y, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts, counts


def importance_info(s: Settings, res: Results | None = None) -> dict:
    """Each swept parameter's share of the variance of the setting scores (``score``) and
    the noise floor that replicates alone give it; the most important pairs' interaction
    shares. Plain values; ``res``: for the spread between replicates, from the runs."""
    y = score(s)
    out = {"metric": s.metric, "transform": _transform_label(s), "params": [], "pairs": [],
           "noise_std": None, "message": None}
    finite = np.isfinite(s.means.get(s.metric, np.array([])))
    if not s.params:
        out["message"] = "nothing was swept: no importance to compute"
        return out
    if finite.sum() < 2 or np.var(y) == 0:
        out["message"] = ("fewer than two settings have a final " + _words(s.metric)
                          + ": no importance to compute")
        return out
    total = float(np.var(y))
    sigma2 = _replicate_variance(s, res) if res is not None else None
    groups = {}
    for p in s.params:
        g, labels = _bins(s, p)
        groups[p] = (g, len(labels))
        means, counts = _cell_means(y, g, len(labels))
        w = counts / counts.sum()
        ok = counts > 0
        v = float(np.sum(w[ok] * (means[ok] - y.mean()) ** 2))
        floor = None if sigma2 is None else sigma2 * (ok.sum() - 1) / max(s.n_runs, 1) / total
        out["params"].append({"param": p, "share": v / total, "noise_share": floor,
                              "within_noise": None if floor is None else v / total < 4 * floor})
    out["params"].sort(key=lambda r: -r["share"])
    top = [r["param"] for r in out["params"][:5]]
    pairs = []
    for i, a in enumerate(top):
        for b in top[i + 1:]:
            (ga, ka), (gb, kb) = groups[a], groups[b]
            cell, counts = _cell_means(y, ga * kb + gb, ka * kb)
            ma, _ = _cell_means(y, ga, ka)
            mb, _ = _cell_means(y, gb, kb)
            ok = counts > 0
            resid = (cell - ma.repeat(kb) - np.tile(mb, ka) + y.mean())[ok]
            inter = float(np.sum(counts[ok] / counts.sum() * resid ** 2)) / total
            share = {r["param"]: r["share"] for r in out["params"]}
            pairs.append({"pair": [a, b], "interaction_share": inter,
                          "share": share[a] + share[b] + inter})
    out["pairs"] = sorted(pairs, key=lambda r: -r["share"])[:TOP_PAIRS]
    if sigma2 is not None:
        out["noise_std"] = math.sqrt(sigma2)
    return out


def _replicate_variance(s: Settings, res: Results) -> float | None:
    """The pooled variance of the per-run score between a setting's replicates (the
    spread that seeds and folds give), or None without replicates."""
    if not s.replicates:
        return None
    x = res.table[s.metric].to_numpy(np.float64, na_value=np.nan)
    ok = np.isfinite(x)
    if not higher_is_better(s.metric) and (x[ok] > 0).all():
        x = np.where(ok, np.log10(np.where(ok & (x > 0), x, 1)), np.nan)
    g = s.setting_of[ok]
    xs = x[ok]
    k = len(s.n)
    counts = np.bincount(g, minlength=k)
    means = np.bincount(g, xs, minlength=k) / np.maximum(counts, 1)
    ss = float(np.sum((xs - means[g]) ** 2))
    dof = int(np.sum(np.maximum(counts - 1, 0)))
    return ss / dof if dof > 0 else None


def summary_info(res: Results, s: Settings) -> dict | None:
    """What Results.summary (issue 24) says about the spread between replicates, when it
    exists: settings within noise of the best, the median relative spread."""
    if not s.replicates or not hasattr(res, "summary") or not len(s.n):
        return None
    try:
        summary = res.summary(s.metric)
    except Exception:               # an older or changed summary: the page goes without it
        return None
    mean, std = (summary.get(f"{s.metric}_{c}") for c in ("mean", "std"))
    if mean is None or std is None or "rank" not in summary:
        return None
    rel = (std / mean.abs()).to_numpy(np.float64)
    rel = rel[np.isfinite(rel)]
    return {"within_noise_of_best": int((summary["rank"] == 1).sum()),
            "settings": len(summary),
            "median_relative_std": float(np.median(rel)) if len(rel) else None}


# ---- the parts of the page ----------------------------------------------------------------
def shown_settings(s: Settings, max_lines: int = MAX_LINES, best: int = BEST_LINES,
                   seed: int = 0) -> np.ndarray:
    """The settings drawn as lines: all when at most ``max_lines``, else the ``best`` best
    and a seeded sample of the others; in order of setting."""
    n_set = len(s.n)
    if n_set <= max_lines:
        return np.arange(n_set)
    top = best_settings(s, best)
    others = np.setdiff1d(np.arange(n_set), top, assume_unique=True)
    sample = np.random.default_rng(seed).choice(others, max_lines - len(top), replace=False)
    return np.sort(np.concatenate([top, sample]))


ORDINAL_VALUES = 20        # a numeric axis with at most this many values: a tick at each


def _axis(name: str, label: str, plotted: np.ndarray, log: bool,
          ticks: tuple[np.ndarray, list[str]] | None = None, bad_end: str | None = None) -> dict:
    """One parcoords dimension: values as drawn (log10 for a log axis, codes for choices),
    tick positions and labels; NaN put past ``bad_end`` ("top"/"bottom"), said in the label.

    plotly.js treats an axis with tickvals as ordinal: a brush snaps to its ticks. So ticks
    go only where that is right: choices, and grids of at most ORDINAL_VALUES values (a
    tick at each value); a continuous axis (the metrics, a random search) has plotly's
    own ticks, in log10 units on a log axis."""
    v = plotted.astype(np.float64)
    finite = np.isfinite(v)
    dim = {"name": name, "label": label, "log": log}
    if ticks is not None:
        dim["tickvals"], dim["ticktext"] = [float(t) for t in ticks[0]], ticks[1]
        lo, hi = (float(ticks[0].min()), float(ticks[0].max())) if len(ticks[0]) else (0, 1)
    elif finite.any():
        lo, hi = float(v[finite].min()), float(v[finite].max())
        distinct = np.unique(v[finite])
        if bad_end is None and len(distinct) <= ORDINAL_VALUES:
            dim["tickvals"] = distinct.tolist()
            dim["ticktext"] = [_fmt(10 ** t if log else t) for t in distinct]
        elif log:
            dim["label"] = label.replace("(log)", "(log10)")
    else:
        lo, hi = 0.0, 1.0
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    if bad_end and (~finite).any():
        pad = 0.08 * (hi - lo)
        spot = hi + pad if bad_end == "top" else lo - pad
        v = np.where(finite, v, spot)
        dim["label"] += f" ({bad_end}: diverged)"
        lo, hi = min(lo, spot), max(hi, spot)
    dim["range"] = [lo, hi]
    dim["values"] = v
    return dim


def parcoords_info(s: Settings, shown: np.ndarray) -> dict:
    """The parallel coordinates: one dimension per swept parameter, then each final metric
    (the one that ranks last), over the ``shown`` settings; and each line's words."""
    dims = []
    for p in s.params:
        codes = s.codes[p][shown]
        values = s.values[p]
        if s.numeric[p]:
            v = values.astype(np.float64)[codes]
            dims.append(_axis(p, p + (" (log)" if s.log[p] else ""),
                              np.log10(v) if s.log[p] else v, s.log[p]))
        else:
            dims.append(_axis(p, p, codes, False,
                              ticks=(np.arange(len(values)), [_fmt(v) for v in values])))
    for m in sorted(s.metrics, key=lambda m: m == s.metric):
        v = s.means[m][shown]
        finite = np.isfinite(v)
        log = (not higher_is_better(m) and finite.any() and (v[finite] > 0).all()
               and v[finite].max() / v[finite].min() >= 20)
        plotted = np.where(finite, np.log10(np.where(finite & (v > 0), v, 1)), np.nan) if log else v
        dims.append(_axis(m, _words(m) + (" (log)" if log else ""), plotted, log,
                          bad_end="bottom" if higher_is_better(m) else "top"))
    return {"dims": dims, "color": s.metric if s.metrics else None,
            "text": _line_text(s, shown)}


def _line_text(s: Settings, shown: np.ndarray) -> list[str]:
    """Each shown setting in words: its parameters, runs and mean metric."""
    parts = np.full(len(shown), "", dtype=object)
    for p in s.params:
        used, local = np.unique(s.codes[p][shown], return_inverse=True)   # only those shown
        labels = np.array([f"{p}={_fmt(v)}" for v in s.values[p][used]], dtype=object)
        parts = parts + labels[local.ravel()] + "<br>"
    n = s.n[shown]
    div = s.diverged[shown]
    mean = s.means.get(s.metric)
    tail = [f"{_words(s.metric)} {_fmt(m)} · {k} run{'s' * (k != 1)}"
            + (f", {d} diverged" if d else "")
            for m, k, d in zip((mean[shown] if mean is not None else [np.nan] * len(shown)),
                               n.tolist(), div.tolist())]
    return (parts + np.array(tail, dtype=object)).tolist()


def quantiles_info(s: Settings) -> list | None:
    """The metric's value at each whole percent of all settings, best first (the "best k%"
    control's thresholds, as drawn on its axis), None without numbers."""
    y = s.means.get(s.metric)
    if y is None or not np.isfinite(y).any():
        return None
    v = np.sort(y[np.isfinite(y)])
    if higher_is_better(s.metric):
        v = v[::-1]
    q = v[np.minimum((np.arange(1, 101) / 100 * len(y)).astype(np.int64), len(v)) - 1]
    return q.tolist()


def heatmap_info(s: Settings, pair: list[str]) -> dict:
    """The mean metric (over the settings in each cell, of their means) over two swept
    parameters, rows the second; NaN where no setting has a number."""
    a, b = pair
    ga, la = _bins(s, a)
    gb, lb = _bins(s, b)
    y = s.means[s.metric]
    ok = np.isfinite(y)
    cell = gb * len(la) + ga
    sums = np.bincount(cell[ok], y[ok], minlength=len(la) * len(lb))
    counts = np.bincount(cell[ok], minlength=len(la) * len(lb))
    all_counts = np.bincount(cell, minlength=len(la) * len(lb))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (sums / counts).reshape(len(lb), len(la))
    log = (not higher_is_better(s.metric) and np.isfinite(z).any()
           and (z[np.isfinite(z)] > 0).all())
    return {"x": a, "y": b, "xlabels": la, "ylabels": lb, "z": z,
            "zlog": bool(log), "settings": all_counts.reshape(len(lb), len(la)),
            "diverged": (all_counts - counts).reshape(len(lb), len(la))}


def curves_info(res: Results, s: Settings, shown: np.ndarray) -> dict:
    """Each shown setting's learning curves (train loss, val loss when there is a split):
    the mean over its first CURVE_REPLICATES replicates, at most CURVE_POINTS epochs."""
    curves = res.curves
    epoch = np.asarray(curves.get("epoch", np.zeros(0)))
    out = {"epoch": [], "series": {}}
    if not len(epoch) or not len(shown):
        return out
    keep = np.unique(np.linspace(0, len(epoch) - 1, min(CURVE_POINTS, len(epoch)))
                     .round().astype(np.int64))
    out["epoch"] = epoch[keep].tolist()
    line_of = np.full(len(s.n), -1)
    line_of[shown] = np.arange(len(shown))
    rows = np.flatnonzero(line_of[s.setting_of] >= 0)          # runs of shown settings
    lines = line_of[s.setting_of[rows]]
    order = np.argsort(lines, kind="stable")
    rows, lines = rows[order], lines[order]
    start = np.searchsorted(lines, lines, side="left")
    take = np.arange(len(rows)) - start < CURVE_REPLICATES
    rows, lines = rows[take], lines[take]
    for name in ("train_loss", "val_loss"):
        if name not in curves:
            continue
        block = np.asarray(curves[name])
        # results rows are in run_id order: a run's curve row is its table row
        values = block[rows][:, keep].astype(np.float64)
        finite = np.isfinite(values)
        sums = np.zeros((len(shown), len(keep)))
        counts = np.zeros((len(shown), len(keep)))
        np.add.at(sums, lines, np.where(finite, values, 0))
        np.add.at(counts, lines, finite)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["series"][name] = sums / counts
    return out


def best_table_info(s: Settings, rows: int = TABLE_ROWS) -> dict:
    """The best settings (and the worst finished one) as rows of words."""
    order = best_settings(s, rows)
    head = [*s.params, "runs", "diverged", *[_words(m) for m in s.metrics]]
    body = []
    for i in order:
        body.append([*[_fmt(s.values[p][s.codes[p][i]]) for p in s.params],
                     str(int(s.n[i])), str(int(s.diverged[i])),
                     *[_fmt(s.means[m][i]) for m in s.metrics]])
    return {"head": head, "rows": body}


def page_info(res: Results, factorized: dict | None = None) -> dict:
    """Everything the page shows, as plain values (numpy arrays for the long ones)."""
    s = aggregate(res, factorized)
    n_set = len(s.n)
    name = res.config.get("name", "sweep")
    info = {"title": f"{name}: sweep report", "notices": [], "n_runs": s.n_runs,
            "n_settings": n_set, "params": s.params, "metric": s.metric,
            "metric_label": _words(s.metric), "higher_is_better": higher_is_better(s.metric)}
    n_div = int(s.diverged.sum())
    reps = f", means over {_count(s.n)} ({', '.join(s.replicates)})" if s.replicates else ""
    info["headline"] = (f"{s.n_runs:,} runs in {n_set:,} settings{reps}; {n_div:,} runs "
                        f"diverged. Swept: {', '.join(s.params) or 'nothing'}.")
    if s.n_runs == 0:
        info["notices"].append("This results directory holds no runs: nothing to show.")
    elif not s.metrics:
        info["notices"].append(f"Every run diverged (or has no final metric): no "
                               f"{_words(s.metric)} to plot. Try a smaller learning rate.")
    elif not np.isfinite(s.means.get(s.metric, np.array([np.nan]))).any():
        info["notices"].append(f"No setting has a final {_words(s.metric)} on every replicate.")
    if s.n_runs == 1:
        info["notices"].append("A single run: the page shows it, with nothing to compare.")
    elif s.n_runs and not s.params:
        info["notices"].append("Nothing was swept: one setting, so no axes to compare; its "
                               "numbers and learning curves are below.")
    shown = shown_settings(s)
    info["shown"] = len(shown)
    info["shown_label"] = (f"{len(shown):,} of {n_set:,} settings shown"
                           + (f" (the {BEST_LINES:,} best and a seeded sample)"
                              if len(shown) < n_set else "") + reps)
    info["parcoords"] = parcoords_info(s, shown) if s.n_runs else None
    info["quantiles"] = quantiles_info(s)
    info["importance"] = importance_info(s, res) if s.n_runs else None
    info["summary"] = summary_info(res, s)
    pairs = info["importance"]["pairs"] if info["importance"] else []
    info["heatmaps"] = [heatmap_info(s, r["pair"]) for r in pairs] if s.metrics else []
    if not pairs and len(s.params) == 2 and s.metrics:
        info["heatmaps"] = [heatmap_info(s, s.params)]
    info["curves"] = curves_info(res, s, shown) if s.n_runs else {"epoch": [], "series": {}}
    finite = np.isfinite(s.means.get(s.metric, np.full(n_set, np.nan)))
    info["line_rank"] = ranks(s, shown)                  # 0 = the best of all settings
    info["line_finite"] = finite[shown]
    info["best_table"] = best_table_info(s)
    from .report_schedules import hyperband_info, hyperband_page, pbt_info, pbt_page
    info["hyperband"] = hyperband_page(hyperband_info(res))
    info["pbt"] = pbt_page(pbt_info(res))
    return info


# ---- the page -----------------------------------------------------------------------------
class _Raw(str):
    """A JSON fragment already written (a numeric array), spliced in as it is."""


def _numbers(a) -> _Raw:
    """An array as a JSON list of numbers, 5 significant digits, NaN and inf as null."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim > 1:
        return _Raw("[" + ",".join(_numbers(r) for r in a) + "]")
    text = ",".join(map("{:.5g}".format, a.tolist()))
    if not np.isfinite(a).all():
        text = ",".join("null" if t in ("nan", "inf", "-inf") else t for t in text.split(","))
    return _Raw("[" + text + "]")


def _to_json(value) -> str:
    """JSON with numpy arrays written by _numbers (no per-element Python floats in dumps)."""
    raws: list[str] = []

    def walk(v):
        if isinstance(v, np.ndarray):
            if v.dtype.kind in "biuf":
                raws.append(_numbers(v))
                return f"\x00{len(raws) - 1}\x00"
            return [walk(x) for x in v.tolist()]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return float(v) if math.isfinite(v) else None
        if isinstance(v, np.bool_):
            return bool(v)
        return v

    text = json.dumps(walk(value), separators=(",", ":"), allow_nan=False)
    parts = text.split('"\\u0000')
    out = [parts[0]]
    for part in parts[1:]:
        index, _, rest = part.partition('\\u0000"')
        out.append(raws[int(index)] + rest)
    return "".join(out)


def plotly_bundle() -> bytes | None:
    """plotly.min.js as the plotly pip package ships it, without importing plotly; None when
    it is not installed."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "package_data" / "plotly.min.js"
    return path.read_bytes() if path.is_file() else None


def _escape(text: str) -> str:
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def render(info: dict, bundle: bytes | None) -> bytes:
    """The page: the tables and notices as HTML, the data as JSON, report.js and the
    Plotly bundle inline."""
    data = _to_json(info).replace("</", "<\\/")
    table = info["best_table"]
    rows = "".join("<tr>" + "".join(f"<td>{_escape(c)}</td>" for c in r) + "</tr>"
                   for r in table["rows"])
    head = "".join(f"<th>{_escape(h)}</th>" for h in table["head"])
    notices = "".join(f'<p class="notice">{_escape(n)}</p>' for n in info["notices"])
    if bundle is None:
        notices += ('<p class="notice">The interactive plots need plotly.min.js from the '
                    "plotly package: pip install plotly, then tinysweep report DIR.</p>")
    css = (ASSETS / "report.css").read_text()
    js = (ASSETS / "report.js").read_text()
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; worker-src blob:">
<title>{_escape(info['title'])}</title>
<style>{css}</style></head>
<body>
<h1>{_escape(info['title'])}</h1>
<p id="headline">{_escape(info['headline'])}</p>
{notices}
<section id="pc-section"><h2>Parallel coordinates</h2>
<div class="controls"><label>best <input id="bestk" type="range" min="1" max="100" value="100">
<span id="bestk-label">100%</span> of all settings</label>
<button id="reset">clear brushes</button> <span id="shown-label">{_escape(info['shown_label'])}</span>
· <span id="selected-label"></span></div>
<div id="pc" class="plot"></div>
<p class="hint">Drag along an axis to brush it (several axes: their intersection); click a
brush's outside to clear it. The colour is the {_escape(info['metric_label'])}.</p></section>
<section id="curves-section"><h2>Learning curves</h2><div id="curves" class="plot"></div></section>
<section id="imp-section"><h2>What mattered</h2><div id="importance" class="plot"></div>
<p id="importance-note" class="hint"></p></section>
<section id="hm-section"><h2>Interactions</h2><div id="heatmaps"></div></section>
{_schedule_sections(info)}<section><h2>Best settings</h2><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></section>
<script type="application/json" id="data">{data}</script>
"""
    tail = f"<script>{js}</script>\n</body></html>\n"
    parts = [html.encode()]
    if bundle is not None:
        parts += [b"<script>", bundle, b"</script>\n"]
    parts.append(tail.encode())
    return b"".join(parts)


def _schedule_sections(info: dict) -> str:
    """The sections of Hyperband's brackets and PBT's lineage, when the sweep has one."""
    parts = []
    hb = info.get("hyperband")
    if hb:
        parts.append(f"""<section id="hb-section"><h2>Hyperband brackets</h2>
<div id="brackets"></div><p class="hint">Each bracket's runs (eta {_escape(hb['eta'])}): grey
runs stopped at a rung (dashed), blue ones reached the last epoch, black is the bracket's
best by final {_escape(_words(hb['metric']))}.</p></section>
""")
    pbt = info.get("pbt")
    if pbt:
        shown = (f"{pbt['shown']:,} of {pbt['n']:,} members shown"
                 if pbt["shown"] < pbt["n"] else f"{pbt['n']:,} members")
        jumps = (f"{pbt['jumps_shown']:,} of {pbt['n_jumps']:,} exploits drawn"
                 if pbt["jumps_shown"] < pbt["n_jumps"] else f"{pbt['n_jumps']:,} exploits")
        parts.append(f"""<section id="pbt-section"><h2>Population based training</h2>
<div id="lineage" class="plot"></div><div id="schedules"></div>
<p class="hint">{_escape(shown)}, {_escape(jumps)}. Red: at a round, a member of the bottom
takes a top member's weights (its {_escape(_words(pbt['metric']))} jumps to the parent's).
Coloured: the final best members' lineages, the curve of the weights each ends with; below,
the hyperparameters those weights were trained with (hover for the member they came
from).</p></section>
""")
    return "".join(parts)


def write_html(res: Results, out: str | Path, factorized: dict | None = None) -> Path:
    """Writes ``out/report.html``; returns its path. ``factorized``: see ``aggregate``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    page = render(page_info(res, factorized), plotly_bundle())
    path = out / "report.html"
    atomic_write(path, lambda f: f.write(page))
    return path


# ---- words --------------------------------------------------------------------------------
def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (float, np.floating)):
        return "nan" if not np.isfinite(v) else f"{v:.4g}"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return str(v)


def _power(d: float) -> str:
    return f"1e{int(d)}" if d not in (0, 1, -1) else {0: "1", 1: "10", -1: "0.1"}[int(d)]


def _words(metric: str) -> str:
    return metric.removeprefix("final_").replace("_", " ")


def _count(n: np.ndarray) -> str:
    lo, hi = int(n.min()), int(n.max())
    return f"{lo} replicates" if lo == hi else f"{lo} to {hi} replicates"


def _transform_label(s: Settings) -> str:
    return (_words(s.metric) if higher_is_better(s.metric)
            else f"log10 {_words(s.metric)}")
