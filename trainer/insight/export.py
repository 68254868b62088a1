"""Exporting one run's trained model from a results directory, and loading it back.

An export is two files side by side:
  model.pt    the model's state_dict, plain tensors only (``torch.load(.., weights_only=True)``)
  model.json  the architecture and the run's hyperparameters (format "tinysweep-model/1")
The model works on raw inputs [N, n_features] and returns [N, 1]: logits (bce_with_logits)
or predictions (mse), like ``Results.model``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from ..spec.config import RUN_PARAM_NAMES
from ..spec.errors import UserError
from ..spec.model import build_model
from ..pipeline.results import Results, atomic_write, load

FORMAT = "tinysweep-model/1"


def pick_run(res: Results, run_id: int | None, best: bool) -> int:
    """The run to export: ``run_id`` as given, or with ``best`` the non-diverged run with the
    lowest final_val_loss with a validation split or folds, else final_train_loss
    (Results.default_metric). Exactly one of the two must be given."""
    if (run_id is None and not best) or (run_id is not None and best):
        raise UserError("export: pass --run ID or --best")
    n_runs = len(res.table)
    if run_id is not None:
        if not 0 <= run_id < n_runs:
            raise UserError(f"export: --run {run_id} is out of range: the sweep has {n_runs} "
                            f"runs, 0 to {n_runs - 1}")
        return int(run_id)
    table = res.table
    metric = res.default_metric()
    usable = table[~table["diverged"].astype(bool) & table[metric].notna()]
    if usable.empty:
        raise UserError(f"export: --best: all {n_runs} runs diverged; pass --run ID to export one")
    return int(usable.loc[usable[metric].idxmin(), "run_id"])


def export_run(results_dir: str | Path, out: str | Path, run_id: int | None = None,
               best: bool = False) -> tuple[Path, Path]:
    """Writes the chosen run's final model to ``out`` (its state_dict) and its description to
    ``out`` with the suffix ``.json``; creates ``out``'s folder. Returns (weights, json)."""
    out = Path(out)
    if out.suffix == ".json":
        raise UserError(f"export: {out}: the weights file must not end in .json "
                        f"(the description is written beside it as NAME.json)")
    meta_path = out.with_suffix(".json")
    res = load(results_dir)
    run_id = pick_run(res, run_id, best)
    model = res.model(run_id, which="final")
    meta = describe(res, run_id)

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: torch.save(model.state_dict(), f))
    # the JSON last: a loader reads it first, so it appears only once the weights are there
    text = json.dumps(meta, indent=2, allow_nan=False) + "\n"
    atomic_write(meta_path, lambda f: f.write(text.encode()))
    return out, meta_path


def describe(res: Results, run_id: int) -> dict:
    """The JSON description of run ``run_id``'s model (plain Python values, NaN as None)."""
    spec = res.config["model"]
    table = res.table
    hyperparameters = {name: _plain(table[name].iloc[run_id])
                       for name in RUN_PARAM_NAMES if name in table.columns}
    hidden, activation = res.architecture(run_id)
    return {
        "format": FORMAT,
        "run_id": int(run_id),
        "n_features": int(res.params["init.1.weight"].shape[-1]),
        "hidden": [int(h) for h in hidden],
        "activation": activation,
        "n_outputs": res.n_outputs(run_id),
        "input_norm": hyperparameters["input_norm"],
        "loss": spec["loss"],
        "outputs": "predictions" if spec["loss"] == "mse" else "logits",
        "hyperparameters": hyperparameters,
        "final_train_loss": _plain(table["final_train_loss"].iloc[run_id]),
        **({"final_val_loss": _plain(table["final_val_loss"].iloc[run_id])}
           if "final_val_loss" in table else {}),
    }


def load_exported(path: str | Path) -> nn.Sequential:
    """The model exported to ``path`` (with its JSON beside it), in eval mode: raw inputs
    [N, n_features] in, [N, 1] logits or predictions out."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise UserError(f"{meta_path}: missing; an exported model needs the JSON written "
                        f"beside it by export")
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{meta_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise UserError(f"{meta_path}: unknown format {found!r}, expected {FORMAT!r}")
    if not path.is_file():
        raise UserError(f"{path}: missing; the weights of {meta_path.name}")
    model = build_model(meta["n_features"], meta["hidden"], meta["activation"],
                        meta["input_norm"], n_outputs=meta.get("n_outputs", 1))
    state = torch.load(path, weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(str(e).split())   # one line
        raise UserError(f"{path}: weights do not match {meta_path.name}: {detail}") from None
    return model.eval()


def _plain(value):
    """A table cell as a plain Python value (numpy scalars unwrapped, NaN -> None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
