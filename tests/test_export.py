"""Model export: round trip through the files, --best, the JSON description, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import tinysweep
from tinysweep import UserError
from tinysweep.trainer.spec.config import RUN_PARAM_NAMES
from tinysweep.trainer.insight.export import FORMAT, export_run, load_exported, pick_run
from tinysweep.trainer.spec.model import Standardize
from tinysweep.trainer.pipeline.results import Results


@pytest.fixture
def moons(write_config, tmp_path):
    """A bce sweep on moons, one run per input_norm; (results dir, Results)."""
    path = write_config(
        data={"source": "moons", "params": {"n": 37}},
        model={"hidden": [3], "activation": "tanh", "loss": "bce_with_logits"},
        train={"epochs": 2, "lr": 0.05, "batch_size": 8},
        sweep={"params": {"input_norm": ["none", "standardize", "batchnorm"]}})
    out = tmp_path / "moons"
    tinysweep.run(path, backend="torch", out=out)
    return out, tinysweep.load(out)


@pytest.fixture
def line(write_config, tmp_path):
    """An mse sweep on a line where run 1 (sgd, lr 1e6) diverges; (results dir, Results)."""
    path = write_config(
        train={"epochs": 3, "lr": 0.05, "optimizer": "sgd"},
        sweep={"params": {"lr": [0.01, 1e6, 0.05, 0.1]}})
    out = tmp_path / "line"
    tinysweep.run(path, backend="torch", out=out)
    res = tinysweep.load(out)
    assert list(res.table.diverged) == [False, True, False, False]
    return out, res


def test_round_trip_gives_the_same_model(moons, tmp_path):
    out, res = moons
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(0)) * 2
    for run_id in range(len(res.table)):
        weights, meta = export_run(out, tmp_path / f"exports/{run_id}/model.pt", run_id=run_id)
        assert weights == tmp_path / f"exports/{run_id}/model.pt"
        assert meta == tmp_path / f"exports/{run_id}/model.json"
        expected = res.model(run_id)
        loaded = load_exported(weights)
        assert isinstance(loaded, nn.Sequential) and not loaded.training
        first = {"none": nn.Identity, "standardize": Standardize,
                 "batchnorm": nn.BatchNorm1d}[res.table.input_norm[run_id]]
        assert isinstance(loaded[0], first)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), expected(x), rtol=0, atol=0)
        # the state_dict, both through load_exported and read directly
        direct = torch.load(weights, weights_only=True)
        for state in (loaded.state_dict(), direct):
            assert state.keys() == expected.state_dict().keys()
            for name, value in expected.state_dict().items():
                torch.testing.assert_close(state[name], value, rtol=0, atol=0,
                                           msg=lambda m: f"run {run_id}, {name}: {m}")
    assert not list(tmp_path.glob("exports/*/.*.tmp")), "temporary files left behind"


def test_standardize_export_keeps_the_statistics(moons, tmp_path):
    out, res = moons
    run_id = int(res.table.index[res.table.input_norm == "standardize"][0])
    weights, _ = export_run(out, tmp_path / "model.pt", run_id=run_id)
    std = load_exported(weights)[0].std
    assert not torch.equal(std, torch.ones_like(std)), "stats were not loaded"


def test_best_picks_the_lowest_non_diverged_loss(line, tmp_path):
    out, res = line
    t = res.table
    expected = int(t[~t.diverged].final_train_loss.idxmin())
    assert expected != 1
    assert pick_run(res, None, best=True) == expected
    _, meta = export_run(out, tmp_path / "best.pt", best=True)
    assert json.loads(meta.read_text())["run_id"] == expected

    # a diverged run is never the best, even with the lowest loss on record
    table = t.copy()
    table.loc[1, "final_train_loss"] = -1.0
    assert pick_run(Results(res.config, table, res.curves, res.params), None, True) == expected

    table["diverged"] = True
    with pytest.raises(UserError, match="diverged"):
        pick_run(Results(res.config, table, res.curves, res.params), None, True)


def test_best_is_by_validation_loss_when_there_is_a_validation_split(line, tmp_path):
    """With final_val_loss in the table, --best is its lowest, not the training loss's."""
    out, res = line
    table = res.table.copy()
    table["final_val_loss"] = [0.5, float("nan"), 0.1, 0.9]
    table["final_train_loss"] = [0.01, float("nan"), 0.5, 0.02]      # train says run 0
    picked = Results(res.config, table, res.curves, res.params)
    assert picked.default_metric() == "final_val_loss"
    assert pick_run(picked, None, best=True) == 2
    picked.save(tmp_path / "val")
    _, meta = export_run(tmp_path / "val", tmp_path / "best.pt", best=True)
    described = json.loads(meta.read_text())
    assert described["run_id"] == 2 and described["final_val_loss"] == 0.1


def _strict_json(text: str) -> dict:
    def refuse(name):
        raise AssertionError(f"not strict JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def test_json_matches_the_table_row(moons, line, tmp_path):
    for (out, res), n_features, hidden, activation, loss, outputs in (
            (moons, 2, [3], "tanh", "bce_with_logits", "logits"),
            (line, 1, [], "sigmoid", "mse", "predictions")):
        for run_id in range(len(res.table)):
            _, meta_path = export_run(out, tmp_path / out.name / f"{run_id}.pt", run_id=run_id)
            meta = _strict_json(meta_path.read_text())
            row = res.table.iloc[run_id]
            assert meta["format"] == FORMAT
            assert meta["run_id"] == run_id
            assert meta["n_features"] == n_features
            assert meta["hidden"] == hidden
            assert meta["activation"] == activation == res.config["model"]["activation"]
            assert meta["loss"] == loss
            assert meta["outputs"] == outputs
            assert meta["input_norm"] == row.input_norm
            assert list(meta["hyperparameters"]) == list(RUN_PARAM_NAMES)
            for name, value in meta["hyperparameters"].items():
                assert value == row[name], name
                assert type(value) is type(row[name].item() if hasattr(row[name], "item")
                                           else row[name]), name
            if row.diverged:
                assert meta["final_train_loss"] is None
            else:
                assert meta["final_train_loss"] == row.final_train_loss


def test_bad_input(moons, tmp_path):
    out, res = moons
    with pytest.raises(UserError, match=r"pass --run ID or --best"):
        export_run(out, tmp_path / "m.pt")
    with pytest.raises(UserError, match=r"pass --run ID or --best"):
        export_run(out, tmp_path / "m.pt", run_id=0, best=True)
    for bad in (3, 99, -1):
        with pytest.raises(UserError, match=rf"--run {bad} is out of range: .* 3 runs, 0 to 2"):
            export_run(out, tmp_path / "m.pt", run_id=bad)
    with pytest.raises(UserError, match=r"must not end in \.json"):
        export_run(out, tmp_path / "m.json", run_id=0)
    with pytest.raises(UserError, match="not a results directory"):
        export_run(tmp_path / "nowhere", tmp_path / "m.pt", run_id=0)
    assert not (tmp_path / "m.pt").exists()

    weights, meta = export_run(out, tmp_path / "m.pt", run_id=0)
    meta.unlink()
    with pytest.raises(UserError, match=r"m\.json: missing"):
        load_exported(weights)

    weights, meta = export_run(out, tmp_path / "m.pt", run_id=0)
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "format": "other/9"}))
    with pytest.raises(UserError, match=r"unknown format 'other/9'"):
        load_exported(weights)
    meta.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_exported(weights)

    weights, meta = export_run(out, tmp_path / "m.pt", run_id=0)
    weights.unlink()
    with pytest.raises(UserError, match=r"m\.pt: missing"):
        load_exported(weights)

    # weights of another architecture under this JSON
    export_run(out, tmp_path / "bn.pt", run_id=2)   # batchnorm: extra state_dict entries
    (tmp_path / "bn.pt").rename(weights)
    with pytest.raises(UserError, match="weights do not match m.json"):
        load_exported(weights)
