"""export --to optuna|tensorboard: each read back with its own library; --top; the errors."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

import tinysweep
from tinysweep.trainer.cli import main

SWEEP = {
    "name": "exported",
    "data": {"source": "line", "params": {"n": 60}},
    "model": {"hidden": [], "loss": "mse"},
    "train": {"epochs": 4, "optimizer": "sgd"},
    "sweep": {"strategy": "grid", "params": {
        "lr": {"logspace": [-3, 1.5, 4]}, "batch_size": [8, 32], "shuffle": [True, False],
        "seed": [0, 1]}},
}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """32 runs: 16 settings x 2 seeds; lr 10**1.5 diverges."""
    out = tmp_path_factory.mktemp("export") / "exported"
    res = tinysweep.run(SWEEP, backend="torch", out=out)
    assert res.table.diverged.any() and not res.table.diverged.all()
    return out


def export(capsys, *args) -> tuple[int, str, str]:
    code = main(["export", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_optuna_study_reads_back(sweep_dir, tmp_path, capsys):
    optuna = pytest.importorskip("optuna")
    db = tmp_path / "study.db"
    code, out, _ = export(capsys, sweep_dir, "--to", "optuna", "--out", db)
    assert code == 0 and "exported 16 of 16 settings" in out
    study = optuna.load_study(study_name="exported", storage=f"sqlite:///{db}")
    summary = tinysweep.load(sweep_dir).summary()
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 16 and study.direction == optuna.study.StudyDirection.MINIMIZE
    for trial, row in zip(trials, summary.itertuples()):        # best first, as summary
        assert trial.params == {"lr": row.lr, "batch_size": row.batch_size,
                                "shuffle": row.shuffle}
        mean = row.final_train_loss_mean
        if math.isnan(mean):                    # a diverged replicate: a failed trial
            assert trial.state == optuna.trial.TrialState.FAIL and trial.value is None
        else:
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert trial.value == pytest.approx(mean, rel=1e-12)
            assert trial.user_attrs["final_train_loss_std"] == pytest.approx(
                row.final_train_loss_std, rel=1e-12)
        assert trial.user_attrs["n"] == 2 and trial.user_attrs["rank"] == row.rank
    assert study.best_trial.params["lr"] == summary.lr.iloc[0]
    dist = trials[0].distributions["lr"]
    assert dist.log and dist.low == pytest.approx(1e-3)


def test_top_leaves_out_and_says_so(sweep_dir, tmp_path, capsys):
    optuna = pytest.importorskip("optuna")
    db = tmp_path / "top.db"
    code, out, _ = export(capsys, sweep_dir, "--to", "optuna", "--top", 3, "--out", db)
    assert code == 0 and "exported 3 of 16 settings" in out and "left out the other 13" in out
    assert len(optuna.load_study(study_name="exported", storage=f"sqlite:///{db}").trials) == 3


def test_tensorboard_hparams_read_back(sweep_dir, tmp_path, capsys):
    pytest.importorskip("torch.utils.tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    logdir = tmp_path / "tb"
    code, out, _ = export(capsys, sweep_dir, "--to", "tensorboard", "--top", 5, "--out", logdir)
    assert code == 0 and "exported 5 of 16 settings" in out
    summary = tinysweep.load(sweep_dir).summary()
    runs = sorted(logdir.iterdir())
    assert [r.name for r in runs] == [f"setting_{i:05d}" for i in range(5)]
    for run, row in zip(runs, summary.itertuples()):
        acc = EventAccumulator(str(run))
        acc.Reload()
        content = acc.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/session_start_info"]).session_start_info
        assert start.hparams["lr"].number_value == pytest.approx(row.lr)
        assert start.hparams["batch_size"].number_value == row.batch_size
        assert start.hparams["shuffle"].string_value == str(row.shuffle).lower()
        experiment = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/experiment"]).experiment
        assert {m.name.tag for m in experiment.metric_infos} >= {"hparams/final_train_loss_mean"}
        [scalar] = acc.Scalars("hparams/final_train_loss_mean")
        assert scalar.value == pytest.approx(row.final_train_loss_mean, rel=1e-6)


def test_unknown_tool_is_one_line(sweep_dir, capsys):
    code, _, err = export(capsys, sweep_dir, "--to", "wandb")
    assert code == 2 and err.count("\n") == 1
    assert "unknown tool" in err and "optuna, tensorboard" in err


@pytest.mark.parametrize("tool, module, extra", [
    ("optuna", "optuna", "tinysweep[tune]"),
    ("tensorboard", "torch.utils.tensorboard", "tinysweep[tensorboard]")])
def test_missing_package_names_the_extra(sweep_dir, capsys, monkeypatch, tool, module, extra):
    monkeypatch.setitem(sys.modules, module, None)       # import raises ImportError
    code, _, err = export(capsys, sweep_dir, "--to", tool)
    assert code == 2 and err.count("\n") == 1 and extra in err, err


def test_run_and_best_unchanged(sweep_dir, tmp_path, capsys):
    code, out, _ = export(capsys, sweep_dir, "--best", "--out", tmp_path / "m.pt")
    assert code == 0 and (tmp_path / "m.pt").is_file()
    assert json.loads((tmp_path / "m.json").read_text())["format"] == "tinysweep-model/1"
    code, _, err = export(capsys, sweep_dir, "--best")
    assert code == 2 and "--out FILE.pt" in err
    code, _, err = export(capsys, sweep_dir, "--best", "--to", "optuna")
    assert code == 2 and err.count("\n") == 1
    assert np.isfinite(tinysweep.load(sweep_dir).table.final_train_loss).any()
