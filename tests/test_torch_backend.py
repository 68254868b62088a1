"""The torch backend against the reference, run by run: curves, weights, optimizer state."""

from __future__ import annotations

import numpy as np
import pytest

import tinysweep
from tinysweep.trainer.spec.config import RUN_PARAM_NAMES

from conftest import MIXED, assert_same_runs, optimizer_sweep


def both(path, **kw):
    return (tinysweep.run(path, backend="torch", **kw),
            tinysweep.run(path, backend="reference", **kw))


@pytest.mark.parametrize("hidden, activation, loss, source", [
    ([], "sigmoid", "mse", "line"),
    ([5], "tanh", "bce_with_logits", "moons"),
    ([4, 3], "relu", "mse", "line"),
    ([3, 2], "sigmoid", "bce_with_logits", "heart_rate"),
])
def test_mixed_sweep_matches_reference(write_config, hidden, activation, loss, source):
    path = write_config(
        data={"source": source, "params": {"n": 37}, "seed": 3},
        model={"hidden": hidden, "activation": activation, "loss": loss},
        train={"epochs": 3, "lr": 0.03, "momentum": 0.5, "seed": 11},
        sweep={"params": MIXED})
    torch_res, ref = both(path)
    assert len(ref.table) == 54
    assert not ref.table.diverged.any()
    assert_same_runs(torch_res, ref)


def test_optimizer_settings_and_schedules_match(write_config):
    """Per-run momentum, nesterov, betas, eps, weight decay, StepLR, epochs and seeds."""
    path = write_config(**optimizer_sweep(41, 6, [2, 5, 6], 7))
    torch_res, ref = both(path)
    table = ref.table
    assert set(table.epochs) == {2, 5, 6} and table.lr_schedule.nunique() == 2
    assert "final_val_loss" in table and "final_val_accuracy" in table
    # runs of 5 epochs are evaluated at epochs 2, 4 and 5; the curve columns are the union
    assert list(ref.curves["epoch"]) == [2, 4, 5, 6]
    assert_same_runs(torch_res, ref)


def test_every_hyperparameter_is_a_table_column(write_config):
    res = tinysweep.run(write_config(), backend="torch")
    assert list(res.table.columns[:len(RUN_PARAM_NAMES) + 1]) == ["run_id", *RUN_PARAM_NAMES]


@pytest.mark.parametrize("eval_every", [1, 4])
def test_diverging_runs_are_flagged_and_isolated(write_config, eval_every):
    params = {"lr": [0.01, 300.0, 0.02, 1e6], "batch_size": [5, 9, 40]}
    path = write_config(model={"hidden": [3], "activation": "tanh", "loss": "mse"},
                        train={"epochs": 6, "optimizer": "sgd", "eval_every": eval_every},
                        sweep={"params": params})
    torch_res, ref = both(path)
    bad = ref.table.lr > 100
    assert list(ref.table.diverged) == list(bad)
    assert_same_runs(torch_res, ref)
    assert torch_res.table.final_train_loss[bad].isna().all()
    assert (ref.table.steps[bad] < ref.table.steps[~bad].max()).all()   # stopped early
    # the healthy runs are exactly what they are in a sweep without the diverging ones
    calm = tinysweep.run(write_config("calm.yaml", model={"hidden": [3], "activation": "tanh",
                                                          "loss": "mse"},
                                      train={"epochs": 6, "optimizer": "sgd",
                                             "eval_every": eval_every},
                                      sweep={"params": {"lr": [0.01, 0.02],
                                                        "batch_size": [5, 9, 40]}}),
                         backend="torch")
    for name, value in calm.params.items():
        np.testing.assert_allclose(torch_res.params[name][~bad.to_numpy()], value, rtol=1e-6,
                                   atol=1e-7, err_msg=name)


def test_chunk_size_changes_nothing(write_config):
    path = write_config(model={"hidden": [4], "activation": "sigmoid", "loss": "mse"},
                        sweep={"params": {"batch_size": [5, 8, 20], "shuffle": [True, False],
                                          "input_norm": ["none", "batchnorm"]}})
    whole = tinysweep.run(path, backend="torch")
    # Chunks change the padded batch width, so the order of float32 sums: rounding only.
    for chunk_runs in (1, 5):
        assert_same_runs(tinysweep.run(path, backend="torch", chunk_runs=chunk_runs), whole,
                         rtol=1e-5, atol=1e-6)


def test_same_config_twice_gives_identical_results(write_config):
    path = write_config(sweep={"params": {"batch_size": [4, 9], "seed": [0, 1]}})
    a, b = tinysweep.run(path, backend="torch"), tinysweep.run(path, backend="torch")
    assert a.table.equals(b.table)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=name)


@pytest.mark.parametrize("seeds, epochs, k", [(3, 5, 1000), (1, 1, 7), (5000, 300, 2000)])
def test_distinct_pairs_equal_numpy_unique(seeds, epochs, k):
    # the second case is dense, the third too sparse for the dense table
    from tinysweep.trainer.backends.torch_backend import _distinct_pairs
    rng = np.random.default_rng(k)
    q, e = rng.integers(0, seeds, k), rng.integers(10, 10 + epochs, k)
    pairs, which = _distinct_pairs(q, e)
    want, want_which = np.unique(np.stack([q, e], 1), axis=0, return_inverse=True)
    assert pairs == [tuple(p) for p in want.tolist()]
    np.testing.assert_array_equal(which, want_which.reshape(-1))
