"""The report's view of the schedules that stop and copy runs: Hyperband's brackets and
population based training's lineage (report.md, plots/ and report.html).

Each view is a ``*_info`` function that returns plain values (numpy arrays for the long
ones; tested without matplotlib or a browser), its markdown lines, and a ``plot_*`` that
draws the PNG. report_html.py puts a thinned copy of the same values in the page.

Scale: no Python object per run. A panel's curves are one Line2D whose rows are joined by
NaN (matplotlib breaks a line at NaN), the exploit jumps one LineCollection; the loops are
over brackets, rounds and the few top members. At most MAX_LINES runs' curves are drawn
per panel: the best and a seeded sample, and the panel says "n of N shown".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MAX_LINES = 400         # curves drawn per bracket / of the population (the rest: a sample)
TOP_MEMBERS = 5         # PBT: the final best members whose lineage and schedule are traced
LISTED_COPIES = 8       # PBT in report.md: copies named per round ("and 12 more")


def halving_steps(table: pd.DataFrame) -> int:
    """The optimizer steps a halving sweep's runs would take without halving: a stopped
    run's steps x epochs / stopped_epoch."""
    stopped = table["stopped_epoch"].to_numpy(dtype=np.float64)
    steps = table["steps"].to_numpy(dtype=np.float64)
    epochs = table["epochs"].to_numpy(dtype=np.float64)
    ran = np.isnan(stopped)
    return int(np.where(ran, steps, steps * epochs / np.where(ran, 1, stopped)).sum())


def _config_of(res) -> dict:
    return res.config.get("sweep", {}) or {}


def _floats(values) -> np.ndarray:
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(np.float64)


def _ranked(values: np.ndarray) -> np.ndarray:
    """Indices best (lowest) first, NaN last, ties to the lower index."""
    key = np.where(np.isfinite(values), values, np.inf)
    return np.lexsort((np.arange(len(values)), key))


def _shown(ranked: np.ndarray, max_lines: int | None = None, seed: int = 0) -> np.ndarray:
    """Rows to draw out of ``ranked`` (best first): all, or the best half of max_lines
    (default MAX_LINES) and a seeded sample of the rest."""
    max_lines = MAX_LINES if max_lines is None else max_lines
    if len(ranked) <= max_lines:
        return ranked
    best = ranked[:max_lines // 2]
    rest = np.random.default_rng(seed).choice(ranked[max_lines // 2:],
                                              max_lines - len(best), replace=False)
    return np.concatenate([best, np.sort(rest)])


def _last_evaluated(curve: np.ndarray, epoch: np.ndarray) -> np.ndarray:
    """Each run's last epoch with an evaluation (0: none) [runs]."""
    if not curve.shape[1]:
        return np.zeros(len(curve), np.int64)
    has = ~np.isnan(curve)
    last = curve.shape[1] - 1 - np.argmax(has[:, ::-1], axis=1)
    return np.where(has.any(axis=1), np.asarray(epoch)[last], 0).astype(np.int64)


# ---- Hyperband --------------------------------------------------------------------------
def hyperband_info(res) -> dict | None:
    """Hyperband's brackets: for each (most aggressive first) its runs, the epochs of its
    stages and how many runs were trained to each, its survivors (trained to the last
    epoch, not diverged), its diverged runs and its best run by the final metric; None for
    another sweep."""
    hb = _config_of(res).get("hyperband")
    table = res.table
    if not hb or "bracket" not in table or not len(table):
        return None
    from ..pipeline.sweep import brackets
    metric = hb["metric"]
    final = _floats(table.get(f"final_{metric}", np.full(len(table), np.nan)))
    bracket = table["bracket"].to_numpy(np.int64)
    stopped = _floats(table["stopped_epoch"])
    diverged = table["diverged"].to_numpy(bool, na_value=False)
    epochs = int(table["epochs"].max())
    eval_every = int(res.config.get("train", {}).get("eval_every", 1))
    _, rungs = brackets(len(table), epochs, hb["min_epochs"], hb["eta"], eval_every,
                        int(_config_of(res).get("seed", 0)))
    curve = np.asarray(res.curves.get(metric, res.curves["train_loss"]), np.float64)
    last = _last_evaluated(np.asarray(res.curves["train_loss"], np.float64),
                           res.curves["epoch"])
    out = []
    for s in sorted(set(bracket.tolist()), reverse=True):
        mine = bracket == s
        at = [*rungs.get(s, []), epochs]
        stages = [[int(e), int((mine & (last >= e)).sum())] for e in at]
        rows = np.flatnonzero(mine)
        best = rows[_ranked(final[rows])[0]]
        ok = np.isfinite(final[best])
        out.append({"bracket": s, "runs": int(mine.sum()), "stages": stages,
                    "survivors": int((mine & np.isnan(stopped) & ~diverged).sum()),
                    "diverged": int((mine & diverged).sum()),
                    "best_run": int(table["run_id"].iloc[best]) if ok else None,
                    "best_value": float(final[best]) if ok else None,
                    "best_epoch": int(last[best]) if ok else None,
                    "rows": rows})
    return {"metric": metric, "eta": hb["eta"], "min_epochs": hb["min_epochs"],
            "epochs": epochs, "brackets": out, "epoch": np.asarray(res.curves["epoch"]),
            "curve": curve, "final": final}


def hyperband_lines(res, info: dict | None = None) -> list[str]:
    """report.md's Hyperband section: a row per bracket."""
    info = info if info is not None else hyperband_info(res)
    if info is None:
        return []
    table = res.table
    steps, full = int(table["steps"].sum()), halving_steps(table)
    m = info["metric"].replace("_", " ")
    lines = ["", "## Hyperband", "",
             f"Brackets of successive halving from {info['min_epochs']} epochs, eta "
             f"{info['eta']}, by {m}; each run in one bracket. Stages: the epoch each was "
             f"trained to (runs trained to it).", "",
             f"| bracket | runs | stages: epoch (runs) | survivors | diverged | best run | "
             f"best final {m} |", "|---|---|---|---|---|---|---|"]
    for b in info["brackets"]:
        stages = " → ".join(f"{e} ({k})" for e, k in b["stages"])
        best = "-" if b["best_run"] is None else str(b["best_run"])
        value = "-" if b["best_value"] is None else f"{b['best_value']:.4g}"
        if b["best_run"] is not None and b["best_epoch"] < info["epochs"]:
            value += f" (at epoch {b['best_epoch']})"
        lines.append(f"| {b['bracket']} | {b['runs']} | {stages} | {b['survivors']} | "
                     f"{b['diverged']} | {best} | {value} |")
    lines += ["", f"{steps:,} optimizer steps trained where the whole grid takes {full:,}: "
                  f"{1 - steps / max(full, 1):.0%} saved."]
    return lines


def _joined(epoch: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Curves ``rows`` [k, E] over ``epoch`` [E] as one polyline broken by NaN: (x, y)."""
    k = len(rows)
    x = np.tile(np.append(np.asarray(epoch, np.float64), np.nan), k)
    y = np.hstack([rows, np.full((k, 1), np.nan)]).ravel()
    return x, y


def plot_brackets(info: dict, path) -> object:
    """A panel per bracket: its runs' metric over epochs (stopped runs grey, ending at
    their rung; survivors blue; the best run black), the rungs as dashed lines."""
    from .figures import _figure, _log_y, _save
    brackets = info["brackets"]
    fig, axes = _figure(len(brackets), width=3.4, height=3.2, sharey=True)
    axes = np.atleast_1d(axes).ravel()
    epoch, curve, final = info["epoch"], info["curve"], info["final"]
    drawn = []
    for ax, b in zip(axes, brackets):
        rows = b["rows"]
        shown = rows[_shown(_ranked(final[rows]))]
        survived = np.isin(shown, rows[_survivors(info, rows)])
        for mask, style in ((~survived, dict(color="0.65", lw=0.7)),
                            (survived, dict(color="#4c72b0", lw=1.2))):
            if mask.any():
                ax.plot(*_joined(epoch, curve[shown[mask]]), **style)
        stopped = shown[~survived]               # a dot where each stopped run ended
        if len(stopped):
            end = _last_evaluated(curve[stopped], epoch)
            col = np.searchsorted(epoch, end)
            ok = end > 0
            ax.plot(end[ok], curve[stopped[ok], col[ok]], "o", color="0.55", ms=2.5)
        if b["best_run"] is not None:
            best = rows[_ranked(final[rows])[0]]
            ax.plot(epoch, curve[best], color="black", lw=2, label=f"best: run {b['best_run']}")
            ax.legend(loc="best", fontsize=7, frameon=False)
        for e, _ in b["stages"][:-1]:
            ax.axvline(e, color="#c44e52", lw=0.8, ls="--")
        title = (f"bracket {b['bracket']}: " + " → ".join(str(k) for _, k in b["stages"])
                 + " runs\nat epochs " + ", ".join(str(e) for e, _ in b["stages"]))
        if len(shown) < len(rows):
            title += f" ({len(shown)} of {len(rows)} runs shown)"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        drawn.append(curve[shown])
    axes[0].set_ylabel(info["metric"].replace("_", " "))
    if drawn:
        _log_y(axes[0], np.concatenate([d.ravel() for d in drawn]))
    for ax in axes[len(brackets):]:
        ax.set_visible(False)
    fig.suptitle("Hyperband: each bracket's runs (grey: stopped at a rung, dashed)",
                 fontsize=10)
    return _save(fig, path)


def _survivors(info: dict, rows: np.ndarray) -> np.ndarray:
    """Positions in ``rows`` of the runs with an evaluation at the last epoch."""
    last = _last_evaluated(info["curve"][rows], info["epoch"])
    return np.flatnonzero(last >= info["epochs"])


# ---- population based training ----------------------------------------------------------
def pbt_info(res, top: int = TOP_MEMBERS) -> dict | None:
    """PBT's lineage and schedules, from Results.history() and the curves; None for
    another sweep.

    rounds [R]: the exploit epochs. parent [R, n] and values[param] [R + 1, n]: the
    history as arrays (row 0 is epoch 0). exploits: per round, children, parents and the
    metric of each at the round (the jump a child makes). top [k]: the final best members
    (run_ids); owner [R + 1, k]: the member whose weights each carried in segment j (epochs
    r_j..r_j+1; the last segment is itself): where a member copied a parent at a round, its
    weights before the round were the parent's. lineage [k, E]: the metric of the weights
    each top member ends with, over every epoch (segment j read from owner j's curve).
    schedule[param] [R + 1, k]: the values those weights were trained with, per segment."""
    pbt = _config_of(res).get("pbt")
    history = getattr(res, "_history", None)
    table = res.table
    if not pbt or history is None or not len(table):
        return None
    n = len(table)
    names = list(pbt["perturb"])
    history = history.sort_values(["epoch", "run_id"], kind="stable")
    epochs_seen = np.unique(history["epoch"].to_numpy(np.int64))
    rounds = epochs_seen[epochs_seen > 0]
    parent = history["parent"].to_numpy(np.int64).reshape(len(epochs_seen), n)[1:]
    values = {k: history[k].to_numpy().reshape(len(epochs_seen), n) for k in names}
    metric = pbt["metric"]
    epoch = np.asarray(res.curves["epoch"])
    curve = np.asarray(res.curves.get(metric, res.curves["train_loss"]), np.float64)
    final = _floats(table.get(f"final_{metric}", np.full(n, np.nan)))
    column = {int(e): i for i, e in enumerate(epoch.tolist())}
    exploits = []
    for j, r in enumerate(rounds):
        children = np.flatnonzero(parent[j] >= 0)
        col = column.get(int(r))
        at = (lambda rows: curve[rows, col]) if col is not None else \
            (lambda rows: np.full(len(rows), np.nan))
        exploits.append({"epoch": int(r), "children": children,
                         "parents": parent[j][children], "child_value": at(children),
                         "parent_value": at(parent[j][children])})
    best = _ranked(final)[:min(top, n)]
    owner = np.empty((len(rounds) + 1, len(best)), np.int64)
    owner[-1] = best
    for j in range(len(rounds), 0, -1):          # back through the rounds
        p = parent[j - 1][owner[j]]
        owner[j - 1] = np.where(p >= 0, p, owner[j])
    segment = np.searchsorted(rounds, epoch, side="left")     # rounds before each epoch
    lineage = curve[owner[segment].T, np.arange(len(epoch))[None, :]] if len(epoch) else \
        np.zeros((len(best), 0))
    schedule = {k: v[np.arange(len(rounds) + 1)[:, None], owner] for k, v in values.items()}
    return {"metric": metric, "interval": pbt["interval"], "quantile": pbt["quantile"],
            "params": names, "n": n, "epochs": int(table["epochs"].max()),
            "rounds": rounds, "parent": parent, "values": values, "exploits": exploits,
            "top": best, "final": final, "owner": owner, "lineage": lineage,
            "schedule": schedule, "epoch": epoch, "curve": curve}


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.3g}"
    return str(v.item() if hasattr(v, "item") else v)


def pbt_lines(res, info: dict | None = None) -> list[str]:
    """report.md's PBT section: the copies of every round, then the final best members'
    lineage and the hyperparameters their weights were trained with."""
    info = info if info is not None else pbt_info(res)
    if info is None:
        return []
    m = info["metric"].replace("_", " ")
    rounds = info["rounds"]
    lines = ["", "## Population based training", "",
             f"{info['n']} members; at each round (epochs "
             f"{', '.join(map(str, rounds.tolist())) or 'none'}), the bottom "
             f"{info['quantile']:.0%} by {m} took the weights and optimizer state of a top "
             f"member (child ← parent), then perturbed {', '.join(info['params'])}.", "",
             f"| epoch | copies (child ← parent) | best {m} at the round |", "|---|---|---|"]
    curve, epoch = info["curve"], info["epoch"].tolist()
    for ex in info["exploits"]:
        pairs = [f"{c} ← {p}" for c, p in zip(ex["children"][:LISTED_COPIES].tolist(),
                                               ex["parents"][:LISTED_COPIES].tolist())]
        more = len(ex["children"]) - len(pairs)
        if more > 0:
            pairs.append(f"and {more} more")
        at = curve[:, epoch.index(ex["epoch"])] if ex["epoch"] in epoch else np.array([])
        best = "-"
        if np.isfinite(at).any():
            i = int(_ranked(at)[0])
            best = f"{at[i]:.4g} (run {i})"
        lines.append(f"| {ex['epoch']} | {', '.join(pairs) or '-'} | {best} |")
    bounds = [0, *rounds.tolist(), info["epochs"]]
    spans = ", ".join(f"{a}-{b}" for a, b in zip(bounds[:-1], bounds[1:]))
    lines += ["", f"The final best members: the member whose weights each carried, epochs "
                  f"{spans}, and the values those weights were trained with (the schedule "
                  f"found):", "",
              "| run | final " + m + " | weights from | " + " | ".join(info["params"]) + " |",
              "|---|---|---|" + "---|" * len(info["params"])]
    for i, run in enumerate(info["top"].tolist()):
        chain = " → ".join(map(str, info["owner"][:, i].tolist()))
        sched = [" → ".join(_fmt(v) for v in info["schedule"][k][:, i]) for k in info["params"]]
        lines.append(f"| {run} | {info['final'][run]:.4g} | {chain} | " + " | ".join(sched)
                     + " |")
    return lines


def _schedule_steps(info: dict, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A per-segment schedule [R + 1] as a step line over epochs: (x, y)."""
    bounds = np.array([0, *info["rounds"].tolist(), info["epochs"]], np.float64)
    return np.repeat(bounds, 2)[1:-1], np.repeat(np.asarray(values, np.float64), 2)


def _log_param(values: np.ndarray) -> bool:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return len(v) > 0 and (v > 0).all() and v.max() / v.min() >= 5


def plot_lineage(info: dict, path) -> object:
    """PBT: (1) every member's metric over epochs (grey), each exploit a red jump from the
    child's value to its parent's at the round, and the final best members' lineages (the
    curve of the weights they end with); (2) one panel per perturbed parameter: the values
    those lineages were trained with, over epochs."""
    from matplotlib.collections import LineCollection

    from .figures import _figure, _log_scale, _log_y, _save
    names = info["params"]
    fig, axes = _figure(1 + len(names), width=4.2, height=3.4)
    axes = np.atleast_1d(axes).ravel()
    ax = axes[0]
    epoch, curve = info["epoch"], info["curve"]
    shown = _shown(_ranked(info["final"]))
    ax.plot(*_joined(epoch, curve[shown]), color="0.7", lw=0.6)
    jumps = [np.stack([np.column_stack([np.full(len(ex["children"]), ex["epoch"]),
                                        ex["child_value"]]),
                       np.column_stack([np.full(len(ex["children"]), ex["epoch"]),
                                        ex["parent_value"]])], axis=1)
             for ex in info["exploits"] if len(ex["children"])]
    if jumps:
        segments = np.concatenate(jumps)
        segments = segments[np.isfinite(segments).all(axis=(1, 2))]
        ax.add_collection(LineCollection(segments, colors="#c44e52", lw=1.0, alpha=0.7,
                                         label="exploit: child → parent"))
    colors = ["#4c72b0", "#55a868", "#8172b2", "#ccb974", "#64b5cd", "#dd8452"]
    for i, run in enumerate(info["top"].tolist()):
        ax.plot(epoch, info["lineage"][i], color=colors[i % len(colors)], lw=2 if i == 0 else 1.3,
                label=f"run {run} (#{i + 1})")
    for r in info["rounds"]:
        ax.axvline(r, color="0.85", lw=0.6, zorder=0)
    _log_y(ax, curve[shown])
    ax.set_xlabel("epoch")
    ax.set_ylabel(info["metric"].replace("_", " "))
    title = "members and exploits; the best lineages"
    if len(shown) < info["n"]:
        title += f"\n{len(shown)} of {info['n']} members shown"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    for ax, name in zip(axes[1:], names):
        sched = info["schedule"][name]
        for i in range(sched.shape[1]):
            ax.plot(*_schedule_steps(info, sched[:, i]), color=colors[i % len(colors)],
                    lw=2 if i == 0 else 1.3)
        if _log_param(sched):
            finite = sched[np.isfinite(sched)].astype(np.float64)
            _log_scale(ax, "y", float(finite.min()), float(finite.max()))
        ax.set_xlabel("epoch")
        ax.set_title(f"{name} of the best lineages", fontsize=9)
    fig.suptitle("Population based training: lineage and the schedules found", fontsize=10)
    return _save(fig, path)


# ---- report.html -------------------------------------------------------------------------
PAGE_POINTS = 60        # evaluation epochs kept per curve in the page (and every rung/round)
PAGE_JUMPS = 3000       # PBT exploits drawn in the page at most (the latest rounds first)


def _page_columns(epoch: np.ndarray, must: list[int]) -> np.ndarray:
    """The evaluation epochs' columns the page keeps: PAGE_POINTS spread evenly, the last,
    and those of the epochs ``must`` (rungs, rounds)."""
    n = len(epoch)
    if not n:
        return np.zeros(0, np.int64)
    keep = np.linspace(0, n - 1, min(PAGE_POINTS, n)).round().astype(np.int64)
    extra = np.searchsorted(epoch, must).astype(np.int64)
    extra = extra[extra < n]
    extra = extra[np.isin(np.asarray(epoch)[extra], must)]
    return np.unique(np.concatenate([keep, extra]))


def hyperband_page(info: dict | None) -> dict | None:
    """The brackets as the page draws them: per bracket, its stopped and surviving runs'
    curves (at most MAX_LINES, each set one polyline broken by NaN) and its best run's."""
    if info is None:
        return None
    epoch = info["epoch"]
    rungs = sorted({e for b in info["brackets"] for e, _ in b["stages"]})
    cols = _page_columns(epoch, rungs)
    x = epoch[cols]
    curve, final = info["curve"], info["final"]
    out = []
    for b in info["brackets"]:
        rows = b["rows"]
        ranked = _ranked(final[rows])
        shown = rows[_shown(ranked)]
        survived = np.isin(shown, rows[_survivors(info, rows)])
        part = {"bracket": b["bracket"], "runs": b["runs"], "shown": int(len(shown)),
                "stages": b["stages"], "survivors": b["survivors"], "best_run": b["best_run"],
                "best_value": b["best_value"]}
        for name, mask in (("stopped", ~survived), ("survived", survived)):
            part[name] = dict(zip(("x", "y"), _joined(x, curve[shown[mask]][:, cols])))
        part["best"] = curve[rows[ranked[0]], cols] if b["best_run"] is not None else None
        out.append(part)
    return {"metric": info["metric"], "epoch": x, "eta": info["eta"], "brackets": out}


def pbt_page(info: dict | None) -> dict | None:
    """PBT as the page draws it: the members' curves (at most MAX_LINES, one polyline), the
    exploit jumps (one polyline of pairs, at most PAGE_JUMPS), the best lineages with
    their values per epoch on hover, and each perturbed parameter's schedules."""
    if info is None:
        return None
    epoch = info["epoch"]
    cols = _page_columns(epoch, info["rounds"].tolist())
    x = epoch[cols]
    shown = _shown(_ranked(info["final"]))
    members = dict(zip(("x", "y"), _joined(x, info["curve"][shown][:, cols])))
    jx, jy = [], []
    for ex in reversed(info["exploits"]):
        k = len(ex["children"])
        if not k or sum(map(len, jx)) >= 3 * PAGE_JUMPS:
            continue
        k = min(k, PAGE_JUMPS - sum(map(len, jx)) // 3)
        jx.append(np.column_stack([np.full((k, 2), ex["epoch"], np.float64),
                                   np.full(k, np.nan)]).ravel())
        jy.append(np.column_stack([ex["child_value"][:k], ex["parent_value"][:k],
                                   np.full(k, np.nan)]).ravel())
    n_jumps = sum(len(e["children"]) for e in info["exploits"])
    segment = np.searchsorted(info["rounds"], x, side="left")
    lineages = []
    for i, run in enumerate(info["top"].tolist()):
        words = [f"weights of run {o}" for o in info["owner"][:, i].tolist()]
        for k in info["params"]:
            for j, v in enumerate(info["schedule"][k][:, i].tolist()):
                words[j] += f"<br>{k} {_fmt(v)}"
        lineages.append({"run": run, "y": info["lineage"][i, cols],
                         "text": [words[j] for j in segment.tolist()]})
    schedules = []
    for k in info["params"]:
        sched = info["schedule"][k]
        steps = [_schedule_steps(info, sched[:, i]) for i in range(sched.shape[1])]
        schedules.append({"param": k, "x": steps[0][0] if steps else np.zeros(0),
                          "ys": [y for _, y in steps], "log": bool(_log_param(sched))})
    return {"metric": info["metric"], "n": info["n"], "shown": int(len(shown)), "epoch": x,
            "rounds": info["rounds"], "members": members,
            "jumps": {"x": np.concatenate(jx) if jx else np.zeros(0),
                      "y": np.concatenate(jy) if jy else np.zeros(0)},
            "n_jumps": n_jumps, "jumps_shown": sum(len(j) for j in jx) // 3,
            "lineages": lineages, "schedules": schedules}
