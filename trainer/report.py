"""A sweep's results as pictures and a short report: what moved the final loss, at a glance.

``write_report(res, out)`` writes, into the results directory ``out``:

    plots/final_by_PARAM.png     final train (val) loss and accuracy against each swept
                                 parameter, one line per value of a second, categorical one
    plots/weights_by_PARAM.png   linear models: the learned weights and bias against the
                                 first numeric swept parameter
    plots/curves.png             loss curves of the best, median and worst run of each group
    plots/heatmap_P1_P2.png      median final loss over two numeric swept parameters
    report.md                    those plots, what mattered (the swept parameters ranked by
                                 how far they move the median final loss), the best runs

Diverged runs have no final loss: they are counted, never plotted as numbers.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from .results import Results, atomic_write

LOSS = "final_train_loss"
MAX_CATEGORIES = 6          # a parameter with at most this many values can split the lines
MAX_DOTS = 5000             # dots per line drawn at most (a seeded sample; medians use all)
BEST_ROWS = 10


# ---- what was swept ---------------------------------------------------------------------
def swept_params(res: Results) -> list[str]:
    """The sweep's parameters that take more than one value, in config order."""
    params = res.config.get("sweep", {}).get("params", {})
    return [p for p in params if p in res.table and res.table[p].nunique() > 1]


def is_numeric(values: pd.Series) -> bool:
    return values.dtype.kind in "if" and values.dtype != bool


def hue_for(table: pd.DataFrame, swept: list[str], x: str | None) -> str | None:
    """The parameter that splits the lines of a plot against ``x``: of the swept parameters
    other than x with at most MAX_CATEGORIES values, the one that moves the median final
    loss the most (see ``ranking``), so the plot tells the sweep's main story; or None."""
    options = [p for p in swept if p != x and table[p].nunique() <= MAX_CATEGORIES]
    ranked = [r["param"] for r in ranking(table, options)]
    return ranked[0] if ranked else (options[0] if options else None)


def metrics_of(table: pd.DataFrame) -> list[str]:
    """The final_* columns that hold numbers, losses first."""
    cols = [c for c in ("final_train_loss", "final_val_loss", "final_train_accuracy",
                        "final_val_accuracy") if c in table and table[c].notna().any()]
    return cols


def ranking(table: pd.DataFrame, swept: list[str], metric: str = LOSS) -> list[dict]:
    """Each swept parameter's effect on the median ``metric`` over the runs that finished:
    the values with the lowest and highest median, and their ratio (losses are positive),
    largest first."""
    done = table[table[metric].notna()]
    out = []
    for p in swept:
        medians = done.groupby(p)[metric].median()
        if len(medians) < 2:
            continue
        lo_v, hi_v = medians.idxmin(), medians.idxmax()
        lo, hi = float(medians.min()), float(medians.max())
        ratio = hi / lo if lo > 0 else float("inf")
        out.append({"param": p, "best_value": lo_v, "best": lo, "worst_value": hi_v,
                    "worst": hi, "ratio": ratio, "medians": medians})
    return sorted(out, key=lambda r: -r["ratio"])


# ---- plots ------------------------------------------------------------------------------
def _figure(n_panels: int, width: float = 4.6, height: float = 3.6, sharey: bool = False):
    from matplotlib.figure import Figure   # the object API: no global pyplot state
    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False, sharey=sharey)[0]
    return fig, axes


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return path


def _label(metric: str) -> str:
    return metric.removeprefix("final_").replace("_", " ")


def _log_x(values: pd.Series) -> bool:
    v = values[values > 0]
    return len(v) == len(values) and v.max() / v.min() >= 20


def _log_y(ax, values) -> None:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) and v.min() > 0 and v.max() / v.min() >= 10:
        ax.set_yscale("log")


def _groups(table: pd.DataFrame, hue: str | None):
    if hue is None:
        return [("all runs", table)]
    return [(f"{hue} = {v}", g) for v, g in table.groupby(hue, sort=True)]


def plot_against(table: pd.DataFrame, x: str, hue: str | None, metrics: list[str],
                 title: str, path: Path) -> Path:
    """One panel per metric: every finished run as a dot, the median per value of ``x`` as
    a line, one colour per value of ``hue``."""
    fig, axes = _figure(len(metrics))
    numeric = is_numeric(table[x])
    categories = None if numeric else sorted(table[x].unique(), key=str)
    for ax, metric in zip(axes, metrics):
        for i, (label, g) in enumerate(_groups(table, hue)):
            g = g[g[metric].notna()]
            if g.empty:
                continue
            colour = f"C{i}"
            if numeric:
                xs = g[x]
                med = g.groupby(x)[metric].median()
                ax.plot(med.index, med.values, "-o", color=colour, ms=3, lw=1.5, label=label)
            else:
                pos = {c: k for k, c in enumerate(categories)}
                offset = (i - (table[hue].nunique() - 1) / 2) * 0.12 if hue else 0.0
                xs = g[x].map(pos) + offset
                med = g.groupby(g[x].map(pos))[metric].median()
                ax.plot(med.index + offset, med.values, "D", color=colour, ms=7, label=label)
            dots = xs.index if len(xs) <= MAX_DOTS else \
                xs.sample(MAX_DOTS, random_state=0).index
            ax.scatter(xs[dots], g.loc[dots, metric], s=8, color=colour, alpha=0.3,
                       linewidths=0)
        if numeric and _log_x(table[x]):
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(categories)), [str(c) for c in categories])
        if "loss" in metric:
            _log_y(ax, table[metric])
        ax.set_xlabel(x)
        ax.set_ylabel(_label(metric))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="median of", title_fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def plot_weights(res: Results, x: str, hue: str | None, path: Path) -> Path:
    """Linear models: each learned weight and the bias (final) against ``x``, and the loss."""
    table = res.table
    w = res.params["final.1.weight"].reshape(len(table), -1)[:, :4]
    b = res.params["final.1.bias"].reshape(len(table), -1)[:, 0]
    frame = table[[x] + ([hue] if hue else []) + [LOSS]].copy()
    names = ["slope" if w.shape[1] == 1 else f"weight[{j}]" for j in range(w.shape[1])]
    for j, name in enumerate(names):
        frame[name] = np.where(table.diverged, np.nan, w[:, j])
    frame["intercept"] = np.where(table.diverged, np.nan, b)
    return plot_against(frame, x, hue, [*names, "intercept", LOSS],
                        f"learned weights against {x} (final)", path)


def plot_curves(res: Results, hue: str | None, path: Path) -> Path:
    """Training loss against epoch for the best, median and worst finished run of each
    group (log scale)."""
    table, epoch = res.table, res.curves["epoch"]
    groups = _groups(table, hue)
    fig, axes = _figure(len(groups), width=4.2, sharey=True)   # one scale: groups compare
    curves = res.curves["train_loss"]
    for ax, (label, g) in zip(axes, groups):
        done = g[g[LOSS].notna()].sort_values(LOSS)
        if done.empty:
            ax.set_title(f"{label}: every run diverged")
            continue
        picks = {"best": done.iloc[0], "median": done.iloc[len(done) // 2], "worst": done.iloc[-1]}
        for (name, row), style in zip(picks.items(), ("-", "--", ":")):
            rid = int(row.run_id)
            y = curves[rid]
            keep = np.isfinite(y)
            ax.plot(epoch[keep], y[keep], style, lw=1.6,
                    label=f"{name}: run {rid} ({row[LOSS]:.3g})")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("train loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _log_y(axes[0], curves[table.run_id[table[LOSS].notna()].to_numpy()])
    fig.suptitle("training loss of the best, median and worst runs")
    return _save(fig, path)


def plot_heatmap(table: pd.DataFrame, x: str, y: str, path: Path) -> Path:
    """Median final train loss over the grid of two numeric swept parameters."""
    from matplotlib.colors import LogNorm
    grid = table[table[LOSS].notna()].pivot_table(index=y, columns=x, values=LOSS,
                                                    aggfunc="median")
    fig, axes = _figure(1, width=5.6, height=4.4)
    ax = axes[0]
    values = grid.to_numpy()
    finite = values[np.isfinite(values)]
    norm = LogNorm() if len(finite) and finite.min() > 0 else None
    image = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis_r", norm=norm)
    ax.set_xticks(range(len(grid.columns)), [f"{v:.3g}" for v in grid.columns], rotation=60,
                  fontsize=7)
    ax.set_yticks(range(len(grid.index)), [f"{v:.3g}" for v in grid.index], fontsize=7)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if values.size <= 144:   # small grids: the numbers too
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=8,
                        color="white" if image.norm(v) > 0.5 else "black")
    fig.colorbar(image, ax=ax, label="median final train loss")
    fig.suptitle(f"final train loss over {x} and {y} (blank: every run diverged)")
    return _save(fig, path)


# ---- the report ---------------------------------------------------------------------------
def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)


def summary_lines(res: Results, swept: list[str]) -> list[str]:
    """What mattered, in words, with the numbers."""
    table = res.table
    lines = []
    for k, r in enumerate(ranking(table, swept), 1):
        factor = "" if not np.isfinite(r["ratio"]) else f", a factor of {r['ratio']:.3g}"
        lines.append(f"{k}. **{r['param']}** moves the median final train loss from "
                     f"{_fmt(r['worst'])} ({r['param']} = {_fmt(r['worst_value'])}) to "
                     f"{_fmt(r['best'])} ({r['param']} = {_fmt(r['best_value'])}){factor}.")
    n_div = int(table.diverged.sum())
    if n_div:
        parts = []
        for p in swept:
            share = table.groupby(p).diverged.mean()
            if share.max() > 0 and share.max() > share.min():
                parts.append(f"{share.max():.0%} of runs with {p} = {_fmt(share.idxmax())}")
        lines.append(f"- {n_div} of {len(table)} runs diverged (weights or loss not finite)"
                     + (f": {'; '.join(parts)}." if parts else "."))
    return lines


def best_table(table: pd.DataFrame, swept: list[str], rows: int = BEST_ROWS) -> str:
    """The best finished runs by final train loss, as a markdown table."""
    cols = ["run_id", *swept, *metrics_of(table), "steps"]
    best = table[table[LOSS].notna()].sort_values(LOSS).head(rows)[cols]
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "\n".join("| " + " | ".join(_fmt(v) for v in row) + " |"
                            for row in best.itertuples(index=False))


def write_report(res: Results, out: str | Path) -> Path:
    """Writes the plots and report.md into the results directory ``out``; returns the
    report's path."""
    out = Path(out)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    table = res.table
    swept = swept_params(res)
    metrics = metrics_of(table)
    made: list[tuple[str, Path]] = []
    for x in swept:
        hue = hue_for(table, swept, x)
        made.append((f"Final metrics against {x}",
                     plot_against(table, x, hue, metrics, f"final metrics against {x}",
                                  plots / f"final_by_{x}.png")))
    numeric = [p for p in swept if is_numeric(table[p])]
    if not res.config["model"]["hidden"] and numeric:
        x = numeric[0]
        made.append((f"Learned weights against {x}",
                     plot_weights(res, x, hue_for(table, swept, x),
                                  plots / f"weights_by_{x}.png")))
    curve_hue = hue_for(table, swept, None)
    made.append(("Loss curves", plot_curves(res, curve_hue, plots / "curves.png")))
    grid = [p for p in numeric if table[p].nunique() <= 40]
    if len(grid) >= 2:
        made.append((f"{grid[0]} x {grid[1]}",
                     plot_heatmap(table, grid[0], grid[1], plots / f"heatmap_{grid[0]}_{grid[1]}.png")))

    spec = res.config["model"]
    n_div = int(table.diverged.sum())
    text = [f"# {res.config['name']}: sweep report", "",
            f"{len(table)} runs ({n_div} diverged) of hidden {spec['hidden']}, "
            f"{spec['activation']}, {spec['loss']} on `{res.config['data']['source']}` data; "
            f"swept: {', '.join(f'{p} ({table[p].nunique()} values)' for p in swept) or 'nothing'}.",
            "", "## What mattered", "",
            "Swept parameters ranked by how far they move the median final train loss over "
            "the runs that finished:", ""]
    text += summary_lines(res, swept) or ["(nothing was swept)"]
    text += ["", f"## Best {min(BEST_ROWS, int(table[LOSS].notna().sum()))} runs", "",
             best_table(table, swept), "", "## Plots", ""]
    for title, path in made:
        text += [f"### {title}", "", f"![{title}](plots/{path.name})", ""]
    report = out / "report.md"
    atomic_write(report, lambda f: f.write("\n".join(text).encode()))
    return report
