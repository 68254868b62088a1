"""What every backend is given and what it returns.

A backend trains a *chunk*: some runs of one sweep, which share the data, the architecture,
the loss and the evaluation interval, and may differ in every per-run hyperparameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .config import ModelSpec, RunParams
from .data import Dataset


@dataclass(frozen=True)
class Chunk:
    """A backend's input: ``runs`` (resolved, checked) on ``data`` with ``model``."""

    model: ModelSpec
    data: Dataset
    runs: list[RunParams]
    eval_every: int                     # evaluate after every eval_every-th epoch and the last

    @property
    def max_epochs(self) -> int:
        return max(r.epochs for r in self.runs)

    def metrics(self) -> list[str]:
        """Names of the curves: train_loss, val_loss (with a validation split), and the
        accuracies for bce_with_logits."""
        splits = ["train"] + (["val"] if self.data.n_val > 0 else [])
        kinds = ["loss"] + (["accuracy"] if self.model.loss == "bce_with_logits" else [])
        return [f"{s}_{k}" for k in kinds for s in splits]

    def is_eval_epoch(self, epoch: int, run: RunParams) -> bool:
        """Is there an evaluation after ``epoch`` (1-based) of ``run``?"""
        return epoch % self.eval_every == 0 or epoch == run.epochs


@dataclass
class ChunkResult:
    """A backend's output for a chunk of R runs (numpy, float32 unless said otherwise).

    curves: name -> [R, max_epochs]; column e-1 holds the evaluation after epoch e, NaN where
        the run has none. Names as in Chunk.metrics().
    diverged: bool [R]; steps: int64 [R], optimizer steps taken.
    init, final: state_dict name -> [R, ...], NaN rows for runs whose model lacks the entry.
    optim: optimizer state, 'STATE.NAME' -> [R, ...] (exp_avg, exp_avg_sq, momentum_buffer),
        NaN rows for runs whose optimizer lacks it.
    """

    curves: dict[str, np.ndarray]
    diverged: np.ndarray
    steps: np.ndarray
    init: dict[str, np.ndarray]
    final: dict[str, np.ndarray]
    optim: dict[str, np.ndarray] = field(default_factory=dict)


def stack_rows(rows: list[dict[str, torch.Tensor] | dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stacks per-run dicts into name -> [R, ...] float32 arrays, NaN where a run lacks a name."""
    shapes: dict[str, tuple] = {}
    for row in rows:
        for name, value in row.items():
            shapes.setdefault(name, tuple(np.shape(value)))
    out = {}
    for name, shape in shapes.items():
        arr = np.full((len(rows), *shape), np.nan, dtype=np.float32)
        for i, row in enumerate(rows):
            if name in row:
                value = row[name]
                arr[i] = value.detach().cpu().numpy() if torch.is_tensor(value) else value
        out[name] = arr
    return out
