"""A sweep's results: the table, the curves, every run's weights; saving and loading them.

The results directory (see README, "Results"):
  results.csv   one row per run: run_id, every per-run hyperparameter, final metrics,
                diverged, steps
  results.parquet  the same table with typed columns (tinysweep.load reads it first)
  curves.npz    epoch [E] and train_loss [runs, E] (val_loss, accuracies), NaN = no eval
  params.npz    init.NAME, final.NAME [runs, ...] state_dict entries (NaN where a run's model
                has none) and optim.STATE.NAME, the optimizer state at the end
  config.yaml   the resolved config
  summary.csv   one row per setting over its replicates (seeds, folds, repeats):
                Results.summary(); summary.parquet the same, typed
  history.csv   sweep.pbt only: Results.history(), a row per member and round
Every file is written to a temporary name in the same folder and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..backends.backend import Chunk, ChunkResult, corner, widest
from ..spec.config import dump_yaml, read_config_file, widths_of
from . import tables
from ..spec.errors import UserError, WriteError
from ..spec.runs import Labels, is_constant

if TYPE_CHECKING:
    from torch import nn

RESULT_FILES = ("results.csv", "curves.npz", "params.npz", "config.yaml")
# Beside them since results.parquet came; a directory written before it loads from the CSV.
TABLE_PARQUET = "results.parquet"
SUMMARY_FILES = ("summary.csv", "summary.parquet")
HISTORY = "history.csv"        # sweep.pbt: Results.history()
WRITTEN_FILES = (*RESULT_FILES, TABLE_PARQUET, *SUMMARY_FILES, HISTORY)   # Results.save's
# Columns that number a run's replicate, not its setting: Results.summary averages over them.
REPLICATE_COLUMNS = ("seed", "fold", "repeat")


def atomic_write(path: Path, write) -> None:
    """Calls ``write(file)`` on a temporary file beside ``path``, fsyncs, renames into place.
    An OSError on the way (a full disk, a file-size limit) raises WriteError naming
    ``path``; the temporary file is removed whatever happens."""
    publish(staged_write(path, write), path)


def staged_write(path: Path, write) -> str:
    """atomic_write's first half: ``write(file)`` on a temporary file beside ``path``,
    fsynced; returns its name, for ``publish`` (or removal) later."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise WriteError(path, e) from e
    try:
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600; results are for sharing
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(path, e) from e
        raise
    return tmp


def publish(tmp: str, path: Path) -> None:
    """atomic_write's second half: the staged file ``tmp`` renamed into ``path``."""
    try:
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise WriteError(Path(path), e) from e
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Results:
    """A sweep's results. ``table``: pandas.DataFrame as results.csv; ``curves``: dict of
    numpy arrays as curves.npz; ``params``: dict of numpy arrays as params.npz;
    ``config``: the resolved config dict."""

    def __init__(self, config: dict, table: pd.DataFrame, curves: dict[str, np.ndarray],
                 params: dict[str, np.ndarray], steps_trained: int | None = None,
                 history: pd.DataFrame | None = None):
        self.config, self.table, self.curves, self.params = config, table, curves, params
        self._steps_trained = steps_trained
        self._history = history

    def history(self) -> pd.DataFrame:
        """sweep.pbt: each member's hyperparameters over time, a row per member at epoch 0
        and at each round: run_id, epoch, the perturbed params from that epoch on, parent
        (the run whose weights and optimizer state it took there; -1: its own)."""
        if self._history is None:
            raise ValueError("Results.history: only a sweep.pbt sweep has a history")
        return self._history

    @property
    def steps_trained(self) -> int:
        """Optimizer steps the sweep executed: the table's ``steps`` summed (a schedule that
        stops runs, halving, continues its survivors: it trains no step twice); as counted
        while training, for Results that a sweep returned."""
        if self._steps_trained is not None:
            return self._steps_trained
        return int(self.table["steps"].sum())

    def __repr__(self) -> str:
        return f"Results({self.config['name']!r}, runs={len(self.table)})"

    def model(self, run_id: int, which: str = "final") -> nn.Sequential:
        """Run ``run_id``'s model (``which`` = "final" or "init") on raw inputs, returning
        logits (bce_with_logits) or predictions (mse)."""
        import torch

        from ..spec.model import build_model
        if which not in ("init", "final"):
            raise ValueError(f"which must be 'init' or 'final', got {which!r}")
        if not 0 <= run_id < len(self.table):
            raise IndexError(f"run_id {run_id} out of range: the sweep has {len(self.table)} runs")
        hidden, activation = self.architecture(run_id)
        row = self.table.iloc[run_id]
        n_features = self.params["init.1.weight"].shape[-1]
        model = build_model(n_features, hidden, activation, row["input_norm"],
                            n_outputs=self.n_outputs(run_id))
        state = {}
        for name, ref in model.state_dict().items():
            stored = self.params[f"{which}.{name}"][run_id]     # as wide as the widest run
            value = torch.from_numpy(np.asarray(stored[corner(ref.shape)]
                                                if stored.ndim == ref.dim() else stored))
            state[name] = value.to(ref.dtype).reshape(ref.shape)
        model.load_state_dict(state)
        return model.eval()

    def n_outputs(self, run_id: int) -> int:
        """Run ``run_id``'s outputs: its last layer's biases (the entries of a name beyond a
        run's own shape are NaN, and initial biases are finite)."""
        from ..spec.model import linear_names
        hidden, _ = self.architecture(run_id)
        last = linear_names(len(hidden) + 1)[-1]
        return int(np.isfinite(self.params[f"init.{last}.bias"][run_id]).sum())

    def architecture(self, run_id: int) -> tuple[tuple[int, ...], str]:
        """Run ``run_id``'s hidden widths and activation (the model section's for results
        written before they were per-run hyperparameters)."""
        spec = self.config["model"]
        table = self.table
        hidden = widths_of(str(table["hidden"].iloc[run_id])) if "hidden" in table \
            else tuple(spec["hidden"])
        activation = str(table["activation"].iloc[run_id]) if "activation" in table \
            else spec["activation"]
        return hidden, activation

    def save(self, out: str | Path) -> Path:
        """Writes the results directory (creating it); returns its path."""
        from concurrent.futures import ThreadPoolExecutor
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        # results.csv, the longest to write (a million runs: 2.4 s), is formatted from a
        # thread beside the other files (Arrow and the file system release the GIL), and
        # lands last: its presence marks a finished sweep.
        with ThreadPoolExecutor(max_workers=1) as pool:
            csv = pool.submit(staged_write, out / "results.csv",
                              lambda f: tables.write_csv(self.table, f))
            try:
                atomic_write(out / "params.npz", lambda f: np.savez(f, **self.params))
                atomic_write(out / "curves.npz", lambda f: np.savez(f, **self.curves))
                atomic_write(out / "config.yaml",
                             lambda f: f.write(dump_yaml(self.config).encode()))
                atomic_write(out / TABLE_PARQUET, lambda f: tables.write_parquet(self.table, f))
                summary = self.summary()
                atomic_write(out / "summary.parquet", lambda f: tables.write_parquet(summary, f))
                atomic_write(out / "summary.csv", lambda f: tables.write_csv(summary, f))
                if self._history is not None:
                    atomic_write(out / HISTORY, lambda f: self._history.to_csv(f, index=False))
            except BaseException:
                with contextlib.suppress(BaseException):
                    Path(csv.result()).unlink(missing_ok=True)
                raise
            staged = csv.result()
        publish(staged, out / "results.csv")
        return out

    def default_metric(self) -> str:
        """What "best" means for this sweep: final_val_loss when there is a validation
        split or folds, else final_train_loss."""
        return "final_val_loss" if "final_val_loss" in self.table else "final_train_loss"

    def setting_columns(self) -> list[str]:
        """The table's per-run hyperparameter columns, other than the replicates' (seed;
        fold and repeat are not hyperparameters): what names a setting."""
        from ..spec.config import RUN_PARAM_NAMES
        return [c for c in self.table.columns
                if c in RUN_PARAM_NAMES and c not in REPLICATE_COLUMNS]

    def summary(self, metric: str | None = None) -> pd.DataFrame:
        """One row per setting, over its replicates (seeds, folds, repeats).

        Columns: every per-run hyperparameter but seed (constant ones kept, so that a row
        names its whole setting), then ``n`` (runs), ``diverged`` (of them), and for
        ``metric`` (default: ``default_metric()``) ``<metric>_mean``, ``_std`` (ddof 1, NaN
        for n = 1), ``_sem`` (std / sqrt(n)), ``_ci_low`` and ``_ci_high`` (a 95% interval
        of the mean, mean -+ t(0.975, n - 1) * sem; the mean itself for n = 1), and
        ``rank``.

        A setting with a diverged replicate has NaN statistics (as scikit-learn gives a
        candidate with a failed fit) and ranks last. Rows are sorted best first: losses
        ascending, accuracies descending, ties in table order, NaN last. ``rank``: 1 for
        every setting whose interval overlaps the best setting's (within noise of the
        best), else its 1-based place in that order; NaN settings tie for last (the number
        of settings with a finite mean, plus 1).

        Columnar: one pandas group-by over the varying setting columns, whatever the number
        of runs.
        """
        metric = metric or self.default_metric()
        if self._summaries is None:
            return summarize(self.table, self.setting_columns(), metric)
        if metric not in self._summaries:
            self._summaries[metric] = summarize(self.table, self.setting_columns(), metric)
        return self._summaries[metric].copy()

    _summaries: dict | None = None

    @contextlib.contextmanager
    def summaries_kept(self):
        """Within: summary(metric) computed once per metric, each caller given a copy. For
        readers of one finished sweep while nothing changes its table: the results files,
        report.md and report.html (save_with_report) each read the summary, three
        computations that took 0.57 s of a million runs' 4.3 s of writing. Within an
        outer call, the outer's summaries serve (the command's headline reads them too)."""
        if self._summaries is not None:
            yield self
            return
        self._summaries = {}
        try:
            yield self
        finally:
            self._summaries = None


def higher_is_better(metric: str) -> bool:
    """Accuracies are better high; losses low."""
    return "accuracy" in metric


def summarize(table: pd.DataFrame, settings: list[str], metric: str) -> pd.DataFrame:
    """Results.summary over ``table``, grouped by the columns ``settings``."""
    if metric not in table:
        have = [c for c in table.columns if c.startswith("final_")]
        raise UserError(f"metric: no column {metric!r} in the results; have {', '.join(have)}")
    varying = [c for c in settings if len(table) and (table[c] != table[c].iloc[0]).any()]
    values = table[metric].to_numpy(np.float64)
    frame = pd.DataFrame({"_m": values, "_nan": np.isnan(values),
                          "_div": table["diverged"].to_numpy(bool)})
    keys = [table[c] for c in varying] if varying else np.zeros(len(table), np.int8)
    groups = frame.groupby(keys, sort=False, observed=True, dropna=False)
    stats = groups.agg(n=("_m", "size"), nan=("_nan", "sum"), div=("_div", "sum"),
                       mean=("_m", "mean"), std=("_m", "std"))
    # groups in order of first appearance, as head(1) gives their first rows
    out = table.loc[groups.head(1).index, settings].reset_index(drop=True)
    n = stats["n"].to_numpy(np.int64)
    failed = stats["nan"].to_numpy(np.int64) > 0
    mean = np.where(failed, np.nan, stats["mean"].to_numpy(np.float64))
    std = np.where(failed | (n < 2), np.nan, stats["std"].to_numpy(np.float64))
    sem = std / np.sqrt(n)
    half = np.where(n < 2, 0.0, t_quantile_975(n - 1) * sem)
    out["n"] = n
    out["diverged"] = stats["div"].to_numpy(np.int64)
    out[f"{metric}_mean"] = mean
    out[f"{metric}_std"] = std
    out[f"{metric}_sem"] = sem
    out[f"{metric}_ci_low"] = lo = mean - half
    out[f"{metric}_ci_high"] = hi = mean + half
    high = higher_is_better(metric)
    order = np.argsort(-mean if high else mean, kind="stable")        # NaN last
    out = out.iloc[order].reset_index(drop=True)
    mean, lo, hi = mean[order], lo[order], hi[order]
    finite = ~np.isnan(mean)
    rank = np.arange(1, len(out) + 1, dtype=np.int64)
    if finite.any():
        # the best is row 0; an interval overlaps it when neither lies wholly beyond the other
        rank[finite & (lo <= hi[0]) & (hi >= lo[0])] = 1
    rank[~finite] = int(finite.sum()) + 1
    out["rank"] = rank
    return out


def t_quantile_975(df) -> np.ndarray:
    """Student's t 97.5% quantile for integer degrees of freedom ``df`` (array; NaN where
    df < 1): the half-width factor of a 95% interval. scipy is not a dependency: the CDF
    of t with integer df is a finite sum (Abramowitz and Stegun 26.7.3-4), inverted by
    bisection once per distinct df. Past 10**5 degrees, the normal's 1.959964."""
    df = np.asarray(df, dtype=np.int64)
    out = np.full(df.shape, np.nan)
    for k in np.unique(df[df >= 1]):          # a loop over distinct replicate counts
        out[df == k] = _t975(int(k))
    return out


def _t975(df: int) -> float:
    import math
    if df > 100_000:
        return 1.959963984540054

    def central(t: float) -> float:          # P(|T| < t), A&S 26.7.3 (odd) and 26.7.4
        theta = math.atan(t / math.sqrt(df))
        c2, s = math.cos(theta) ** 2, math.sin(theta)
        if df % 2 == 0:
            term, total = 1.0, 1.0
            for j in range(2, df - 1, 2):     # 1, (1/2) c2, (1*3)/(2*4) c2^2, ...
                term *= c2 * (j - 1) / j
                total += term
            return s * total
        if df == 1:
            return 2 * theta / math.pi
        term, total = 1.0, 1.0
        for j in range(3, df - 1, 2):         # 1, (2/3) c2, (2*4)/(3*5) c2^2, ...
            term *= c2 * (j - 1) / j
            total += term
        return 2 / math.pi * (theta + s * math.cos(theta) * total)

    lo, hi = 0.0, 20.0 if df > 1 else 100.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if central(mid) < 0.95 else (lo, mid)
    return (lo + hi) / 2


def load(out: str | Path) -> Results:
    """Reads a results directory written by ``tinysweep run`` or ``Results.save``."""
    out = Path(out)
    for name in RESULT_FILES:
        if not (out / name).is_file():
            raise UserError(f"{out}: not a results directory ({name} is missing)")
    config = read_config_file(out / "config.yaml")
    parquet = out / TABLE_PARQUET
    table = tables.read_parquet(parquet) if parquet.is_file() else tables.read_csv(out / "results.csv")
    with np.load(out / "curves.npz", allow_pickle=False) as f:
        curves = dict(f)
    with np.load(out / "params.npz", allow_pickle=False) as f:
        params = dict(f)
    history = pd.read_csv(out / HISTORY) if (out / HISTORY).is_file() else None
    return Results(config, table, curves, params, history=history)


def merge_chunks(parts: list[ChunkResult]) -> ChunkResult:
    """Concatenates chunk results along runs (NaN where a chunk lacks an entry)."""
    def cat(dicts: list[dict[str, np.ndarray]], lengths: list[int]) -> dict[str, np.ndarray]:
        names = dict.fromkeys(n for d in dicts for n in d)
        out = {}
        for name in names:
            shape = ()
            for d in dicts:
                if name in d:
                    shape = widest(shape, d[name].shape[1:])
            out[name] = np.concatenate([
                d[name] if name in d and d[name].shape[1:] == shape else _padded(
                    d.get(name), n, shape) for d, n in zip(dicts, lengths)])
        return out

    lengths = [len(p.steps) for p in parts]
    return ChunkResult(
        curves=cat([p.curves for p in parts], lengths),
        diverged=np.concatenate([p.diverged for p in parts]),
        steps=np.concatenate([p.steps for p in parts]),
        init=cat([p.init for p in parts], lengths),
        final=cat([p.final for p in parts], lengths),
        optim=cat([p.optim for p in parts], lengths))


def _padded(value: np.ndarray | None, n: int, shape: tuple) -> np.ndarray:
    """``value`` [n, ...] in the corner of a NaN array [n, *shape] (all NaN for None)."""
    out = np.full((n, *shape), np.nan, np.float32)
    if value is not None:
        out[(slice(None), *corner(value.shape[1:]))] = value
    return out


def assemble(config: dict, chunk: Chunk, res: ChunkResult,
             stopped: np.ndarray | None = None, folds=None,
             steps_trained: int | None = None, columns: dict | None = None,
             history: pd.DataFrame | None = None) -> Results:
    """The Results of a whole sweep from its (merged) backend output. ``stopped``
    (successive halving): float [R], the epoch each run was stopped at, NaN for a run that
    reached its last epoch; it becomes the column stopped_epoch, and a stopped run's final
    metrics are those of that epoch. ``folds`` (data.cv, a folds.Folds): the columns fold
    (and repeat) follow the hyperparameters."""
    runs = chunk.runs
    epochs = runs.epochs
    last = np.full(len(runs), chunk.column(epochs[0])) if len(runs) and is_constant(epochs) \
        else chunk.column(epochs)
    if stopped is not None:
        ends = np.where(np.isnan(stopped), epochs, np.nan_to_num(stopped)).astype(np.int64)
        last = chunk.column(ends)
    idx = np.arange(len(runs))
    diverged = res.diverged | ~np.isfinite(res.curves["train_loss"][idx, last])
    curves = {"epoch": chunk.eval_epochs}
    # One block per column (copy=False): pandas' consolidation into 2-D blocks took 0.17 s
    # of 1,000,000 runs' 0.19 s; constant columns are written out, a plain table's own.
    table = pd.DataFrame({"run_id": idx, **{name: _table_column(col)
                                            for name, col in runs.columns.items()},
                          **(folds.columns(len(runs)) if folds is not None else {})},
                         copy=False)
    for name, full in res.curves.items():
        values = full.copy()
        values[diverged[:, None] & ~np.isfinite(values)] = np.nan
        curves[name] = values
        final = full[idx, last].copy()
        final[diverged] = np.nan
        table[f"final_{name}"] = final.astype(np.float64)   # as read back from results.csv
    table["diverged"] = diverged
    table["steps"] = res.steps
    if stopped is not None:
        table["stopped_epoch"] = stopped.astype(np.float64)      # empty: not stopped
    for name, values in (columns or {}).items():                  # Hyperband's bracket
        table[name] = values
    params = {f"init.{k}": v for k, v in res.init.items()}
    params.update({f"final.{k}": v for k, v in res.final.items()})
    params.update({f"optim.{k}": v for k, v in res.optim.items()})
    return Results(config, table, curves, params, steps_trained, history)


def _table_column(col):
    """A Runs column as a table column: numbers as they are, choices as the strings
    pd.read_csv gives for results.csv (pandas 3: its ``str`` dtype). Built with Arrow's take
    over the choices: 12 ms a column for 1,000,000 runs on the 2-core CPU, where pandas
    took 0.2 s to convert Python strings."""
    if not isinstance(col, Labels):      # np.full: 10x the speed of copying a zero stride
        return np.full(len(col), col[0], col.dtype) if is_constant(col) and len(col) else \
            np.ascontiguousarray(col)
    dtype = pd.Series(["x"]).dtype          # what pandas infers for strings, as read_csv does
    if dtype == object:
        return col.text()
    import pyarrow as pa
    if is_constant(col):        # one value: repeated without a take (3 ms, not 37), as
        # large_string, pandas' own (a cast from string took 0.25 s of 10,000,000 runs)
        value = col.choices[int(col.codes[0])] if len(col) else ""
        return pd.array(pa.repeat(pa.scalar(value, pa.large_string()), len(col)), dtype=dtype)
    return pd.array(pa.array(col.choices, pa.large_string()).take(pa.array(col.codes)),
                    dtype=dtype)
