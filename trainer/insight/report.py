"""A sweep's results as pictures and a short report: what moved the final loss, at a glance.

``write_report(res, out)`` writes, into the results directory ``out``:

    plots/final_by_PARAM.png     final train (val) loss and accuracy against each swept
                                 parameter, one line per value of a second, categorical one
    plots/weights_by_PARAM.png   linear models: the learned weights and bias against the
                                 first numeric swept parameter
    plots/curves.png             loss curves of the best, median and worst run of each group
    plots/heatmap_P1_P2.png      median final loss over the two swept parameters that move
                                 it most (at most 40 values each)
    report.md                    those plots, what mattered (the swept parameters ranked by
                                 how far they move the median final loss, against how far
                                 the replicates alone move it), the best settings over
                                 replicates (Results.summary), the best runs

"Best" and "final loss" mean the validation loss when the sweep has a validation split or
folds (Results.default_metric), else the training loss. Seeds, folds and repeats are
replicates, not parameters: they are not ranked, nor chosen for a heatmap.

Diverged runs have no final loss: they are counted, never plotted as numbers.

A million runs or ten: each swept parameter is factorized once (integer codes into its
sorted values), every median is a group-by over those codes computed once, the best, median
and worst runs are picked by partial sorts, at most MAX_DOTS dots a line are drawn, and
nothing makes a Python object per run. A string column may be str or a pandas Categorical.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..spec.config import widths_of
from .figures import _figure, _log_scale, _log_y, _save
from .report_schedules import halving_steps
from ..pipeline.results import REPLICATE_COLUMNS, Results, atomic_write

LOSS = "final_train_loss"
MAX_CATEGORIES = 6          # a parameter with at most this many values can split the lines
MAX_DOTS = 5000             # dots per line drawn at most (a seeded sample; medians use all)
BEST_ROWS = 10


# ---- what was swept -----------------------------------------------------------------------
def is_numeric(values: pd.Series) -> bool:
    """Numbers (not booleans), or a categorical of numbers."""
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = dtype.categories.dtype
    return dtype.kind in "if"


def factorize(values: pd.Series) -> pd.Categorical:
    """``values`` as a Categorical of the values that occur, sorted (numbers and booleans by
    value, anything else as strings), so that a column of strings and the same column as a
    pandas Categorical give the same groups in the same order, and every group-by below runs
    on small integer codes instead of hashing a million floats or strings again."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cat = values.array
        used = np.bincount(cat.codes[cat.codes >= 0], minlength=len(cat.categories)) > 0
        if not used.all():
            cat = cat.remove_unused_categories()
    else:
        cat = pd.Categorical(values)
    key = None if cat.categories.dtype.kind in "biuf" else str
    order = sorted(cat.categories, key=key)
    if list(cat.categories) != order:
        cat = cat.reorder_categories(order)
    return cat


def sweep_columns(res: Results) -> dict[str, pd.Categorical]:
    """The sweep's parameters that take more than one value, in config order, factorized."""
    params = res.config.get("sweep", {}).get("params", {})
    columns = {p: factorize(res.table[p]) for p in params if p in res.table}
    if "hidden" in columns:           # architectures by depth, then width: none, 16, 16-16
        cat = columns["hidden"]
        columns["hidden"] = cat.reorder_categories(
            sorted(cat.categories, key=lambda t: (len(widths_of(t)), widths_of(t))))
    return {p: c for p, c in columns.items() if len(c.categories) > 1}


def swept_params(res: Results) -> list[str]:
    """The sweep's parameters that take more than one value, in config order."""
    return list(sweep_columns(res))


def _floats(values: pd.Series) -> np.ndarray:
    """A column of numbers as float64, NaN for missing (no copy of a float64 column)."""
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def metrics_of(table: pd.DataFrame) -> list[str]:
    """The final_* columns that hold numbers, losses first."""
    cols = [c for c in ("final_train_loss", "final_val_loss", "final_train_accuracy",
                        "final_val_accuracy") if c in table and table[c].notna().any()]
    return cols


class GroupMedians:
    """The median of a column per group of runs, the groups being the values of one or more
    factorized columns of ``frame`` (see ``factorize``); each (grouping, column) computed
    once, so the ranking and the plots against a parameter share theirs (a group-by median
    is 15 ms a column over a million runs, 0.2 s over ten million)."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self._done: dict[tuple, pd.Series] = {}

    def key(self, by: tuple[str, ...]) -> np.ndarray:
        """Each run's group: the codes of ``by`` as one integer, the first varying slowest
        (-1 where a value is missing)."""
        key = np.zeros(len(self.frame), np.int64)
        valid = np.ones(len(self.frame), bool)
        for p in by:
            cat = self.frame[p].array
            key *= len(cat.categories)
            key += cat.codes
            valid &= cat.codes >= 0
        return key if valid.all() else np.where(valid, key, -1)

    def __call__(self, by: tuple[str, ...], columns: list[str],
                 frame: pd.DataFrame | None = None) -> pd.DataFrame:
        """The medians of ``columns`` (of ``frame``, by default the one given at the start,
        with the same rows) per group, NaN skipped (NaN where a group has no number),
        indexed by the groups' keys (``key``), sorted."""
        missing = [c for c in columns if (by, c) not in self._done]
        if missing:
            values = (self.frame if frame is None else frame)[missing]
            key = self.key(by)
            if (key < 0).any():
                values, key = values[key >= 0], key[key >= 0]
            medians = values.groupby(key, sort=True).median()
            self._done.update({(by, c): medians[c] for c in missing})
        return pd.DataFrame({c: self._done[by, c] for c in columns})


def ranking(table: pd.DataFrame, swept: list[str], metric: str = LOSS,
            medians: GroupMedians | None = None) -> list[dict]:
    """Each swept parameter's effect on the median ``metric`` over the runs that finished:
    the values with the lowest and highest median, and their ratio (losses are positive),
    largest first. ``medians``: over ``table`` with the swept parameters factorized, if
    already at hand."""
    if medians is None:
        medians = GroupMedians(pd.DataFrame(
            {**{p: factorize(table[p]) for p in swept}, metric: _floats(table[metric])},
            copy=False))
    out = []
    for p in swept:
        med = medians((p,), [metric])[metric].dropna()   # NaN: every run diverged
        if len(med) < 2:
            continue
        values = medians.frame[p].array.categories
        medians_p = pd.Series(med.to_numpy(), name=metric,
                              index=pd.Index(values.take(med.index), name=p))
        lo_v, hi_v = medians_p.idxmin(), medians_p.idxmax()
        lo, hi = float(medians_p.min()), float(medians_p.max())
        ratio = hi / lo if lo > 0 else float("inf")
        out.append({"param": p, "best_value": lo_v, "best": lo, "worst_value": hi_v,
                    "worst": hi, "ratio": ratio, "medians": medians_p})
    return sorted(out, key=lambda r: -r["ratio"])


def hue_for(ranked: list[dict], n_values: dict[str, int], x: str | None) -> str | None:
    """The parameter that splits the lines of a plot against ``x``: of the swept parameters
    (``n_values``: how many values each takes, in config order) other than x with at most
    MAX_CATEGORIES values, the one that moves the median final loss the most (``ranked``:
    ``ranking`` over every swept parameter), so the plot tells the sweep's main story; or
    None."""
    options = [p for p, n in n_values.items() if p != x and n <= MAX_CATEGORIES]
    ranked_options = [r["param"] for r in ranked if r["param"] in options]
    return ranked_options[0] if ranked_options else (options[0] if options else None)


# ---- picking runs -------------------------------------------------------------------------
def _at_ranks(values: np.ndarray, ranks: list[int]) -> list[int]:
    """The positions ``np.argsort(values, kind="stable")[ranks]`` (ties in order of position)
    for a few ranks, in O(len(values)) each rather than a sort (a stable sort of a million
    losses takes 0.1 s). ``values``: 1-D, no NaN."""
    kth = np.partition(values, ranks)
    out = []
    for k in ranks:
        ties = np.flatnonzero(values == kth[k])
        out.append(int(ties[k - np.count_nonzero(values < kth[k])]))
    return out


def _smallest(values: np.ndarray, k: int) -> np.ndarray:
    """The positions of the ``k`` smallest numbers in ``values`` (NaN skipped), smallest first,
    ties in order of position: ``np.argsort(values, kind="stable")[:k]`` without the sort."""
    if len(values) > k:
        # NaN partitions last: the k-th smallest number, or NaN when fewer than k finished
        kth = np.partition(values, k - 1)[k - 1]
        keep = ~np.isnan(values) if np.isnan(kth) else values <= kth   # k or more, or all
    else:
        keep = ~np.isnan(values)
    candidates = np.flatnonzero(keep)
    return candidates[np.argsort(values[candidates], kind="stable")[:k]]


@functools.lru_cache(maxsize=16)
def _dot_sample(n: int) -> np.ndarray:
    """The MAX_DOTS positions out of ``n`` that pandas' ``sample(MAX_DOTS, random_state=0)``
    draws (a permutation's head), computed once per ``n``: drawing it costs 30 ms a million."""
    picks = np.random.RandomState(0).permutation(n)[:MAX_DOTS]
    picks.setflags(write=False)
    return picks


# ---- plots --------------------------------------------------------------------------------
def _label(metric: str) -> str:
    return metric.removeprefix("final_").replace("_", " ")


def _log_x(values) -> bool:
    v = np.asarray(values)
    return len(v) > 0 and bool((v > 0).all()) and v.max() / v.min() >= 20


def _levels(work: pd.DataFrame, hue: str | None) -> list[str]:
    """The line labels: one per value of ``hue`` (in ``work``'s factorized order)."""
    if hue is None:
        return ["all runs"]
    return [f"{hue} = {v}" for v in work[hue].array.categories]


def _in_group(mask: np.ndarray, work: pd.DataFrame, hue: str | None, i: int) -> np.ndarray:
    """The positions where ``mask`` holds and ``hue`` takes its i-th value."""
    return np.flatnonzero(mask if hue is None else mask & (work[hue].array.codes == i))


def plot_against(work: pd.DataFrame, x: str, hue: str | None, metrics: list[str],
                 title: str, path: Path, medians: GroupMedians | None = None) -> Path:
    """One panel per metric: every finished run as a dot (at most MAX_DOTS per line, a
    seeded sample), the median per value of ``x`` as a line, one colour per value of
    ``hue``. ``work``: x and hue factorized (``factorize``), the metrics as columns;
    ``medians``: those already computed over the same runs."""
    fig, axes = _figure(len(metrics))
    numeric = is_numeric(work[x])
    values = work[x].array.categories
    n_x = len(values)
    at = values.to_numpy() if numeric else np.arange(n_x)        # where each value sits
    x_codes = work[x].array.codes
    levels = _levels(work, hue)
    medians = (GroupMedians(work) if medians is None else medians)(
        (x,) if hue is None else (hue, x), metrics, frame=work)
    med_group, med_x = np.divmod(medians.index.to_numpy(), n_x)
    for ax, metric in zip(axes, metrics):
        y = work[metric].to_numpy()
        finished = ~np.isnan(y)
        for i, label in enumerate(levels):
            rows = _in_group(finished, work, hue, i)
            if not len(rows):
                continue
            colour = f"C{i}"
            med = medians[metric].to_numpy()[med_group == i]
            med_at = med_x[med_group == i][~np.isnan(med)]
            med = med[~np.isnan(med)]
            if numeric:
                offset = 0
                ax.plot(at[med_at], med, "-o", color=colour, ms=3, lw=1.5, label=label)
            else:
                offset = (i - (len(levels) - 1) / 2) * 0.12 if hue else 0.0
                ax.plot(med_at + offset, med, "D", color=colour, ms=7, label=label)
            dots = rows if len(rows) <= MAX_DOTS else rows[_dot_sample(len(rows))]
            ax.scatter(at[x_codes[dots]] + offset, y[dots], s=8, color=colour, alpha=0.3,
                       linewidths=0)
        if numeric and _log_x(values):
            _log_scale(ax, "x", values.min(), values.max())
        if not numeric:
            ax.set_xticks(range(n_x), [str(c) for c in values])
        if "loss" in metric:
            _log_y(ax, y)
        ax.set_xlabel(x)
        ax.set_ylabel(_label(metric))
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:          # none when every run diverged
        axes[0].legend(fontsize=8, title="median of", title_fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def plot_weights(res: Results, work: pd.DataFrame, x: str, hue: str | None, path: Path,
                 medians: GroupMedians | None = None) -> Path:
    """Linear models: each learned weight and the bias (final) against ``x``, and the loss.
    ``medians``: as for ``plot_against``."""
    n = len(work)
    w = res.params["final.1.weight"].reshape(n, -1)[:, :4]
    b = res.params["final.1.bias"].reshape(n, -1)[:, 0]
    diverged = work["diverged"].to_numpy()
    names = ["slope" if w.shape[1] == 1 else f"weight[{j}]" for j in range(w.shape[1])]
    learned = {name: np.where(diverged, np.nan, w[:, j]) for j, name in enumerate(names)}
    learned["intercept"] = np.where(diverged, np.nan, b)
    return plot_against(work.assign(**learned), x, hue, [*names, "intercept", LOSS],
                        f"learned weights against {x} (final)", path, medians)


def plot_curves(res: Results, work: pd.DataFrame, hue: str | None, path: Path,
                metric: str = LOSS) -> Path:
    """Training loss against epoch for the best, median and worst finished run of each
    group by ``metric`` (log scale)."""
    epoch, curves = res.curves["epoch"], res.curves["train_loss"]
    loss = work[metric].to_numpy()
    run_id = work["run_id"].to_numpy()
    finished = ~np.isnan(loss)
    levels = _levels(work, hue)
    fig, axes = _figure(len(levels), width=4.2, sharey=True)   # one scale: groups compare
    for i, (ax, label) in enumerate(zip(axes, levels)):
        rows = _in_group(finished, work, hue, i)
        if not len(rows):
            ax.set_title(f"{label}: every run diverged")
            continue
        n = len(rows)
        picks = zip(("best", "median", "worst"), _at_ranks(loss[rows], [0, n // 2, n - 1]))
        for (name, k), style in zip(picks, ("-", "--", ":")):
            rid = int(run_id[rows[k]])
            y = curves[rid]
            keep = np.isfinite(y)
            ax.plot(epoch[keep], y[keep], style, lw=1.6,
                    label=f"{name}: run {rid} ({loss[rows[k]]:.3g})")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("train loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _log_y(axes[0], curves, rows=run_id[finished])
    fig.suptitle("training loss of the best, median and worst runs"
                 + ("" if metric == LOSS else f" (by {_label(metric)})"))
    return _save(fig, path)


def plot_architectures(work: pd.DataFrame, medians: GroupMedians, path: Path,
                       metric: str = LOSS) -> Path:
    """Median final ``metric`` (train loss) of each architecture against its width (the widest layer),
    one line per depth, a panel per activation when that is swept too; a linear model is a
    dashed line across."""
    hidden = work["hidden"].array.categories
    shapes = [widths_of(t) for t in hidden]
    acts = list(work["activation"].array.categories) if "activation" in work else [None]
    by = ("activation", "hidden") if acts != [None] else ("hidden",)
    cells = medians(by, [metric])[metric]
    fig, axes = _figure(len(acts), width=4.4, sharey=True)
    widths = sorted({max(h) for h in shapes if h})
    for a, (ax, act) in enumerate(zip(axes, acts)):
        base = a * len(hidden)
        at = lambda i: cells.get(base + i, np.nan)
        for depth in sorted({len(h) for h in shapes if h}):
            points = sorted((max(h), at(i)) for i, h in enumerate(shapes) if len(h) == depth)
            xs, ys = zip(*points)
            ax.plot(xs, ys, "-o", ms=4, label=f"depth {depth}")
        for i, h in enumerate(shapes):
            if not h and np.isfinite(at(i)):
                ax.axhline(at(i), ls="--", color="gray", lw=1, label="linear")
        if widths and widths[-1] / widths[0] >= 4:
            ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.set_xlabel("width (units in the widest layer)")
        ax.set_ylabel(f"median final {_label(metric)}")
        if act is not None:
            ax.set_title(f"activation {act}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    finite = cells.to_numpy()[np.isfinite(cells.to_numpy())]
    if len(finite) and finite.min() > 0 and finite.max() / finite.min() >= 10:
        _log_scale(axes[0], "y", float(finite.min()), float(finite.max()))
    fig.suptitle(f"final {_label(metric)} against width and depth (median over the other "
                 f"params)")
    return _save(fig, path)


def plot_heatmap(medians: GroupMedians, x: str, y: str, path: Path, metric: str = LOSS) -> Path:
    """Median final ``metric`` (train loss) over the grid of two swept parameters
    (factorized in ``medians.frame``); a value of either at which every run diverged gets
    no row or column."""
    from matplotlib.colors import LogNorm
    xs, ys = medians.frame[x].array, medians.frame[y].array
    cells = medians((y, x), [metric])[metric]         # indexed by y code * len(x values) + x code
    values = np.full((len(ys.categories), len(xs.categories)), np.nan)
    values.flat[cells.index.to_numpy()] = cells.to_numpy()
    rows = ~np.isnan(values).all(axis=1)
    cols = ~np.isnan(values).all(axis=0)
    values, y_values, x_values = values[rows][:, cols], ys.categories[rows], xs.categories[cols]
    fig, axes = _figure(1, width=5.6, height=4.4)
    ax = axes[0]
    finite = values[np.isfinite(values)]
    norm = LogNorm() if len(finite) and finite.min() > 0 else None
    image = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis_r", norm=norm)
    tick = lambda v: f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)
    ax.set_xticks(range(len(x_values)), [tick(v) for v in x_values], rotation=60,
                  fontsize=7)
    ax.set_yticks(range(len(y_values)), [tick(v) for v in y_values], fontsize=7)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if values.size <= 144:   # small grids: the numbers too
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=8,
                        color="white" if image.norm(v) > 0.5 else "black")
    fig.colorbar(image, ax=ax, label=f"median final {_label(metric)}")
    fig.suptitle(f"final {_label(metric)} over {x} and {y} (blank: every run diverged)")
    return _save(fig, path)


# ---- the report ---------------------------------------------------------------------------
def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)


def summary_lines(work: pd.DataFrame, ranked: list[dict], swept: list[str],
                  metric: str = LOSS, noise: float | None = None) -> list[str]:
    """What mattered, in words, with the numbers. ``ranked``: ``ranking(work, swept,
    metric)``. ``noise``: the factor the replicates alone move ``metric`` by
    (``replicate_spread``), each parameter's factor said against it."""
    lines = []
    for k, r in enumerate(ranked, 1):
        factor = "" if not np.isfinite(r["ratio"]) else f", a factor of {r['ratio']:.3g}"
        if noise is not None and np.isfinite(noise):
            factor += (", beyond" if r["ratio"] > noise else ", within") + \
                f" the replicates' own {noise:.3g}"
        lines.append(f"{k}. **{r['param']}** moves the median final {_label(metric)} from "
                     f"{_fmt(r['worst'])} ({r['param']} = {_fmt(r['worst_value'])}) to "
                     f"{_fmt(r['best'])} ({r['param']} = {_fmt(r['best_value'])}){factor}.")
    n_div = int(work.diverged.sum())
    if n_div:
        parts = []
        for p in swept:
            share = work.groupby(p, observed=True, sort=True).diverged.mean()
            if share.max() > 0 and share.max() > share.min():
                parts.append(f"{share.max():.0%} of runs with {p} = {_fmt(share.idxmax())}")
        lines.append(f"- {n_div} of {len(work)} runs diverged (weights or loss not finite)"
                     + (f": {'; '.join(parts)}." if parts else "."))
    return lines


def halving_lines(res: Results) -> list[str]:
    """Successive halving: the rungs, how many runs each stopped, and the steps trained
    against the whole grid's (a stopped run would have taken steps x epochs / stopped)."""
    halving = res.config.get("sweep", {}).get("halving")
    table = res.table
    if not halving or "stopped_epoch" not in table:
        return []
    stopped = table["stopped_epoch"].to_numpy(dtype=np.float64)
    steps = table["steps"].to_numpy(dtype=np.float64)
    full = halving_steps(table)
    lines = ["", "## Successive halving", "",
             f"Rungs at epochs {', '.join(map(str, halving['rungs']))}; at each, the best "
             f"{halving['keep']:.0%} of the runs still training (by {halving['metric']}, per "
             f"epochs budget) went on:", ""]
    for rung in halving["rungs"]:
        lines.append(f"- epoch {rung}: {int((stopped == rung).sum())} runs stopped")
    lines.append(f"- {int(np.isnan(stopped).sum())} runs reached their last epoch "
                 f"({int(table.diverged.sum())} of all runs diverged)")
    lines += ["", f"{int(steps.sum()):,} optimizer steps trained where the whole grid takes "
                  f"{full:,}: {1 - steps.sum() / max(full, 1):.0%} saved."]
    return lines


def replicates_of(table: pd.DataFrame, swept: list[str]) -> list[str]:
    """The replicate columns that vary: seed when swept, fold and repeat (data.cv)."""
    return [c for c in REPLICATE_COLUMNS
            if c in table and (c in swept or c != "seed") and table[c].nunique() > 1]


def replicate_spread(medians: GroupMedians, settings: list[str], metric: str) -> float:
    """How far the replicates alone move ``metric``: over each setting (the values of
    ``settings``, factorized in ``medians.frame``) its largest over its smallest final
    value among replicates that finished, the median of that factor over the settings."""
    frame = medians.frame
    key = medians.key(tuple(settings)) if settings else np.zeros(len(frame), np.int64)
    values = frame[metric]
    spread = values.groupby(key).max() / values.groupby(key).min()
    spread = spread[np.isfinite(spread)]
    return float(spread.median()) if len(spread) else float("nan")


def _words(v) -> str:
    return _fmt(v).replace("|", "/")


def settings_table(summary: pd.DataFrame, swept: list[str], metric: str,
                   rows: int = BEST_ROWS) -> str:
    """The best settings over their replicates (``summary``: Results.summary(metric)), as
    a markdown table."""
    m = metric
    cols = [*swept, "n", "diverged", f"{m}_mean", f"{m}_std", f"{m}_ci_low", f"{m}_ci_high",
            "rank"]
    best = summary[cols].head(rows)
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "\n".join("| " + " | ".join(_words(v) for v in row) + " |"
                            for row in best.itertuples(index=False))


def best_table(table: pd.DataFrame, swept: list[str], rows: int = BEST_ROWS,
               metric: str = LOSS) -> str:
    """The best finished runs by final ``metric`` (a loss; ties in table order), as a
    markdown table."""
    cols = ["run_id", *swept, *metrics_of(table), "steps"]
    best = table[cols].iloc[_smallest(_floats(table[metric]), rows)]
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "\n".join("| " + " | ".join(_fmt(v) for v in row) + " |"
                            for row in best.itertuples(index=False))


def write_report(res: Results, out: str | Path, alongside=None) -> Path:
    """Writes the plots and report.md into the results directory ``out``; returns the
    report's path. ``alongside``: work to run meanwhile in a second thread (the results
    files: ``save_with_report``); report.md is written after it and every plot."""
    out = Path(out)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    table = res.table
    columns = sweep_columns(res)
    swept = list(columns)
    n_values = {p: len(c.categories) for p, c in columns.items()}
    metrics = metrics_of(table)
    metric = res.default_metric()           # what "best" means: validation, when there is one
    replicates = replicates_of(table, swept)
    params = [p for p in swept if p not in replicates]      # the settings' parameters
    # what the report reads, once: the swept parameters factorized, the numbers as arrays
    work = pd.DataFrame({**columns, "run_id": table["run_id"].to_numpy(np.int64),
                         "diverged": table["diverged"].to_numpy(bool, na_value=False),
                         **{c: _floats(table[c])
                            for c in dict.fromkeys([LOSS, metric, *metrics])}},
                        index=pd.RangeIndex(len(table)), copy=False)
    medians = GroupMedians(work)
    ranked = ranking(work, params, metric, medians=medians)
    # (title, path, panels, draw): the figures, drawn by _draw_all
    figures: list[tuple[str, Path, int, object]] = []
    for x in swept if metrics else []:       # every run diverged: no final metric to plot
        path = plots / f"final_by_{x}.png"
        figures.append((f"Final metrics against {x}", path, len(metrics), functools.partial(
            plot_against, work, x, hue_for(ranked, n_values, x), metrics,
            f"final metrics against {x}", path, medians)))
    if "hidden" in swept and metrics:
        path = plots / "final_by_width_and_depth.png"
        n_act = n_values.get("activation", 1)
        figures.append((f"Final {_label(metric)} against width and depth", path, n_act,
                        functools.partial(plot_architectures, work, medians, path, metric)))
    numeric = [p for p in swept if is_numeric(table[p])]
    linear = (table["hidden"] == "none").all() if "hidden" in table \
        else not res.config["model"]["hidden"]
    if linear and numeric:
        x = numeric[0]
        path = plots / f"weights_by_{x}.png"
        n_weights = min(res.params["final.1.weight"].size // max(len(table), 1), 4)
        figures.append((f"Learned weights against {x}", path, n_weights + 2, functools.partial(
            plot_weights, res, work, x, hue_for(ranked, n_values, x), path, medians)))
    hue = hue_for(ranked, n_values, None)
    path = plots / "curves.png"
    figures.append(("Loss curves", path, n_values[hue] if hue else 1,
                    functools.partial(plot_curves, res, work, hue, path, metric)))
    # the heatmap: the two parameters that move the metric most (a numeric one at least),
    # in config order; replicates are never a heatmap's axis
    grid = [r["param"] for r in ranked if n_values[r["param"]] <= 40][:2]
    if len(grid) < 2 or not any(p in numeric for p in grid):
        grid = [p for p in numeric if n_values[p] <= 40 and p in params][:2]
    grid = sorted(grid, key=params.index)
    if len(grid) >= 2:
        path = plots / f"heatmap_{grid[0]}_{grid[1]}.png"
        figures.append((f"{grid[0]} x {grid[1]}", path, 2, functools.partial(
            plot_heatmap, medians, grid[0], grid[1], path, metric)))
    # the schedules that stop and copy runs: Hyperband's brackets, PBT's lineage
    from .report_schedules import hyperband_info, pbt_info, plot_brackets, plot_lineage
    schedules = {"hyperband": hyperband_info(res), "pbt": pbt_info(res)}
    if schedules["hyperband"] is not None:
        path = plots / "hyperband_brackets.png"
        figures.append(("Hyperband brackets", path, len(schedules["hyperband"]["brackets"]),
                        functools.partial(plot_brackets, schedules["hyperband"], path)))
    if schedules["pbt"] is not None:
        path = plots / "pbt_lineage.png"
        figures.append(("PBT lineage and schedules", path, 1 + len(schedules["pbt"]["params"]),
                        functools.partial(plot_lineage, schedules["pbt"], path)))
    # report.html (report_html.py) is written beside the drawing, as the results files are
    from .report_html import write_html
    html = functools.partial(write_html, res, out, columns)
    side = html if alongside is None else (lambda: (alongside(), html()))
    _draw_all([(panels, draw) for _, _, panels, draw in figures], side)

    spec = res.config["model"]
    n_div = int(table.diverged.sum())
    model = ", ".join([
        f"{n_values['hidden']} architectures" if "hidden" in swept else f"hidden {spec['hidden']}",
        f"{n_values['activation']} activations" if "activation" in swept else spec["activation"]])
    text = [f"# {res.config['name']}: sweep report", "",
            f"{len(table)} runs ({n_div} diverged) of {model}, "
            f"{spec['loss']} on `{res.config['data']['source']}` data; "
            f"swept: {', '.join(f'{p} ({n_values[p]} values)' for p in swept) or 'nothing'}.",
            "", "## What mattered", "",
            f"Swept parameters ranked by how far they move the median final {_label(metric)} "
            f"over the runs that finished:", ""]
    noise = None
    if replicates:
        noise = replicate_spread(medians, params, metric)
        counts = ", ".join(f"{c} ({table[c].nunique()} values)" for c in replicates)
        text[-2:-2] = [f"Replicates, not parameters: {counts}. Between the replicates of "
                       f"one setting the final {_label(metric)} moves by a factor of "
                       f"{noise:.3g} (largest over smallest, median over settings): that "
                       f"much is noise.", ""]
    text += summary_lines(work, ranked, params, metric, noise) or ["(nothing was swept)"]
    from .report_schedules import hyperband_lines, pbt_lines
    text += (halving_lines(res) + hyperband_lines(res, schedules["hyperband"])
             + pbt_lines(res, schedules["pbt"]))
    if replicates:
        summary = res.summary(metric)
        text += ["", f"## Best settings over their replicates ({len(summary)} settings)", "",
                 f"Mean, std and a 95% interval of the final {_label(metric)} over each "
                 f"setting's replicates; rank 1: within noise of the best (intervals "
                 f"overlap). From summary.csv.", "", settings_table(summary, params, metric)]
    text += ["", f"## Best {min(BEST_ROWS, int(table[metric].notna().sum()))} runs", "",
             best_table(table, [*swept, *(c for c in replicates if c not in swept)],
                        metric=metric), "", "## Plots", ""]
    for title, path, _, _ in figures:
        text += [f"### {title}", "", f"![{title}](plots/{path.name})", ""]
    report = out / "report.md"
    atomic_write(report, lambda f: f.write("\n".join(text).encode()))
    return report


# Drawing a figure is matplotlib's Python, which holds the GIL: two cores draw two figures
# at once only in two processes. A forked child inherits the results and the group-by
# medians (no pickling, pages shared copy-on-write) and draws the figures while this
# process writes the results files (or, with nothing to write, draws half of the figures).
# The million-run line sweep's 5 figures, 14 panels, on the 2-core CPU: results files and
# report 2.4 to 2.6 s in one process (the files from a thread), 1.3 to 1.4 s with a child.
FORK_PANELS = 6             # fewer panels than this: drawn in this process (a fork costs ms)


def _can_fork() -> bool:
    """A child is forked only on Linux and only from a process with no other Python thread
    (a notebook's kernel has several: its figures are drawn in-process): a fork copies one
    thread, and a lock another thread held would stay held in the child. Native threads
    (torch's pool) hold nothing the drawing needs."""
    import threading
    return sys.platform == "linux" and hasattr(os, "fork") and threading.active_count() == 1


def _halves(figures: list[tuple[int, object]]) -> tuple[list, list]:
    """The figures' draws in two lists of about as many panels each, the largest first."""
    halves, panels = ([], []), [0, 0]
    for n, draw in sorted(figures, key=lambda f: -f[0]):
        side = int(panels[1] < panels[0])
        halves[side].append(draw)
        panels[side] += n
    return halves


def _fork(draws: list) -> tuple[int, int]:
    """Forks a child that calls ``draws`` and exits; returns its pid and the read end of a
    pipe on which it leaves the exception it raised, pickled (nothing when all went well):
    see _reap."""
    import warnings
    read, write = os.pipe()
    with warnings.catch_warnings():      # Python 3.12 warns of torch's native threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid:
        os.close(write)
        return pid, read
    os.close(read)
    code = 1
    try:
        for draw in draws:
            draw()
        code = 0
    except KeyboardInterrupt:
        pass                             # the parent has it too, and says so
    except BaseException as e:
        import pickle
        from ..spec.errors import UserError, WriteError
        if not isinstance(e, (UserError, WriteError)):      # a bug: its traceback
            import traceback
            traceback.print_exc()
            sys.stderr.flush()
        try:
            message = pickle.dumps(e)
        except Exception:                # an exception that does not pickle
            message = pickle.dumps(RuntimeError(f"{type(e).__name__}: {e}"))
        with os.fdopen(write, "wb") as f:
            f.write(message)
    finally:
        os._exit(code)                   # no atexit handlers, no buffers of the parent


def _reap(pid: int, read: int) -> None:
    """Waits for the child ``_fork`` started; raises the exception it raised, or a
    RuntimeError when it died without saying why."""
    import pickle
    with os.fdopen(read, "rb") as f:
        message = f.read()               # until the child exits
    _, status = os.waitpid(pid, 0)
    if message:
        raise pickle.loads(message)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"the process drawing the report's plots ended with status {code}")


def _draw_all(figures: list[tuple[int, object]], alongside=None) -> None:
    """Calls each figure's draw, and ``alongside`` meanwhile: with enough panels, the
    figures in a forked child (half of them without ``alongside``) while this process does
    the rest; else ``alongside`` from a second thread (Arrow, numpy and the file system
    release the GIL). A child's error is raised here once this process's work is done;
    each PNG is written atomically, so a failure leaves none half-written."""
    from concurrent.futures import ThreadPoolExecutor

    draws = [draw for _, draw in figures]
    if sum(n for n, _ in figures) < FORK_PANELS or not _can_fork():
        with ThreadPoolExecutor(max_workers=1) as pool:
            side = pool.submit(alongside) if alongside is not None else None
            try:
                for draw in draws:
                    draw()
            finally:
                if side is not None:
                    side.result()            # the side work's own error, if it failed
        return
    theirs, mine = (draws, []) if alongside is not None else _halves(figures)
    child = _fork(theirs)
    try:
        if alongside is not None:
            alongside()
        for draw in mine:
            draw()
    except BaseException:
        try:
            _reap(*child)
        except Exception:
            pass                         # this process's own error is the one to tell
        raise
    _reap(*child)


def save_with_report(res: Results, out: str | Path) -> Path:
    """Writes the results directory (Results.save) and the report; returns the report's
    path. The files are written while the plots draw (see _draw_all); results.csv is still
    the last file of the results to land, report.md the last file of all."""
    Path(out).mkdir(parents=True, exist_ok=True)
    with res.summaries_kept():
        return write_report(res, out, alongside=functools.partial(res.save, out))
