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
