"""A sweep's results: the table, the curves, every run's weights; saving and loading them.

The results directory (see README, "Results"):
  results.csv   one row per run: run_id, every per-run hyperparameter, final metrics,
                diverged, steps
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

import numpy as np
import pandas as pd

from .backend import Chunk, ChunkResult
from .config import RUN_PARAM_NAMES, dump_yaml, read_config_file
from .errors import UserError

RESULT_FILES = ("results.csv", "curves.npz", "params.npz", "config.yaml")


def atomic_write(path: Path, write) -> None:
    """Calls ``write(file)`` on a temporary file beside ``path``, fsyncs, renames into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600; results are for sharing
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
        spec = self.config["model"]
        row = self.table.iloc[run_id]
        n_features = self.params["init.1.weight"].shape[-1]
        model = build_model(n_features, spec["hidden"], spec["activation"], row["input_norm"])
        state = {}
        for name, ref in model.state_dict().items():
            value = torch.from_numpy(np.asarray(self.params[f"{which}.{name}"][run_id]))
            state[name] = value.to(ref.dtype).reshape(ref.shape)
        model.load_state_dict(state)
        return model.eval()

    def save(self, out: str | Path) -> Path:
        """Writes the results directory (creating it); returns its path."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "params.npz", lambda f: np.savez(f, **self.params))
        atomic_write(out / "curves.npz", lambda f: np.savez(f, **self.curves))
        atomic_write(out / "config.yaml", lambda f: f.write(dump_yaml(self.config).encode()))
        # results.csv last: its presence marks a finished sweep.
        atomic_write(out / "results.csv", lambda f: f.write(self.table.to_csv(index=False).encode()))
        return out


def load(out: str | Path) -> Results:
    """Reads a results directory written by ``tinysweep run`` or ``Results.save``."""
    out = Path(out)
    for name in RESULT_FILES:
        if not (out / name).is_file():
            raise UserError(f"{out}: not a results directory ({name} is missing)")
    config = read_config_file(out / "config.yaml")
    table = pd.read_csv(out / "results.csv")
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
            shape = next(d[name].shape[1:] for d in dicts if name in d)
            out[name] = np.concatenate([
                d[name] if name in d else np.full((n, *shape), np.nan, np.float32)
                for d, n in zip(dicts, lengths)])
        return out

    lengths = [len(p.steps) for p in parts]
    return ChunkResult(
        curves=cat([p.curves for p in parts], lengths),
        diverged=np.concatenate([p.diverged for p in parts]),
        steps=np.concatenate([p.steps for p in parts]),
        init=cat([p.init for p in parts], lengths),
        final=cat([p.final for p in parts], lengths),
        optim=cat([p.optim for p in parts], lengths))


def assemble(config: dict, chunk: Chunk, res: ChunkResult) -> Results:
    """The Results of a whole sweep from its (merged) backend output."""
    runs = chunk.runs
    last = chunk.column(np.array([r.epochs for r in runs]))
    idx = np.arange(len(runs))
    diverged = res.diverged | ~np.isfinite(res.curves["train_loss"][idx, last])
    curves = {"epoch": chunk.eval_epochs}
    # column by column: dataclasses.asdict deep-copies every field (1.8 s for 100,000 runs)
    table = pd.DataFrame({name: [getattr(r, name) for r in runs] for name in RUN_PARAM_NAMES})
    table.insert(0, "run_id", idx)
    for name, full in res.curves.items():
        values = full.copy()
        values[diverged[:, None] & ~np.isfinite(values)] = np.nan
        curves[name] = values
        final = full[idx, last].copy()
        final[diverged] = np.nan
        table[f"final_{name}"] = final.astype(np.float64)   # as read back from results.csv
    table["diverged"] = diverged
    table["steps"] = res.steps
    params = {f"init.{k}": v for k, v in res.init.items()}
    params.update({f"final.{k}": v for k, v in res.final.items()})
    params.update({f"optim.{k}": v for k, v in res.optim.items()})
    return Results(config, table, curves, params)
