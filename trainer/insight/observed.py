"""``tinysweep diagnose CONFIG --observed FILE``: which code reproduces what the user saw?

FILE is a CSV, one row per run the user trained: columns named like per-run hyperparameters
give each row's setup (the config gives the rest), and the others are what the user saw:
``final_train_loss``, ``final_train_accuracy`` and, for a model without hidden layers, the
learned ``weight`` (``weight_0``, ``weight_1``, ... for several features) and ``bias``.

Every observed setup is trained under correct code and under each bug variant
(config.BUGS) that applies to the loss, on SEEDS seeds each, in one sweep. An explanation
fits an observation when the observed value lies within a few seed spreads of what the
explanation gives (``distance``); explanations are ranked by their mean log1p(distance)
over every observation. When correct code ranks first, the cause is not a known bug, and
the one-change-at-a-time diagnosis of the setup follows.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..spec.config import BUGS, RUN_PARAM_NAMES, Config, RunParams, check_run_value
from ..spec.errors import UserError
from ..spec.runs import Labels, Runs
from ..spec.space import fixed_values

SEEDS = 5
CAP = 100.0                 # a distance no larger than this (a diverged explanation: CAP)
FITS = 3.0                  # an observation within this distance is reproduced
# What a seed spread cannot resolve, added to it: losses compare in log (25%), accuracies
# to 2 points, weights to 2% of their size (at least 0.02).
LOG_LOSS_TOLERANCE = math.log(1.25)
ACCURACY_TOLERANCE = 0.02
WEIGHT_TOLERANCE = 0.02


@dataclass
class Explanation:
    name: str               # "correct code" or a bug's name
    score: float            # mean log1p(distance) over the observations: lower fits better
    reproduced: int         # observations within FITS
    observed: int           # observations compared
    mean: np.ndarray        # [rows, metrics]: the explanation's mean over seeds
    spread: np.ndarray      # [rows, metrics]: its std over seeds
    distance: np.ndarray    # [rows, metrics]: NaN where nothing was observed


@dataclass
class ObservedDiagnosis:
    explanations: list[Explanation]       # best first
    metrics: list[str]
    observed: np.ndarray                  # [rows, metrics]
    setups: list[dict]                    # each row's observed hyperparameters
    results: object                       # the sweep's Results
    seconds: float
    followup: object = None               # diagnose.Diagnosis when correct code fits best

    @property
    def best(self) -> Explanation:
        return self.explanations[0]

    def evidence(self, explanation: Explanation) -> str:
        """The observation where correct code is furthest from what was seen, with what
        correct code and ``explanation`` give there."""
        correct = next(e for e in self.explanations if e.name == "correct code")
        d = np.where(np.isnan(correct.distance), -1, correct.distance)
        row, col = np.unravel_index(int(np.argmax(d)), d.shape)
        what = _metric_label(self.metrics[col])
        give = lambda e: f"{e.mean[row, col]:.3g} +- {e.spread[row, col]:.2g}"
        line = (f"{_describe(self.setups[row])}: you saw {what} {self.observed[row, col]:.3g}; "
                f"correct code gives {give(correct)}")
        if explanation is not correct:
            line += f"; {explanation.name} gives {give(explanation)}"
        return line

    def __str__(self) -> str:
        best = self.best
        runs = len(self.results.table)
        if best.name == "correct code":
            head = (f"correct code reproduces what you saw ({best.reproduced} of "
                    f"{best.observed} observations; {runs} runs in {self.seconds:.1f} s): "
                    f"the cause is not one of the known bugs")
        else:
            head = (f"your code differs from the setup: {best.name} reproduces what you saw "
                    f"({best.reproduced} of {best.observed} observations), correct code "
                    f"{_correct(self).reproduced} ({runs} runs in {self.seconds:.1f} s)")
        lines = [head]
        for k, e in enumerate(self.explanations, 1):
            lines.append(f"{k:2d}. {e.name}: reproduces {e.reproduced} of {e.observed} "
                         f"(score {e.score:.2f})")
        lines.append(f"    e.g. {self.evidence(best)}")
        if self.followup is not None:
            lines += ["", "the setup of the worst observation, one change at a time:",
                      str(self.followup)]
        return "\n".join(lines)


def _correct(d: ObservedDiagnosis) -> Explanation:
    return next(e for e in d.explanations if e.name == "correct code")


def _metric_label(metric: str) -> str:
    return {"final_train_loss": "final train loss", "final_train_accuracy":
            "final train accuracy", "weight": "slope", "bias": "intercept"}.get(metric, metric)


def _describe(setup: dict) -> str:
    return ", ".join(f"{k} {str(v).lower() if isinstance(v, bool) else v}"
                     for k, v in setup.items()) or "your run"


# ---- the observed file ---------------------------------------------------------------------
def metric_names(config: Config, n_features: int) -> list[str]:
    """The metrics an observed file may hold for this config."""
    names = ["final_train_loss"]
    if config.model.loss == "bce_with_logits":
        names.append("final_train_accuracy")
    if not config.model.hidden:
        names += ["weight", "bias"] if n_features == 1 else \
            [f"weight_{j}" for j in range(n_features)] + ["bias"]
    return names


def read_observed(observed, config: Config, n_features: int, where: str = "--observed"):
    """The observed setups and values: (setups [rows] as dicts of the hyperparameters the
    file gives, their runs as Runs [rows], metric names, observed [rows, metrics]).
    ``observed``: a CSV's path or a pandas DataFrame. Raises UserError naming the problem."""
    import pandas as pd
    if isinstance(observed, pd.DataFrame):
        frame, name = observed, where
    else:
        path = Path(observed)
        name = str(observed)
        if not path.is_file():
            raise UserError(f"{where}: file not found: {observed}")
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise UserError(f"{name} is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise UserError(f"{name}: cannot read as CSV ({str(e).splitlines()[0]})") from None
    if frame.empty:
        raise UserError(f"{name} has no rows")
    allowed = metric_names(config, n_features)
    params = [c for c in frame.columns if c in RUN_PARAM_NAMES]
    metrics = [c for c in frame.columns if c in allowed]
    for column in frame.columns:
        if column not in params and column not in metrics:
            close = difflib.get_close_matches(str(column), [*RUN_PARAM_NAMES, *allowed], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else \
                f"; expected per-run hyperparameters or {', '.join(allowed)}"
            raise UserError(f"{name}: column {column!r} is neither a hyperparameter nor an "
                            f"observed metric of this model{hint}")
    if not metrics:
        raise UserError(f"{name}: no observed metric; give at least one of "
                        f"{', '.join(allowed)}")
    if "bug" in params:
        raise UserError(f"{name}: column 'bug': the bug is what diagnose finds, not an input")
    fixed, swept = fixed_values(config)
    swept = [k for k in swept if k not in params]
    if swept:
        raise UserError(f"{name}: the config sweeps {swept[0]}; give it as a column (one "
                        f"value per observed run) or make it a single value")
    setups, rows = [], []
    for i, record in enumerate(frame[params].to_dict("records")):   # the user's few rows
        setup = {}
        for key, value in record.items():
            if isinstance(value, float) and math.isnan(value):
                raise UserError(f"{name}: column {key!r}, row {i + 1} is empty")
            value = value.item() if isinstance(value, np.generic) else value
            setup[key] = check_run_value(key, value, f"{name}: column {key!r}, row {i + 1}")
        setups.append(setup)
        rows.append(RunParams(**{**fixed, **setup}).resolved())
    values = np.empty((len(frame), len(metrics)))
    for j, metric in enumerate(metrics):
        column = frame[metric]
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            raise UserError(f"{name}: column {metric!r} is not numeric (dtype {column.dtype})")
        values[:, j] = column.to_numpy(dtype=np.float64)
    if np.isnan(values).all():
        raise UserError(f"{name}: every observed value is empty")
    varying = [k for k in params if frame[k].nunique() > 1] or params
    setups = [{k: s[k] for k in varying} for s in setups]
    return setups, Runs.from_rows(rows), metrics, values


# ---- the sweep and the scores -----------------------------------------------------------
def explanation_names(config: Config) -> list[str]:
    """The bugs that apply to the config's loss, correct code ("none") first."""
    return [b for b in BUGS if b != "double_sigmoid" or config.model.loss == "bce_with_logits"]


def observed_runs(setups: Runs, bugs: list[str]) -> Runs:
    """Every observed setup x every bug x SEEDS seeds (the setup's seed and the next ones):
    [rows * bugs * SEEDS] runs, row-major."""
    n_rows, n_bugs = len(setups), len(bugs)
    row = np.repeat(np.arange(n_rows), n_bugs * SEEDS)
    codes = np.array([BUGS.index(b) for b in bugs], np.int8)
    bug = np.tile(np.repeat(codes, SEEDS), n_rows)
    offset = np.tile(np.arange(SEEDS), n_rows * n_bugs)
    runs = setups[row]
    return runs.replace(bug=Labels(bug, BUGS), seed=runs.seed + offset)


def simulated(results, metrics: list[str], shape: tuple[int, int, int]) -> np.ndarray:
    """Each metric of each run, as [rows, bugs, SEEDS, metrics] (NaN for a diverged run)."""
    table, params = results.table, results.params
    out = []
    for metric in metrics:
        if metric in table:
            values = table[metric].to_numpy(dtype=np.float64)
        elif metric == "bias":
            values = params["final.1.bias"].reshape(len(table), -1)[:, 0].astype(np.float64)
        else:
            j = 0 if metric == "weight" else int(metric.split("_")[1])
            values = params["final.1.weight"].reshape(len(table), -1)[:, j].astype(np.float64)
        values = np.where(table["diverged"].to_numpy(bool), np.nan, values)
        out.append(values.reshape(shape))
    return np.stack(out, axis=-1)


def distances(observed: np.ndarray, sims: np.ndarray, metrics: list[str]):
    """How far each observation is from each explanation: (mean, spread, distance), each
    [rows, bugs, metrics]. Losses compare in log; an explanation whose seeds mostly
    diverged where the user saw a finite value is CAP away."""
    loss = np.array(["loss" in m for m in metrics])
    tolerance = np.where(loss, LOG_LOSS_TOLERANCE,
                         [ACCURACY_TOLERANCE if "accuracy" in m else 0.0 for m in metrics])
    with np.errstate(invalid="ignore", divide="ignore"):
        t_sim = np.where(loss, np.log(np.maximum(sims, 1e-30)), sims)
        t_obs = np.where(loss, np.log(np.maximum(observed, 1e-30)), observed)[:, None, :]
        finite = np.isfinite(sims)
        count = finite.sum(axis=2)
        mean_t = np.nanmean(np.where(finite, t_sim, np.nan), axis=2)
        std_t = np.nanstd(np.where(finite, t_sim, np.nan), axis=2)
        weight_tol = np.where(loss | (tolerance > 0), 0.0,
                              WEIGHT_TOLERANCE * np.maximum(1.0, np.abs(mean_t)))
        d = np.abs(t_obs - mean_t) / (std_t + tolerance + weight_tol)
        mean = np.nanmean(np.where(finite, sims, np.nan), axis=2)
        spread = np.nanstd(np.where(finite, sims, np.nan), axis=2)
    d = np.where(count * 2 >= SEEDS, np.minimum(d, CAP), CAP)
    d = np.where(np.isfinite(observed)[:, None, :], d, np.nan)
    return mean, spread, d


def diagnose_observed(config, observed, backend: str = "auto", device: str | None = None,
                      *, data=None, target: str | None = None,
                      followup=None) -> ObservedDiagnosis:
    """Trains every observed setup under correct code and each bug, and ranks them by how
    well each reproduces ``observed`` (a CSV's path or a DataFrame; see the module).
    ``followup``: diagnose.diagnose, called on one setup when correct code explains the
    observations best (passed in, not imported: diagnose imports this module)."""
    from ..spec.config import load_config
    from ..pipeline.sweep import config_data, execute, plan_for
    config = load_config(config, data, target)
    data = config_data(config)
    setups, runs, metrics, values = read_observed(observed, config, data.n_features)
    bugs = explanation_names(config)
    sweep_config = dataclasses.replace(config, name=f"{config.name}-observed")
    plan = plan_for(sweep_config, observed_runs(runs, bugs), data, backend, device, None)
    start = time.perf_counter()
    results = execute(plan)
    seconds = time.perf_counter() - start
    sims = simulated(results, metrics, (len(runs), len(bugs), SEEDS))
    mean, spread, d = distances(values, sims, metrics)
    explanations = []
    for b, bug in enumerate(bugs):
        cells = d[:, b][~np.isnan(d[:, b])]
        explanations.append(Explanation(
            "correct code" if bug == "none" else bug, float(np.log1p(cells).mean()),
            int((cells <= FITS).sum()), len(cells), mean[:, b], spread[:, b], d[:, b]))
    explanations.sort(key=lambda e: e.score)
    diagnosis = ObservedDiagnosis(explanations, metrics, values, setups, results, seconds)
    if diagnosis.best.name == "correct code" and followup is not None:
        diagnosis.followup = _one_change(config, runs, values, metrics, backend, device,
                                         followup)
    return diagnosis


def _one_change(config: Config, runs: Runs, values: np.ndarray, metrics: list[str],
                backend: str, device: str | None, diagnose):
    """Today's diagnosis (``diagnose``) of one observed setup: the one with the highest
    observed final loss (else the first)."""
    from ..spec.config import SweepSpec
    row = 0
    if "final_train_loss" in metrics:
        loss = values[:, metrics.index("final_train_loss")]
        if np.isfinite(loss).any():
            row = int(np.nanargmax(loss))
    setup = runs.row(row)
    params = {k: getattr(setup, k) for k in RUN_PARAM_NAMES if k != "bug"}
    single = dataclasses.replace(config, sweep=SweepSpec("grid", params))
    return diagnose(single, backend=backend, device=device)


# ---- the figure and the report -------------------------------------------------------------
def write_observed(d: ObservedDiagnosis, out: str | Path) -> Path:
    """Writes the sweep's results, plots/observed.png and diagnose.md into ``out``."""
    from .figures import _save
    from .report_html import write_html
    from ..pipeline.results import atomic_write
    out = Path(out)
    d.results.save(out)
    write_html(d.results, out)      # report.html: the diagnostic sweep, interactive
    (out / "plots").mkdir(parents=True, exist_ok=True)
    figure = _save(_figure(d), out / "plots" / "observed.png")
    text = [f"# {d.results.config['name']}: which code reproduces what you saw", "",
            "```", str(d), "```", "", f"![observed against each explanation](plots/{figure.name})", ""]
    report = out / "diagnose.md"
    atomic_write(report, lambda f: f.write("\n".join(text).encode()))
    return report


def _figure(d: ObservedDiagnosis):
    """One panel per metric (and per value of a second varying hyperparameter): the
    observations as black crosses against the first varying hyperparameter, correct code
    and the best explanations as means with their seed spread."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    keys = list(d.setups[0])
    x_key = keys[0] if keys else None
    split_key = keys[1] if len(keys) > 1 else None
    splits = list(dict.fromkeys(s[split_key] for s in d.setups)) if split_key else [None]
    splits = splits[:3]
    shown = [e for e in d.explanations if e.name == "correct code"]
    shown += [e for e in d.explanations if e.name != "correct code"][:2]
    fig = Figure(figsize=(4.4 * len(d.metrics), 3.4 * len(splits)), dpi=110,
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(splits), len(d.metrics), squeeze=False)
    x = np.array([s.get(x_key, i) if x_key else i for i, s in enumerate(d.setups)], dtype=float)
    for r, split in enumerate(splits):
        rows = np.array([split_key is None or s[split_key] == split for s in d.setups])
        order = np.argsort(x[rows], kind="stable")
        for c, metric in enumerate(d.metrics):
            ax = axes[r][c]
            for k, e in enumerate(shown):
                ax.errorbar(x[rows][order], e.mean[rows, c][order], yerr=e.spread[rows, c][order],
                            fmt="-o", ms=3, lw=1.2, capsize=2, color=f"C{k}", label=e.name)
            ax.plot(x[rows][order], d.observed[rows, c][order], "kx", ms=8, mew=2,
                    label="what you saw")
            if x_key and len(x) and x.min() > 0 and x.max() / x.min() >= 20:
                ax.set_xscale("log")
            if "loss" in metric:
                ax.set_yscale("log")
            ax.set_xlabel(x_key or "observed run")
            title = _metric_label(metric)
            ax.set_title(f"{title}, {split_key} {split}" if split_key else title, fontsize=10)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("what you saw against correct code and the bugs that explain it best")
    return fig
