"""A sweep's results: the table, the curves, every run's weights; saving and loading them.

The results directory (see README, "Results"):
  results.csv   one row per run: run_id, every per-run hyperparameter, final metrics,
                diverged, steps
  results.parquet  the same table with typed columns (tinysweep.load reads it first)
  curves.npz    epoch [E] and train_loss [runs, E] (val_loss, accuracies), NaN = no eval
  params.npz    init.NAME, final.NAME [runs, ...] state_dict entries (NaN where a run's model
                has none) and optim.STATE.NAME, the optimizer state at the end
  config.yaml   the resolved config
Every file is written to a temporary name in the same folder and renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .backend import Chunk, ChunkResult, corner, widest
from .config import dump_yaml, read_config_file, widths_of
from . import tables
from .errors import UserError, WriteError
from .runs import Labels, is_constant

if TYPE_CHECKING:
    from torch import nn

RESULT_FILES = ("results.csv", "curves.npz", "params.npz", "config.yaml")
# Beside them since results.parquet came; a directory written before it loads from the CSV.
TABLE_PARQUET = "results.parquet"
WRITTEN_FILES = (*RESULT_FILES, TABLE_PARQUET)     # what Results.save writes


def atomic_write(path: Path, write) -> None:
    """Calls ``write(file)`` on a temporary file beside ``path``, fsyncs, renames into place.
    An OSError on the way (a full disk, a file-size limit) raises WriteError naming
    ``path``; the temporary file is removed whatever happens."""
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
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(path, e) from e
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
                 params: dict[str, np.ndarray]):
        self.config, self.table, self.curves, self.params = config, table, curves, params

    def __repr__(self) -> str:
        return f"Results({self.config['name']!r}, runs={len(self.table)})"

    def model(self, run_id: int, which: str = "final") -> nn.Sequential:
        """Run ``run_id``'s model (``which`` = "final" or "init") on raw inputs, returning
        logits (bce_with_logits) or predictions (mse)."""
        import torch

        from .model import build_model
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
        from .model import linear_names
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
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "params.npz", lambda f: np.savez(f, **self.params))
        atomic_write(out / "curves.npz", lambda f: np.savez(f, **self.curves))
        atomic_write(out / "config.yaml", lambda f: f.write(dump_yaml(self.config).encode()))
        atomic_write(out / TABLE_PARQUET, lambda f: tables.write_parquet(self.table, f))
        # results.csv last: its presence marks a finished sweep.
        atomic_write(out / "results.csv", lambda f: tables.write_csv(self.table, f))
        return out


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
    return Results(config, table, curves, params)


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
             stopped: np.ndarray | None = None) -> Results:
    """The Results of a whole sweep from its (merged) backend output. ``stopped``
    (successive halving): float [R], the epoch each run was stopped at, NaN for a run that
    reached its last epoch; it becomes the column stopped_epoch, and a stopped run's final
    metrics are those of that epoch."""
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
                                            for name, col in runs.columns.items()}}, copy=False)
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
    params = {f"init.{k}": v for k, v in res.init.items()}
    params.update({f"final.{k}": v for k, v in res.final.items()})
    params.update({f"optim.{k}": v for k, v in res.optim.items()})
    return Results(config, table, curves, params)


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
