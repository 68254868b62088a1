"""Shared helpers: writing configs, and comparing two backends' results run by run."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import yaml

# Without a GPU, Triton kernels run in its interpreter, which must be chosen before triton
# is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# auto on the CPU picks torch over numba where it predicts torch clearly faster (few runs,
# numba's kernels not compiled yet, a quiet machine): that choice would depend on what
# ran before and on the load, so the tests that need it set it themselves.
os.environ["TINYSWEEP_AUTO_PREDICT"] = "0"
# nor does any test leave a kernel compiling in the background (the one that checks it
# replaces the process it would start)
os.environ["TINYSWEEP_WARM"] = "0"


@pytest.fixture
def write_config(tmp_path):
    """write_config(name=..., data=..., model=..., train=..., sweep=...) -> path of a YAML
    config in tmp_path; sections default to a tiny line regression."""
    def write(filename="config.yaml", **sections):
        config = {
            "name": "t",
            "data": {"source": "line", "params": {"n": 37}},
            "model": {"hidden": [], "loss": "mse"},
            "train": {"epochs": 3, "lr": 0.05},
            "sweep": {"params": {}},
        }
        config.update(sections)
        path = tmp_path / filename
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path
    return write


def _close(actual, expected, what: str, rtol: float, atol: float) -> None:
    torch.testing.assert_close(torch.as_tensor(np.array(actual)), torch.as_tensor(np.array(expected)), rtol=rtol,
                               atol=atol, equal_nan=True, msg=lambda m: f"{what}: {m}")


def assert_same_runs(actual, expected, rtol: float = 1e-4, atol: float = 2e-5) -> None:
    """Two Results of the same sweep agree run by run: table, every curve, every initial and
    final state_dict entry and every optimizer state, within float32 tolerance. Diverged
    runs included: they stop at the same evaluation, with the state they had there."""
    ta, te = actual.table, expected.table
    assert list(ta.columns) == list(te.columns)
    assert list(ta.run_id) == list(te.run_id)
    np.testing.assert_array_equal(ta.diverged, te.diverged, err_msg="diverged flags differ")
    np.testing.assert_array_equal(ta.steps, te.steps, err_msg="steps differ")
    for col in te.columns:
        if col.startswith("final_"):
            _close(ta[col].to_numpy(), te[col].to_numpy(), col, rtol, atol)
        elif col not in ("diverged", "steps"):
            assert ta[col].equals(te[col]), f"column {col} differs"      # NaN equal to NaN
    assert actual.curves.keys() == expected.curves.keys()
    np.testing.assert_array_equal(actual.curves["epoch"], expected.curves["epoch"])
    for name, value in expected.curves.items():
        if name != "epoch":
            _close(actual.curves[name], value, f"curve {name}", rtol, atol)
    assert actual.params.keys() == expected.params.keys()
    for name, value in expected.params.items():
        _close(actual.params[name], value, f"params {name}", rtol, atol)


# The sweeps every backend is checked on against the reference (test_torch_backend.py,
# test_numba_backend.py, test_triton_backend.py; each picks its data size).

# Every optimizer and input norm in one sweep; with 37 training rows, batch sizes 5 and 16
# leave short last batches and 64 is one batch of everything.
MIXED = {"input_norm": ["none", "standardize", "batchnorm"],
         "optimizer": ["sgd", "adam", "adamw"],
         "batch_size": [5, 16, 64],
         "shuffle": [True, False]}


def optimizer_sweep(n: int, width: int, epochs: list[int], batch_size: int) -> dict:
    """Config sections of a random sweep drawing every optimizer setting per run: momentum's
    nesterov, betas, eps, weight decay, StepLR, ``epochs`` (several, so runs end at
    different evaluations, every other epoch and at each run's last), seeds, shuffles and
    learning rates; a one-hidden-layer classifier on ``n`` rows with a validation split."""
    return {
        "data": {"source": "circles", "params": {"n": n}, "seed": 1, "val_fraction": 0.25},
        "model": {"hidden": [width], "activation": "sigmoid", "loss": "bce_with_logits"},
        "train": {"epochs": max(epochs), "lr": 0.05, "eval_every": 2, "batch_size": batch_size,
                  "momentum": 0.9},
        "sweep": {"strategy": "random", "samples": 40, "seed": 5, "params": {
            "optimizer": ["sgd", "adam", "adamw"],
            "nesterov": [False, True],
            "beta1": {"uniform": [0.5, 0.95]},
            "beta2": [0.9, 0.999],
            "eps": [1e-8, 1e-3],
            "weight_decay": [0.0, 0.1],
            "lr_schedule": ["constant", "step"],
            "step_size": [1, 2],
            "gamma": [0.5],
            "epochs": epochs,
            "seed": [0, 1, 2],
            "shuffle": [True, False],
            "lr": {"loguniform": [1e-3, 1e-1]},
        }},
    }
