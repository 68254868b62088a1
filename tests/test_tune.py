"""tinysweep tune: batched Optuna trials, the study in SQLite, resume, results, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import tinysweep
from tinysweep.trainer import cli

optuna = pytest.importorskip("optuna")

SPACE = {"data": {"source": "moons", "params": {"n": 40}, "val_fraction": 0.25},
         "model": {"hidden": [4], "activation": "tanh", "loss": "bce_with_logits"},
         "train": {"epochs": 3},
         "sweep": {"params": {"lr": {"loguniform": [0.001, 0.3]},
                              "batch_size": {"uniform": [4, 30]},
                              "hidden": [[2], [4, 4]], "optimizer": ["sgd", "adam"]}}}


def write(tmp_path, config) -> str:
    import yaml
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_tune_trains_batches_keeps_the_study_in_sqlite_and_resumes(tmp_path, capsys):
    config, out = write(tmp_path, SPACE), tmp_path / "study"
    assert cli.main(["tune", config, "--trials", "6", "--batch", "4", "--out", str(out)]) == 0
    first = capsys.readouterr()
    assert "4 of 6 trials" in first.err and "6 of 6 trials" in first.err
    assert first.out.startswith("6 trials; best: trial ")
    study = optuna.load_study(study_name="space", storage=f"sqlite:///{out / 'optuna.db'}")
    assert len(study.trials) == 6
    table = tinysweep.load(out).table
    assert list(table.trial) == list(range(6))
    assert table.batch_size.dtype.kind == "i"                  # an int param stays integer
    for trial in study.trials:                                 # what Optuna was told
        row = table[table.trial == trial.number].iloc[0]
        assert trial.params["lr"] == row.lr and trial.params["optimizer"] == row.optimizer
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert trial.value == pytest.approx(row.final_val_loss, rel=1e-6)
    assert (out / "report.md").is_file()
    # again without --resume: refused; with it: the same study goes on
    assert cli.main(["tune", config, "--trials", "6", "--batch", "4", "--out", str(out)]) == 2
    assert "already holds a study; pass --resume" in capsys.readouterr().err
    assert cli.main(["tune", config, "--trials", "9", "--batch", "4", "--out", str(out),
                     "--resume"]) == 0
    study = optuna.load_study(study_name="space", storage=f"sqlite:///{out / 'optuna.db'}")
    assert len(study.trials) == 9
    again = tinysweep.load(out).table
    assert list(again.trial) == list(range(9))
    np.testing.assert_array_equal(again.final_val_loss[:6], table.final_val_loss)


def test_tune_in_python_returns_the_study_and_fails_diverged_trials():
    config = {**SPACE, "model": {"hidden": [], "loss": "mse"}, "data": {"source": "line"},
              "sweep": {"params": {"lr": {"loguniform": [1e3, 1e4]}, "optimizer": "sgd"}}}
    study = tinysweep.tune(config, trials=4, batch=2, sampler="random")
    assert len(study.trials) == 4
    assert all(t.state == optuna.trial.TrialState.FAIL for t in study.trials)


@pytest.mark.parametrize("change, match", [
    ({"trials": 0}, r"^--trials: expected an integer >= 1, got 0$"),
    ({"batch": -1}, r"^--batch: expected an integer >= 1, got -1$"),
    ({"sampler": "grid"}, r"^--sampler: expected one of tpe, random, cmaes, got 'grid'$"),
    ({"params": {"lr": {"logspace": [-3, -1, 5]}}},
     r"^sweep\.params\.lr: logspace is a grid form; tune draws from uniform, loguniform"),
    ({"params": {"epochs": [5, 10]}}, r"^sweep\.params\.epochs: tune compares trials at one "
                                      r"epochs budget"),
    ({"metric": "final_val_loss", "data": {"source": "moons"}},
     r"^--metric: final_val_loss needs a validation split"),
])
def test_bad_tune_input_gets_one_line(change, match):
    config = dict(SPACE)
    if "params" in change:
        config = {**SPACE, "sweep": {"params": change.pop("params")}}
    if "data" in change:
        config = {**config, "data": change.pop("data")}
    kwargs = {"trials": 2, "batch": 2, **change}
    with pytest.raises(tinysweep.UserError, match=match):
        tinysweep.tune(config, **kwargs)


def test_cmaes_without_its_package_says_how_to_install_it():
    try:
        import cmaes  # noqa: F401
    except ImportError:
        with pytest.raises(tinysweep.UserError, match=r"^--sampler cmaes: the cmaes package "
                                                      r"is not installed; pip install cmaes$"):
            tinysweep.tune(SPACE, trials=2, batch=2, sampler="cmaes")
    else:
        assert len(tinysweep.tune({**SPACE, "sweep": {"params": {"lr": {"loguniform": [0.001, 0.3]}}}},
                                  trials=2, batch=2, sampler="cmaes").trials) == 2


def test_tune_without_optuna_says_how_to_install_it(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "optuna", None)        # import optuna raises
    with pytest.raises(tinysweep.UserError, match=r"^tune: optuna is not installed; "
                                                  r"pip install 'tinysweep\[tune\]'$"):
        tinysweep.tune(SPACE, trials=2, batch=2)


def test_a_study_where_every_trial_diverged_says_so(tmp_path, capsys):
    config = {**SPACE, "model": {"hidden": [], "loss": "mse"}, "data": {"source": "line"},
              "sweep": {"params": {"lr": {"loguniform": [1e3, 1e4]}, "optimizer": "sgd"}}}
    assert cli.main(["tune", write(tmp_path, config), "--trials", "2", "--batch", "2",
                     "--out", str(tmp_path / "s")]) == 0
    assert capsys.readouterr().out.startswith("2 trials; none finished: every one diverged")
