"""Architectures as per-run hyperparameters, cross_entropy over K classes, several regression
outputs: every backend against the reference, the results, export, report and bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import tinysweep
from tinysweep.trainer import cli
from tinysweep.trainer.backends import triton_backend
from tinysweep.trainer.insight.diagnose import variants
from tinysweep.trainer.insight.export import load_exported
from tinysweep.trainer.pipeline.sweep import config_data, prepare

from conftest import assert_same_runs

ARCHS = [[], [4], [3, 5]]


def arch_sweep(data: dict, loss: str, **params) -> dict:
    return {"data": data, "model": {"hidden": [2], "loss": loss},
            "train": {"epochs": 3, "lr": 0.05, "eval_every": 2},
            "sweep": {"params": {"hidden": ARCHS, "activation": ["tanh", "relu"],
                                 "batch_size": [5, 64], "shuffle": [True, False], **params}}}


@pytest.mark.parametrize("data, loss", [
    ({"source": "line", "params": {"n": 37}}, "mse"),
    ({"source": "moons", "params": {"n": 41}, "val_fraction": 0.2}, "bce_with_logits"),
    ({"source": "blobs", "params": {"n": 43, "classes": 4, "features": 3}, "val_fraction": 0.2},
     "cross_entropy"),
    ({"source": "spirals", "params": {"n": 39, "classes": 3}}, "cross_entropy"),
], ids=["mse", "bce", "blobs", "spirals"])
@pytest.mark.parametrize("params", [{"optimizer": ["sgd", "adam"], "momentum": [0.0, 0.9]},
                                    {"input_norm": ["standardize", "batchnorm"]}],
                         ids=["optimizers", "norms"])
def test_architectures_and_losses_on_the_torch_backend_match_the_reference(data, loss, params):
    config = arch_sweep(data, loss, **params)
    ref = tinysweep.run(config, backend="reference")
    assert_same_runs(tinysweep.run(config, backend="torch", chunk_runs=13), ref)


def test_several_regression_outputs_match_the_reference_and_average_as_mse_loss(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((37, 3))
    y = np.stack([x @ [1.0, 2.0, 3.0], np.sin(x[:, 0]), x[:, 1] ** 2], 1)
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "t0": y[:, 0],
                          "t1": y[:, 1], "t2": y[:, 2]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    config = arch_sweep({"source": "csv", "params": {"path": str(tmp_path / "d.csv"),
                                                     "target": ["t0", "t1", "t2"]}}, "mse",
                        bug=["none", "target_broadcast", "loss_sum"])
    ref = tinysweep.run(config, backend="reference")
    assert_same_runs(tinysweep.run(config, backend="torch", chunk_runs=17), ref)
    # npz with y [n, k] is the same data
    np.savez(tmp_path / "d.npz", X=x, y=y)
    by_npz = tinysweep.run({**config, "data": {"source": "npz", "params": {"path": str(tmp_path / "d.npz")}}})
    np.testing.assert_allclose(by_npz.table.final_train_loss, ref.table.final_train_loss, rtol=1e-4)
    data = config_data(prepare(config).config)
    for run_id in (0, 7, 30):
        model = ref.model(run_id)
        assert model[-1].out_features == 3
        with torch.no_grad():
            loss = F.mse_loss(model(data.x_train), data.y_train).item()
        assert loss == pytest.approx(ref.table.final_train_loss[run_id], rel=1e-5)


def test_results_name_each_architecture_and_keep_each_runs_own_weights(tmp_path):
    config = arch_sweep({"source": "blobs", "params": {"n": 40, "classes": 3}}, "cross_entropy")
    res = tinysweep.run(config, out=tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(dict.fromkeys(table.hidden)) == ["none", "4", "3-5"]
    assert set(table.activation) == {"tanh", "relu"}
    res = tinysweep.load(tmp_path / "out")
    # one array per state_dict name, as wide as the widest run, NaN beyond a run's own
    w1 = res.params["final.1.weight"]
    assert w1.shape == (len(table), 4, 2)
    linear = table.index[table.hidden == "none"][0]
    assert np.isfinite(w1[linear, :3]).all() and np.isnan(w1[linear, 3:]).all()
    assert np.isnan(res.params["final.5.weight"][linear]).all()
    data = config_data(prepare(config).config)
    for run_id in range(0, len(table), 5):
        model = res.model(run_id)
        hidden = [m.out_features for m in model if isinstance(m, torch.nn.Linear)][:-1]
        assert ("-".join(map(str, hidden)) or "none") == table.hidden[run_id]
        assert model[-1].out_features == 3
        with torch.no_grad():
            z = model(data.x_train)
        assert F.cross_entropy(z, data.y_train.long()).item() == pytest.approx(
            table.final_train_loss[run_id], rel=1e-5)
        assert (z.argmax(1).float() == data.y_train).float().mean().item() == pytest.approx(
            table.final_train_accuracy[run_id], abs=1e-6)
        # the export rebuilds the same run, K logits out
        out = tmp_path / f"run{run_id}.pt"
        assert cli.main(["export", str(tmp_path / "out"), "--run", str(run_id), "--out", str(out)]) == 0
        meta = json.loads(out.with_suffix(".json").read_text())
        assert meta["hidden"] == hidden and meta["n_outputs"] == 3 and meta["outputs"] == "logits"
        with torch.no_grad():
            torch.testing.assert_close(load_exported(out)(data.x_train), z)


def test_the_report_plots_loss_against_width_and_depth(tmp_path):
    config = arch_sweep({"source": "moons", "params": {"n": 40}}, "bce_with_logits")
    tinysweep.run(config, out=tmp_path / "out")
    assert cli.main(["report", str(tmp_path / "out")]) == 0
    plots = {p.name for p in (tmp_path / "out" / "plots").iterdir()}
    assert {"final_by_width_and_depth.png", "final_by_hidden.png"} <= plots
    assert not any(p.startswith("weights_by") for p in plots)       # not every run is linear
    text = (tmp_path / "out" / "report.md").read_text()
    assert "3 architectures, 2 activations" in text


def test_diagnose_tries_a_wider_and_a_deeper_network():
    config = prepare({"data": {"source": "moons"}, "model": {"hidden": [8], "loss": "bce_with_logits"}}).config
    from tinysweep.trainer.insight.diagnose import base_run
    changes = {v.change: v.overrides for v in variants(base_run(config), 100)}
    assert changes["hidden: [16] (wider)"] == {"hidden": (16,)}
    assert changes["hidden: [8, 8] (deeper)"] == {"hidden": (8, 8)}
    linear = prepare({"data": {"source": "line"}}).config
    changes = {v.change for v in variants(base_run(linear), 100)}
    assert {"hidden: [16] (wider)", "hidden: [16] (deeper)"} <= changes


def test_the_fused_kernels_take_each_architecture_and_k_outputs():
    mixed = prepare(arch_sweep({"source": "line", "params": {"n": 20}}, "mse")).chunk
    assert triton_backend.unsupported(mixed) is None
    too_deep = prepare({**arch_sweep({"source": "line"}, "mse"),
                        "sweep": {"params": {"hidden": [[2], [2, 2, 2]]}}}).chunk
    assert "up to 2 hidden layers, got 3" in triton_backend.unsupported(too_deep)
    classes = prepare(arch_sweep({"source": "blobs"}, "cross_entropy"), backend="triton",
                      device="cpu")
    assert classes.backend == "triton" and triton_backend.unsupported(classes.chunk) is None
    # the K outputs count in the kernels' limits: ten classes out of 16-16 go to the wide
    # kernel, out of 80 (wider than it takes, more parameters than a lane holds) nowhere
    assert triton_backend.kernel_for(2, (16, 16), False, 10) == "wide"
    assert triton_backend.kernel_for(2, (16,), False, 3) == "lanes"
    wide = prepare({**arch_sweep({"source": "blobs", "params": {"classes": 10}}, "cross_entropy"),
                    "sweep": {"params": {"hidden": [[80]]}}}).chunk
    assert triton_backend.unsupported(wide).endswith("hidden [80] and 10 outputs make 1050")


@pytest.mark.parametrize("sweep_params, match", [
    ({"hidden": [[4], [4, -1]]}, r"^sweep\.params\.hidden: \[4, -1\]|^sweep\.params\.hidden\[1\]: "),
    ({"hidden": [[4], [1, 1, 1, 1]]}, r"^sweep\.params\.hidden: expected a list of at most 3 "
                                      r"layer widths, got \[1, 1, 1, 1\]$"),
    ({"hidden": [[4], ["8"]]}, r"^sweep\.params\.hidden\[0\]: expected an integer >= 1"),
    ({"activation": ["tanh", "gelu"]}, r"^sweep\.params\.activation: expected one of sigmoid, "
                                       r"tanh, relu, got 'gelu'"),
])
def test_bad_architectures_get_one_line(sweep_params, match):
    with pytest.raises(tinysweep.UserError, match=match) as info:
        prepare({"data": {"source": "line"}, "sweep": {"params": sweep_params}})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("data, loss, match", [
    ({"source": "moons"}, "cross_entropy", None),
    ({"source": "line"}, "cross_entropy",
     r"^data\.source: line has \d+ labels that are not class numbers 0, 1, 2, \.\.\. "),
    ({"source": "xor", "params": {"n": 1}}, "cross_entropy",
     r"^data\.source: xor has a single class \(\d\); loss 'cross_entropy' needs at least 2$"),
])
def test_cross_entropy_labels_are_checked(data, loss, match):
    config = {"data": data, "model": {"loss": loss}, "train": {"epochs": 1}}
    if match is None:
        assert len(tinysweep.run(config).table) == 1
        return
    with pytest.raises(tinysweep.UserError, match=match):
        prepare(config)


def test_a_class_with_no_row_is_a_warning_and_bad_targets_get_one_line(tmp_path, capsys):
    x = np.linspace(0, 1, 30)
    y = np.where(x > 0.5, 3.0, 0.0)                   # classes 1 and 2 have no row
    res = tinysweep.run({"model": {"loss": "cross_entropy"}, "train": {"epochs": 1}},
                        data=(x, y))
    assert res.model(0)[-1].out_features == 4
    assert "tinysweep: warning: data (in memory): class 1, 2 has no row" in capsys.readouterr().err
    frame = pd.DataFrame({"a": x, "t0": x, "t1": x})
    frame.to_csv(tmp_path / "d.csv", index=False)
    csv = lambda target: {"source": "csv", "params": {"path": str(tmp_path / "d.csv"),
                                                     "target": target}}
    with pytest.raises(tinysweep.UserError, match=r"^data\.params\.target: column 'nope' not "
                                                  r"in .*d\.csv; available columns: a, t0, t1$"):
        prepare({"data": csv(["t0", "nope"])})
    with pytest.raises(tinysweep.UserError, match=r"has 2 targets; loss 'bce_with_logits' "
                                                  r"takes one"):
        prepare({"data": csv(["t0", "t1"]), "model": {"loss": "bce_with_logits"}})
