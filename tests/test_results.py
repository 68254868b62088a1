"""Results: save/load round trip, exported models on raw inputs, curves layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import tinysweep
from tinysweep.trainer.pipeline import tables
from tinysweep.trainer.spec.model import pointwise_loss, Standardize
from tinysweep.trainer.pipeline.sweep import prepare


@pytest.fixture
def mixed(write_config):
    path = write_config(
        data={"source": "heart_rate", "params": {"n": 50}, "val_fraction": 0.2},
        model={"hidden": [3], "activation": "relu", "loss": "bce_with_logits"},
        train={"epochs": 4, "lr": 0.05, "eval_every": 3, "batch_size": 8},
        sweep={"params": {"input_norm": ["none", "standardize", "batchnorm"],
                          "optimizer": ["sgd", "adam"], "epochs": [2, 4]}})
    return path, tinysweep.run(path, backend="torch")


def test_save_and_load_round_trip(mixed, tmp_path):
    _, res = mixed
    loaded = tinysweep.load(res.save(tmp_path / "r"))
    assert loaded.table.equals(res.table)
    assert loaded.config == res.config
    for store in ("curves", "params"):
        a, b = getattr(loaded, store), getattr(res, store)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not list(tmp_path.glob("r/.*.tmp")), "temporary files left behind"


def test_parquet_equals_the_csv_and_both_the_table(mixed, tmp_path):
    import pandas as pd
    _, res = mixed
    out = res.save(tmp_path / "r")
    csv = tables.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(tinysweep.load(out).table, csv, check_exact=True)
    pd.testing.assert_frame_equal(csv, res.table, check_exact=True)
    # a pandas user reading the file gets the strings as categories, the same values
    parquet = pd.read_parquet(out / "results.parquet")
    strings = ["input_norm", "optimizer", "lr_schedule", "bug", "hidden", "activation"]
    assert all(isinstance(parquet[c].dtype, pd.CategoricalDtype) for c in strings)
    pd.testing.assert_frame_equal(parquet.astype({c: csv[c].dtype for c in strings}), csv,
                                  check_exact=True)
    assert (out / "results.csv").read_bytes() == res.table.to_csv(index=False).encode()
    kinds = {c: parquet[c].dtype.kind for c in ("lr", "batch_size", "shuffle", "diverged")}
    assert kinds == {"lr": "f", "batch_size": "i", "shuffle": "b", "diverged": "b"}
    # a directory written before results.parquet loads from its CSV, to the same table
    (out / "results.parquet").unlink()
    pd.testing.assert_frame_equal(tinysweep.load(out).table, res.table, check_exact=True)


def test_table_and_curve_layout(mixed):
    _, res = mixed
    t = res.table
    assert list(t.columns[-6:]) == ["final_train_loss", "final_val_loss", "final_train_accuracy",
                                    "final_val_accuracy", "diverged", "steps"]
    # 40 training rows, batch 8: 5 steps per epoch
    assert list(t.steps) == [r * 5 for r in t.epochs]
    # runs of 2 epochs are evaluated at epoch 2, runs of 4 at 3 and 4: union 2, 3, 4
    assert list(res.curves["epoch"]) == [2, 3, 4]
    short = (t.epochs == 2).to_numpy()
    assert np.isnan(res.curves["train_loss"][short][:, 1:]).all()
    assert np.isfinite(res.curves["train_loss"][short][:, 0]).all()
    assert np.isnan(res.curves["train_loss"][~short][:, 0]).all()
    np.testing.assert_array_equal(res.curves["train_loss"][~short][:, 2],
                                  t.final_train_loss[~short].astype(np.float32))
    # entries a run's model lacks are NaN: batchnorm buffers for input_norm none
    none = (t.input_norm == "none").to_numpy()
    assert np.isnan(res.params["final.0.running_mean"][none]).all()
    assert np.isfinite(res.params["final.0.running_mean"][t.input_norm == "batchnorm"]).all()


def test_exported_models_reproduce_the_final_losses(mixed):
    path, res = mixed
    data = prepare(path).chunk.data
    for run in res.table.itertuples():
        model = res.model(run.run_id)
        assert isinstance(model, nn.Sequential) and not model.training
        first = {"none": nn.Identity, "standardize": Standardize,
                 "batchnorm": nn.BatchNorm1d}[run.input_norm]
        assert isinstance(model[0], first)
        with torch.no_grad():   # raw inputs in, logits out
            for split, x, y in (("train", data.x_train, data.y_train), ("val", data.x_val, data.y_val)):
                z = model(x).squeeze(-1)
                loss = pointwise_loss(z, y, "bce_with_logits").mean().item()
                accuracy = ((z > 0).float() == y).float().mean().item()
                assert loss == pytest.approx(getattr(run, f"final_{split}_loss"), rel=1e-5)
                assert accuracy == pytest.approx(getattr(run, f"final_{split}_accuracy"))


def test_init_model_holds_the_initial_weights(mixed):
    _, res = mixed
    init, final = res.model(0, which="init"), res.model(0)
    np.testing.assert_array_equal(init[1].weight.detach().numpy(), res.params["init.1.weight"][0])
    assert not torch.equal(init[1].weight, final[1].weight)
    with pytest.raises(ValueError):
        res.model(0, which="middle")
    with pytest.raises(IndexError):
        res.model(len(res.table))


def test_load_refuses_a_folder_without_results(tmp_path):
    with pytest.raises(tinysweep.UserError, match="results.csv"):
        tinysweep.load(tmp_path)


def test_saved_config_reruns_to_the_same_results(write_config, tmp_path):
    (tmp_path / "d.csv").write_text("a,b,y\n" + "".join(f"{i % 7},{i * 0.3},{i % 2}\n" for i in range(30)))
    path = write_config(data={"source": "csv", "params": {"path": "d.csv", "target": "y"}},
                        model={"hidden": [2], "loss": "bce_with_logits"},
                        sweep={"params": {"batch_size": [4, 7]}})
    first = tinysweep.run(path, out=tmp_path / "first")
    again = tinysweep.run(tmp_path / "first" / "config.yaml")    # its csv path is absolute
    assert again.table.equals(first.table)
    assert again.config == first.config


@pytest.mark.parametrize("epochs, every, expected", [
    ([4], 1, [1, 2, 3, 4]),
    ([5, 2, 7], 3, [2, 3, 5, 6, 7]),
    ([6, 6], 3, [3, 6]),
    ([10**9], 10**8, [k * 10**8 for k in range(1, 11)]),
])
def test_evaluation_epochs(epochs, every, expected):
    from tinysweep.trainer.backends.backend import count_evaluation_epochs, evaluation_epochs
    from tinysweep.trainer.spec.config import RunParams
    from tinysweep.trainer.spec.runs import Runs
    runs = Runs.from_rows([RunParams(epochs=e).resolved() for e in epochs])
    assert list(evaluation_epochs(runs, every)) == expected
    assert count_evaluation_epochs(runs, every) == len(expected)


# ---- Results.summary: one row per setting over its replicates --------------------------
def _replicated(values: dict[float, list[float]], metric="final_val_loss"):
    """A Results whose table holds, for each lr, one run per value (seeds 0, 1, ...); NaN
    values are diverged runs."""
    import pandas as pd
    rows = [(lr, seed, v) for lr, vs in values.items() for seed, v in enumerate(vs)]
    table = pd.DataFrame({"run_id": np.arange(len(rows)),
                          "lr": [r[0] for r in rows], "batch_size": 8,
                          "seed": [r[1] for r in rows],
                          "final_train_loss": 1.0, metric: [r[2] for r in rows]})
    table["diverged"] = table[metric].isna()
    table["steps"] = 10
    return tinysweep.Results({"name": "s"}, table, {}, {})


T975_2 = 4.302652729911275        # Student's t, 97.5%, 2 degrees of freedom (scipy's value)


def test_summary_is_mean_std_and_a_t_interval_per_setting_best_first():
    res = _replicated({0.1: [1.0, 2.0, 3.0], 0.01: [4.0, 4.0, 7.0], 0.3: [10.0, 10.1, 9.9],
                       1.0: [np.nan, 0.5, 0.6], 3.0: [0.2]})
    s = res.summary()                   # final_val_loss: the table has a validation loss
    assert s.lr.tolist() == [3.0, 0.1, 0.01, 0.3, 1.0]           # NaN (diverged) last
    assert s.batch_size.tolist() == [8] * 5 and "seed" not in s          # constants kept
    assert s.n.tolist() == [1, 3, 3, 3, 3] and s.diverged.tolist() == [0, 0, 0, 0, 1]
    m = "final_val_loss"
    np.testing.assert_allclose(s[f"{m}_mean"], [0.2, 2.0, 5.0, 10.0, np.nan])
    np.testing.assert_allclose(s[f"{m}_std"], [np.nan, 1.0, 3 ** 0.5, 0.1, np.nan])
    np.testing.assert_allclose(s[f"{m}_sem"], [np.nan, 1 / 3 ** 0.5, 1.0, 0.1 / 3 ** 0.5,
                                               np.nan])
    half = T975_2 * np.array([1 / 3 ** 0.5, 1.0, 0.1 / 3 ** 0.5])
    np.testing.assert_allclose(s[f"{m}_ci_low"], [0.2, *(np.array([2, 5, 10]) - half), np.nan])
    np.testing.assert_allclose(s[f"{m}_ci_high"], [0.2, *(np.array([2, 5, 10]) + half), np.nan])
    # one run, 0.2: the best mean, its interval a point; lr 0.1's interval [-0.48, 4.48]
    # holds it (rank 1), 0.01's [0.70, 9.30] does not; the diverged setting ties last
    assert s["rank"].tolist() == [1, 1, 3, 4, 5]


def test_summary_ranks_accuracies_high_first_and_within_noise_of_the_best():
    res = _replicated({0.1: [0.90, 0.92, 0.94], 0.01: [0.80, 0.95, 0.98], 1.0: [0.5, 0.51, 0.52]},
                      metric="final_val_accuracy")
    s = res.summary("final_val_accuracy")
    assert s.lr.tolist() == [0.1, 0.01, 1.0]
    # 0.01's interval (0.91 +- 4.30 * 0.055) overlaps 0.1's (0.92 +- 0.050): within noise
    assert s["rank"].tolist() == [1, 1, 3]
    assert res.default_metric() == "final_train_loss"       # no final_val_loss column
    with pytest.raises(tinysweep.UserError, match="metric: no column 'final_val_los'"):
        res.summary("final_val_los")


def test_summary_files_are_written_beside_the_results(write_config, tmp_path):
    import pandas as pd
    path = write_config(data={"source": "line", "params": {"n": 37}, "val_fraction": 0.3},
                        sweep={"params": {"lr": [0.01, 0.1], "seed": [0, 1, 2]}})
    out = tmp_path / "out"
    res = tinysweep.run(path, backend="torch", out=out)
    summary = res.summary()
    assert len(summary) == 2 and summary.n.tolist() == [3, 3]
    csv = pd.read_csv(out / "summary.csv")
    pd.testing.assert_frame_equal(tables.read_parquet(out / "summary.parquet"), csv)
    assert list(csv.columns) == list(summary.columns)
    np.testing.assert_allclose(csv.final_val_loss_ci_high, summary.final_val_loss_ci_high)
    lr_01 = res.table[res.table.lr == 0.1].final_val_loss
    row = summary[summary.lr == 0.1].iloc[0]
    assert row.final_val_loss_mean == pytest.approx(lr_01.mean())
    assert row.final_val_loss_std == pytest.approx(lr_01.std(ddof=1))


def test_summaries_kept_computes_each_summary_once_and_hands_out_copies(write_config,
                                                                         monkeypatch):
    """Within summaries_kept (save_with_report's writers), summary(metric) is computed once
    per metric; each caller gets its own copy; outside, every call computes afresh."""
    from tinysweep.trainer.pipeline import results as results_module
    res = tinysweep.run(write_config(sweep={"params": {"lr": [0.01, 0.1], "seed": [0, 1]}}))
    calls = []
    real = results_module.summarize
    monkeypatch.setattr(results_module, "summarize",
                        lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    with res.summaries_kept():
        first = res.summary()
        first["rank"] = -1                              # a caller's change stays its own
        again = res.summary()
        res.summary("final_train_loss")
    assert calls == ["final_train_loss"]                # the default metric here: one call
    assert (again["rank"] > 0).all() and again.equals(res.summary())
    assert len(calls) == 2                              # outside: computed again
    with res.summaries_kept():                          # nested: the outer's serve
        with res.summaries_kept():
            res.summary()
        res.summary()
    assert len(calls) == 3
