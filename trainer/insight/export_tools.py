"""A sweep's settings in the tools people already open: ``tinysweep export DIR --to TOOL``.

    optuna        one trial per setting in a SQLite study (``optuna-dashboard sqlite:///FILE``):
                  its value the mean over replicates (seed, fold, repeat), the spread (std,
                  sem, the 95% interval, runs, diverged, rank) in its user attributes; a
                  setting with a diverged replicate is a FAIL trial. Default out:
                  DIR/export-optuna.db.
    tensorboard   TensorBoard's HParams table: one run folder per setting holding its
                  hyperparameters (with the sweep's domains) and metrics. Default out:
                  DIR/tensorboard/ (``tensorboard --logdir DIR/tensorboard``).

Both tools slow down far below tinysweep's sizes (TensorBoard's HParams at about 250 runs,
tensorboard#1013), so each gets the ``--top`` best settings, DEFAULT_TOP by default, and
the command says how many it left out. The settings come from ``Results.summary`` (issue 24)
when the results have it, else from report_html's aggregation.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..spec.errors import UserError
from .report_html import aggregate, higher_is_better, swept
from ..pipeline.results import Results, load

TOOLS = ("optuna", "tensorboard")
DEFAULT_TOP = {"optuna": 1000, "tensorboard": 250}
EXTRA = {"optuna": ("optuna", "tune"), "tensorboard": ("tensorboard", "tensorboard")}


def settings_table(res: Results) -> tuple[pd.DataFrame, list[str], str]:
    """(one row per setting, best first; the swept parameters; the metric). Columns: the
    parameters, ``n``, ``diverged``, ``<metric>_mean`` and, from Results.summary, ``_std``,
    ``_sem``, ``_ci_low``, ``_ci_high``, ``rank``."""
    metric = res.default_metric() if hasattr(res, "default_metric") else "final_train_loss"
    params = swept(res)
    if hasattr(res, "summary"):
        table = res.summary(metric)
        return table, params, metric
    s = aggregate(res)
    mean = s.means.get(metric, np.full(len(s.n), np.nan))
    table = pd.DataFrame({**{p: s.values[p][s.codes[p]] for p in params}, "n": s.n,
                          "diverged": s.diverged, f"{metric}_mean": mean})
    key = -mean if higher_is_better(metric) else mean
    return table.iloc[np.argsort(key, kind="stable")].reset_index(drop=True), params, metric


def _plain(v):
    """A cell as a plain Python value (numpy unwrapped)."""
    return v.item() if hasattr(v, "item") else v


def export_to(results_dir: str | Path, tool: str, out: str | Path | None = None,
              top: int | None = None) -> str:
    """Writes the ``top`` best settings of a results directory for ``tool``; returns what
    it did, in one line."""
    if tool not in TOOLS:
        raise UserError(f"export --to {tool}: unknown tool; expected one of {', '.join(TOOLS)}")
    if top is not None and top < 1:
        raise UserError(f"export --top {top}: expected a number of settings >= 1")
    module, extra = EXTRA[tool]
    try:
        __import__("optuna" if tool == "optuna" else "torch.utils.tensorboard")
    except ImportError:
        raise UserError(f"export --to {tool} needs the {module} package: "
                        f"pip install 'tinysweep[{extra}]'") from None
    results_dir = Path(results_dir)
    res = load(results_dir)
    table, params, metric = settings_table(res)
    n_all = len(table)
    top = DEFAULT_TOP[tool] if top is None else top
    table = table.iloc[:top]
    if tool == "optuna":
        path = Path(out) if out else results_dir / "export-optuna.db"
        _to_optuna(res, table, params, metric, path)
        where = f"{path} (optuna-dashboard sqlite:///{path})"
    else:
        path = Path(out) if out else results_dir / "tensorboard"
        _to_tensorboard(res, table, params, metric, path)
        where = f"{path}/ (tensorboard --logdir {path})"
    left = n_all - len(table)
    tail = (f"; left out the other {left:,} (--top N for more)" if left else "")
    return (f"exported {len(table):,} of {n_all:,} settings, best first by mean "
            f"{metric}, to {where}{tail}")


def _distributions(res: Results, params: list[str]):
    """Each swept parameter's optuna distribution over every value the sweep took."""
    import optuna.distributions as od
    from .report_html import _spec_is_log
    spec = res.config.get("sweep", {}).get("params", {})
    out = {}
    for p in params:
        values = pd.unique(res.table[p])
        kind = np.asarray(values).dtype.kind
        if kind in "iuf":
            lo, hi = _plain(np.min(values)), _plain(np.max(values))
            log = _spec_is_log(spec.get(p), np.sort(np.asarray(values, np.float64))) and lo > 0
            out[p] = (od.IntDistribution(int(lo), int(hi), log=log) if kind in "iu"
                      else od.FloatDistribution(float(lo), float(hi), log=log))
        else:
            out[p] = od.CategoricalDistribution(sorted((_plain(v) for v in values), key=str))
    return out


def _attrs(row: dict) -> dict:
    attrs = {}
    for key, value in row.items():
        v = _plain(value)
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        attrs[key] = v
    return attrs


def _to_optuna(res: Results, table: pd.DataFrame, params: list[str], metric: str,
               path: Path) -> None:
    """A new SQLite study at ``path`` (replacing one there), one trial per row."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = _distributions(res, params)
    mean = f"{metric}_mean"
    spread = [c for c in table.columns if c not in params and c != mean
              and (c.startswith(metric) or c in ("n", "diverged", "rank"))]
    trials = []
    for row in table.to_dict("records"):
        value = _plain(row[mean])
        ok = value is not None and math.isfinite(value)
        trials.append(optuna.trial.create_trial(
            params={p: _plain(row[p]) for p in params}, distributions=dists,
            value=value if ok else None, user_attrs=_attrs({c: row[c] for c in spread}),
            state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)                    # SQLite makes its own file there
    try:
        study = optuna.create_study(
            storage=f"sqlite:///{tmp}", study_name=str(res.config.get("name", "sweep")),
            direction="maximize" if higher_is_better(metric) else "minimize")
        study.set_user_attr("metric", f"mean {metric} over replicates")
        study.add_trials(trials)
        del study
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _to_tensorboard(res: Results, table: pd.DataFrame, params: list[str], metric: str,
                    path: Path) -> None:
    """An HParams log directory at ``path`` (replacing one there): a folder per setting."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams
    # torch writes a bool as the number 1 or 0: booleans go as "true"/"false", a choice
    def hp_value(v):
        v = _plain(v)
        return str(v).lower() if isinstance(v, bool) else v

    discrete = {p: sorted({hp_value(v) for v in pd.unique(res.table[p])}, key=str)
                for p in params if np.asarray(res.table[p]).dtype.kind not in "iuf"}
    metrics = [c for c in table.columns if c.startswith(metric) or c in ("n", "diverged")]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        for i, row in enumerate(table.to_dict("records")):
            hp = {p: hp_value(row[p]) for p in params}
            values = {f"hparams/{c}": float(_plain(row[c])) for c in metrics}
            exp, ssi, sei = hparams(hp, values, hparam_domain_discrete=discrete)
            writer = SummaryWriter(log_dir=str(tmp / f"setting_{i:05d}"))
            for summary in (exp, ssi, sei):
                writer.file_writer.add_summary(summary)
            for key, value in values.items():
                writer.add_scalar(key, value)
            writer.close()
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
