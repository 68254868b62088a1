"""``tinysweep diagnose``: why does one training setup converge, or not?

The config describes one setup (scalar sweep params). ``diagnose`` then

1. checks the data (feature scales, constant features, label balance, duplicates, extreme
   targets);
2. trains a sweep around the setup, one change at a time, each on SEEDS seeds (the user's
   seed first): every other input normalization, the learning rate over three decades,
   the batch size over its range, EPOCH_FACTOR x the epochs, sgd against adam;
3. reads the user's own run (the setup on its seed): divergence, a loss stuck at chance,
   a plateau, a loss still falling at the end, saturated or dead hidden units;
4. ranks the findings, each with its evidence (medians over the seeds) and the smallest
   change that fixes it, prints them, and writes the sweep's results, diagnose.md and its
   plots into a results directory.

A change "fixes" the setup when its median final train loss is at least FIX_RATIO times
lower than the setup's; the setup has no problem when no change does.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..spec.config import INPUT_NORMS, MAX_HIDDEN_LAYERS, Config, RunParams, load_config
from ..spec.errors import UserError
from ..pipeline.results import Results, atomic_write
from ..spec.runs import Runs
from ..spec.space import expand

SEEDS = 5
FIX_RATIO = 2.0             # a change that lowers the median final loss this much fixes
LR_FACTORS = (0.01, 0.1, 10.0)
BATCH_SIZES = (16, 64, 256)  # and the whole training split
EPOCH_FACTOR = 3
WIDE = 16                   # the hidden units a linear setup is tried with


@dataclass(frozen=True)
class Variant:
    factor: str             # "setup" or the hyperparameter it changes
    change: str             # e.g. "input_norm: standardize"
    overrides: dict


@dataclass
class Finding:
    kind: str               # data | run | fix | seeds | ok
    text: str               # what, with the evidence
    fix: str = ""           # the smallest change that fixes it
    score: float = 0.0      # ranks the findings: larger first


# ---- the setup and the sweep around it -------------------------------------------------
def base_run(config: Config) -> RunParams:
    """The one run the config describes; refuses a config that sweeps."""
    for name, value in config.sweep.params.items():
        if isinstance(value, (list, dict)):
            raise UserError(f"sweep.params.{name}: diagnose takes one setup, so every sweep "
                            f"param must be a single value, got {value!r}")
    return expand(config).row(0)


def variants(base: RunParams, n_train: int) -> list[Variant]:
    """The setup and each one-change variant of it."""
    out = [Variant("setup", "as configured", {})]
    for norm in INPUT_NORMS:
        if norm != base.input_norm:
            out.append(Variant("input_norm", f"input_norm: {norm}", {"input_norm": norm}))
    for f in LR_FACTORS:
        lr = float(f"{base.lr * f:.3g}")
        out.append(Variant("lr", f"lr: {lr:g} (x{f:g})", {"lr": lr}))
    for bs in sorted({*BATCH_SIZES, n_train}):
        if bs != base.batch_size and bs <= n_train:
            what = " (the whole split)" if bs == n_train else ""
            out.append(Variant("batch_size", f"batch_size: {bs}{what}", {"batch_size": bs}))
    out.append(Variant("epochs", f"epochs: {base.epochs * EPOCH_FACTOR} (x{EPOCH_FACTOR})",
                       {"epochs": base.epochs * EPOCH_FACTOR}))
    for opt in ("adam", "sgd"):
        if opt != base.optimizer:
            out.append(Variant("optimizer", f"optimizer: {opt}", {"optimizer": opt}))
    # a wider network (twice each layer; a linear model gets WIDE units) and a deeper one
    wider = tuple(2 * w for w in base.hidden) or (WIDE,)
    out.append(Variant("hidden", f"hidden: {list(wider)} (wider)", {"hidden": wider}))
    if len(base.hidden) < MAX_HIDDEN_LAYERS:
        deeper = (*base.hidden, base.hidden[-1] if base.hidden else WIDE)
        out.append(Variant("hidden", f"hidden: {list(deeper)} (deeper)", {"hidden": deeper}))
    return out


def _trainable(run: RunParams, n_train: int) -> bool:
    """False for a batchnorm run that would see a batch of one row."""
    if run.input_norm != "batchnorm":
        return True
    last = n_train - (math.ceil(n_train / run.batch_size) - 1) * run.batch_size
    return min(run.batch_size, n_train) > 1 and last > 1


def sweep_runs(base: RunParams, n_train: int) -> tuple[Runs, list[Variant]]:
    """Every variant on SEEDS seeds (the user's first): the runs and each run's variant."""
    runs, labels = [], []
    for v in variants(base, n_train):
        for k in range(SEEDS):
            run = dataclasses.replace(base, **v.overrides, seed=base.seed + k)
            if "optimizer" in v.overrides:   # adamw's decoupled decay means nothing to them
                wd = 0.0 if base.optimizer == "adamw" else base.weight_decay
                run = dataclasses.replace(run, weight_decay=wd, nesterov=False)
            if _trainable(run, n_train):
                runs.append(run)
                labels.append(v)
    return Runs.from_rows(runs), labels


# ---- reading the data and the runs ------------------------------------------------------
def data_findings(config: Config, data) -> list[Finding]:
    x, y = data.x_train.double(), data.y_train.double()
    out = []
    names = data.feature_names
    mean, std = x.mean(0), x.std(0) if len(x) > 1 else torch.ones(x.shape[1])
    constant = x.amax(0) == x.amin(0)
    for j in range(x.shape[1]):
        if constant[j]:
            out.append(Finding("data", f"feature '{names[j]}' is constant ({x[0, j]:.4g}): "
                               f"it carries no information", score=1.0))
        elif abs(mean[j]) > 3 * std[j] or std[j] > 10 or std[j] < 0.1:
            out.append(Finding(
                "data", f"feature '{names[j]}' is far from unit scale: mean {mean[j]:.4g}, "
                f"std {std[j]:.4g}", fix="input_norm: standardize", score=2.0))
    if config.model.loss == "bce_with_logits":
        share = float(y.mean())
        minority = min(share, 1 - share)
        if minority < 0.1:
            out.append(Finding("data", f"labels are imbalanced: {minority:.1%} of training "
                               f"rows are the minority class", score=1.0))
    else:
        spread = float(y.std()) if len(y) > 1 else 0.0
        if spread > 0 and float((y - y.mean()).abs().max()) > 6 * spread:
            out.append(Finding("data", f"extreme targets: one is "
                               f"{float((y - y.mean()).abs().max()) / spread:.1f} std from "
                               f"the mean", score=1.0))
    rows = torch.cat([x, y[:, None]], 1).numpy()
    dup = 1 - len(np.unique(rows, axis=0)) / max(len(rows), 1)
    if dup > 0.05:
        out.append(Finding("data", f"{dup:.0%} of training rows are duplicates", score=0.5))
    return out


def _chance_loss(y: torch.Tensor) -> float:
    """BCE of always predicting the label frequency: the loss of a model that learned
    nothing about the inputs."""
    p = float(y.double().mean())
    if p <= 0 or p >= 1:
        return 0.0
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def run_findings(res: Results, run_id: int, config: Config, data, floor: float
                 ) -> list[Finding]:
    """What the user's own run (the setup on its seed) shows. ``floor``: the lowest median
    final loss of the diagnostic sweep; a run within FIX_RATIO of it has converged, and its
    last wiggles are no symptom."""
    row = res.table.iloc[run_id]
    epochs, curve = res.curves["epoch"], res.curves["train_loss"][run_id]
    keep = np.isfinite(curve)
    ep, loss = epochs[keep], curve[keep]
    out = []
    if row.diverged:
        out.append(Finding("run", f"the run diverged: loss or weights not finite after "
                           f"{int(row.steps)} steps", score=5.0))
        return out
    final = float(row.final_train_loss)
    if config.model.loss == "bce_with_logits":
        chance = _chance_loss(data.y_train)
        if chance > 0 and final > 0.95 * chance:
            out.append(Finding("run", f"the loss is stuck at chance level: {final:.4g} vs "
                               f"{chance:.4g} for predicting the label frequency "
                               f"(accuracy {row.final_train_accuracy:.3f})", score=4.0))
    if len(loss) >= 4 and final > FIX_RATIO * floor:
        tail = loss[-max(2, len(loss) // 10):]
        drop = (tail[0] - tail[-1]) / max(abs(tail[0]), 1e-12)
        if drop > 0.02:
            out.append(Finding("run", f"the loss is still falling at the end: {tail[0]:.4g} "
                               f"-> {tail[-1]:.4g} over the last {ep[-1] - ep[-len(tail)]} "
                               f"epochs", score=3.0))
        half = loss[len(loss) // 2:]
        if len(half) >= 2 and abs(half[0] - half[-1]) <= 0.01 * abs(half[0]) and \
                final > 0.5 * float(loss.max()):
            out.append(Finding("run", f"the loss has plateaued: {half[0]:.4g} -> {half[-1]:.4g} "
                               f"over the second half of training", score=3.0))
        if float(loss.max()) > 10 * float(loss[0]):
            out.append(Finding("run", f"the loss spiked to {float(loss.max()):.4g} "
                               f"(from {float(loss[0]):.4g})", score=3.0))
    out += _unit_findings(res, run_id, config, data)
    return out


def _unit_findings(res: Results, run_id: int, config: Config, data) -> list[Finding]:
    """Saturated sigmoid/tanh units and dead relus of the first hidden layer, on the
    training rows."""
    hidden, act = res.architecture(run_id)
    if not hidden:
        return []
    model = res.model(run_id)
    with torch.no_grad():
        a = model[1](model[0](data.x_train.float()))          # pre-activations [n, h]
    if act == "relu":
        dead = int((a <= 0).all(0).sum())
        if dead:
            return [Finding("run", f"{dead} of {a.shape[1]} relu units are dead (0 on every "
                            f"training row)", score=2.5)]
        return []
    limit = 4.0 if act == "sigmoid" else 2.5     # sigmoid'(4) = 0.018, tanh'(2.5) = 0.027
    saturated = int(((a.abs() > limit).float().mean(0) > 0.95).sum())
    if saturated:
        return [Finding("run", f"{saturated} of {a.shape[1]} {act} units are saturated "
                        f"(|pre-activation| > {limit:g} on 95% of rows: almost no gradient)",
                        score=2.5)]
    return []


def fix_findings(res: Results, labels: list[Variant], base_run: RunParams
                 ) -> tuple[list[Finding], dict]:
    """Each factor's best change against the setup, by median final loss over the seeds
    (the validation loss with a validation split, else the training loss; a diverged run
    counts as infinite loss)."""
    metric = res.default_metric()
    final = res.table[metric].to_numpy(dtype=float)
    final = np.where(np.isfinite(final), final, np.inf)
    by_change: dict[str, list[float]] = {}
    for v, f in zip(labels, final):
        by_change.setdefault(v.change, []).append(f)
    medians = {c: float(np.median(v)) for c, v in by_change.items()}
    base = medians["as configured"]
    factor_of = {v.change: v.factor for v in labels}
    overrides = {v.change: v.overrides for v in labels}
    out = []
    for factor in dict.fromkeys(v.factor for v in labels if v.factor != "setup"):
        changes = [c for c in medians if factor_of[c] == factor]
        best = min(changes, key=lambda c: medians[c])
        ratio = base / medians[best] if medians[best] > 0 else math.inf
        if not ratio >= FIX_RATIO:
            continue
        # the smallest change that gets within FIX_RATIO of this factor's best
        good = [c for c in changes if medians[c] <= medians[best] * FIX_RATIO]
        pick = best if factor in ("input_norm", "optimizer") else \
            min(good, key=lambda c: _distance(overrides[c], base_run))
        out.append(Finding(
            "fix", f"{pick}: final {_words(metric)} {_loss(base)} -> {_loss(medians[pick])}, "
            f"median of {len(by_change[pick])} seeds", fix=pick,
            score=10 + math.log10(min(base / medians[pick], 1e12)) if medians[pick] > 0
            else 30))
    return out, medians


def _distance(overrides: dict, base: RunParams) -> float:
    """How far a numeric change moves the setup: |log(new / old)|."""
    (name, value), = overrides.items()
    if name == "hidden":                     # units added, relative to the setup's
        return abs(math.log((sum(value) + 1) / (sum(base.hidden) + 1)))
    return abs(math.log(value / getattr(base, name)))


def _words(metric: str) -> str:
    """final_val_loss -> 'val loss'."""
    return metric.removeprefix("final_").replace("_", " ")


def _loss(v: float) -> str:
    return "diverged" if not math.isfinite(v) else f"{v:.3g}"


def seed_findings(res: Results, labels: list[Variant]) -> list[Finding]:
    metric = res.default_metric()
    final = res.table[metric].to_numpy(dtype=float)
    mine = np.array([v.factor == "setup" for v in labels])
    base = final[mine]
    out = []
    finite = base[np.isfinite(base)]
    if 0 < len(finite) < len(base):
        out.append(Finding("seeds", f"the outcome depends on the seed: {len(base) - len(finite)}"
                           f" of {len(base)} seeds diverge", score=3.5))
    elif len(finite) == len(base) and finite.min() > 0 and finite.max() / finite.min() > 10:
        out.append(Finding("seeds", f"the outcome depends on the seed: final {_words(metric)} "
                           f"{finite.min():.3g} to {finite.max():.3g} over {len(base)} seeds",
                           score=3.5))
    return out


# ---- running it ---------------------------------------------------------------------------
@dataclass
class Diagnosis:
    findings: list[Finding]
    medians: dict           # change -> median final loss (val, else train) over its seeds
    results: Results
    labels: list[Variant]
    seconds: float

    @property
    def converges(self) -> bool:
        return not any(f.kind == "fix" for f in self.findings)

    def __str__(self) -> str:
        """The findings ranked, as `tinysweep diagnose` prints them."""
        return format_findings(self)


def diagnose(config: str | Path | dict | Config, backend: str = "auto",
             device: str | None = None, *, data=None, target: str | None = None,
             observed=None):
    """Checks, trains and reads one training setup: ``config`` (a path, a dict or a Config)
    whose sweep params are single values; ``data`` and ``target`` as for tinysweep.run.
    Sweeps around the setup and returns a Diagnosis: ``findings`` ranked (why it does or
    does not converge), ``converges``, and the ``results`` of the sweep around it.

    With ``observed`` (a CSV's path or a pandas DataFrame of what you saw, one row per run
    you trained; see observed.py), it asks instead which code reproduces the observations,
    correct code or one of the known bugs, and returns an ObservedDiagnosis (printable)."""
    if observed is not None:
        from .observed import diagnose_observed
        return diagnose_observed(config, observed, backend, device, data=data, target=target,
                                 followup=diagnose)
    from ..pipeline.sweep import config_data, execute, plan_for

    config = load_config(config, data, target)
    base = base_run(config)
    data = config_data(config)
    if not _trainable(base, data.n_train):
        raise UserError(f"sweep.params.batch_size: the setup (input_norm batchnorm, batch_size "
                        f"{base.batch_size}) would train on a batch of one row "
                        f"({data.n_train} training rows); BatchNorm1d needs >= 2")
    runs, labels = sweep_runs(base, data.n_train)
    diag_config = dataclasses.replace(config, name=f"{config.name}-diagnose")
    plan = plan_for(diag_config, runs, data, backend, device, None)
    start = time.perf_counter()
    res = execute(plan)
    seconds = time.perf_counter() - start
    findings = data_findings(config, data)
    fixes, medians = fix_findings(res, labels, base)
    findings += run_findings(res, 0, config, data, floor=min(medians.values()))
    findings += fixes + seed_findings(res, labels)
    if not fixes:
        findings.append(Finding("ok", f"no problem found: no single change lowers the median "
                                f"final {_words(res.default_metric())} "
                                f"({_loss(medians['as configured'])}) "
                                f"{FIX_RATIO:g}x or more", score=0.0))
    findings.sort(key=lambda f: -f.score)
    return Diagnosis(findings, medians, res, labels, seconds)


def format_findings(d: Diagnosis) -> str:
    lines = []
    verdict = "converges: no problem found" if d.converges else "does not converge as well as it could"
    lines.append(f"the setup {verdict} ({len(d.results.table)} runs in {d.seconds:.1f} s)")
    k = 0
    for f in d.findings:
        if f.kind == "ok":
            continue
        k += 1
        tag = {"data": "data", "run": "your run", "fix": "fix", "seeds": "seeds"}[f.kind]
        fix = f"  -> change {f.fix}" if f.fix and f.kind != "fix" else ""
        lines.append(f"{k:2d}. [{tag}] {f.text}{fix}")
    if d.converges:
        lines.append(next(f.text for f in d.findings if f.kind == "ok"))
    return "\n".join(lines)


# ---- the report ----------------------------------------------------------------------------
def write_diagnosis(d: Diagnosis, out: str | Path) -> Path:
    """Saves the diagnostic sweep's results, plots and diagnose.md into ``out``."""
    from .figures import _figure, _log_y, _save
    from .report_html import write_html
    out = Path(out)
    d.results.save(out)
    write_html(d.results, out)      # report.html: the diagnostic sweep, interactive
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    # the median final loss of every change, the setup's as a line
    changes = list(d.medians)
    vals = np.array([d.medians[c] for c in changes])
    fig, axes = _figure(1, width=7.5, height=0.32 * len(changes) + 1.5)
    ax = axes[0]
    shown = np.where(np.isfinite(vals), vals, np.nan)
    colours = ["C2" if v * FIX_RATIO <= d.medians["as configured"] else "C0" for v in vals]
    ax.barh(range(len(changes)), shown, color=colours)
    ax.set_yticks(range(len(changes)), changes, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(d.medians["as configured"], color="k", ls="--", lw=1, label="the setup")
    finite = shown[np.isfinite(shown)]
    if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 10:
        ax.set_xscale("log")
    for i, v in enumerate(vals):
        if not np.isfinite(v):
            ax.text(0.01, i, "diverged", va="center", transform=ax.get_yaxis_transform(),
                    fontsize=8, color="C3")
    words = _words(d.results.default_metric())
    ax.set_xlabel(f"median final {words} over {SEEDS} seeds (green: fixes)")
    ax.legend(fontsize=8)
    fig.suptitle("one change at a time")
    _save(fig, plots / "changes.png")
    # loss curves: the setup against the best fix
    fig, axes = _figure(1, width=6.5)
    ax = axes[0]
    epoch, curves = d.results.curves["epoch"], d.results.curves["train_loss"]
    best = min(d.medians, key=lambda c: d.medians[c])
    for change, colour in (("as configured", "C3"), (best, "C2")):
        ids = [i for i, v in enumerate(d.labels) if v.change == change]
        for j, i in enumerate(ids):
            keep = np.isfinite(curves[i])
            ax.plot(epoch[keep], curves[i][keep], color=colour, alpha=0.7, lw=1.2,
                    label=("the setup" if change == "as configured" else change) if j == 0 else None)
    _log_y(ax, curves[np.isfinite(curves)])
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"the setup and its best change, {SEEDS} seeds each")
    _save(fig, plots / "curves.png")
    text = [f"# {d.results.config['name']}", "", "```", format_findings(d), "```", "",
            f"| change | median final {words} |", "|---|---|"]
    text += [f"| {c} | {_loss(v)} |" for c, v in d.medians.items()]
    text += ["", "![one change at a time](plots/changes.png)", "",
             "![the setup and its best change](plots/curves.png)", ""]
    report = out / "diagnose.md"
    atomic_write(report, lambda f: f.write("\n".join(text).encode()))
    return report
