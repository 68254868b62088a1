"""`tinysweep diagnose --observed`: observations made by the tests' own training loops, with
and without the target-broadcasting bug, and bad observed files."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import tinysweep
from tinysweep.trainer import cli

N, EPOCHS = 100, 30


def line_config(write_config):
    return write_config(
        data={"source": "line", "params": {"n": N, "noise": 0.05}},
        model={"hidden": [], "loss": "mse"}, train={"epochs": EPOCHS, "optimizer": "adam"},
        sweep={"params": {"lr": 0.01, "batch_size": [5, 20, 100], "shuffle": [True, False]}})


def user_loop(broadcast: bool) -> pd.DataFrame:
    """What a user saw: their own loop (torch's randperm, their own seed, not tinysweep's
    order), shuffled and not, three batch sizes; with ``broadcast``, targets of shape
    [B, 1, 1] against predictions [B, 1], as a Dataset returning [1, 1] targets gives."""
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, N)
    y = -4 * x + 0.05 * rng.standard_normal(N)
    X, Y = torch.tensor(x, dtype=torch.float32)[:, None], torch.tensor(y, dtype=torch.float32)
    rows = []
    for shuffle in (True, False):
        for batch in (5, 20, 100):
            torch.manual_seed(7)
            model = torch.nn.Linear(1, 1)
            opt = torch.optim.Adam(model.parameters(), lr=0.01)
            for _ in range(EPOCHS):
                order = torch.randperm(N) if shuffle else torch.arange(N)
                for start in range(0, N, batch):
                    idx = order[start:start + batch]
                    target = Y[idx].view(-1, 1, 1) if broadcast else Y[idx].view(-1, 1)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        loss = F.mse_loss(model(X[idx]), target)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            with torch.no_grad():
                final = F.mse_loss(model(X).squeeze(-1), Y).item()
            rows.append({"batch_size": batch, "shuffle": shuffle, "weight": model.weight.item(),
                         "bias": model.bias.item(), "final_train_loss": final})
    return pd.DataFrame(rows)


def test_observations_of_the_broadcasting_bug_name_it_first(write_config, tmp_path, capsys):
    observed = tmp_path / "seen.csv"
    user_loop(broadcast=True).to_csv(observed, index=False)
    out = tmp_path / "diag"
    assert cli.main(["diagnose", str(line_config(write_config)), "--observed", str(observed),
                     "--out", str(out)]) == 0
    text = capsys.readouterr().out
    first = text.splitlines()[0]
    assert first.startswith("your code differs from the setup: target_broadcast reproduces "
                            "what you saw"), text
    assert " 1. target_broadcast: reproduces" in text
    evidence = next(line for line in text.splitlines() if "e.g." in line)
    assert "shuffle true" in evidence and "correct code gives" in evidence \
        and "target_broadcast gives" in evidence, evidence
    assert (out / "diagnose.md").is_file() and (out / "plots" / "observed.png").is_file()
    res = tinysweep.load(out)
    assert set(res.table.bug) == {"none", "target_broadcast", "no_zero_grad", "loss_sum"}
    assert len(res.table) == 6 * 4 * 5


def test_observations_of_correct_code_say_so_and_diagnose_one_setup(write_config, tmp_path):
    d = tinysweep.diagnose(line_config(write_config), observed=user_loop(broadcast=False))
    assert d.best.name == "correct code"
    assert d.best.reproduced >= 0.8 * d.best.observed
    broadcast = next(e for e in d.explanations if e.name == "target_broadcast")
    assert broadcast.score > d.best.score
    text = str(d)
    assert text.startswith("correct code reproduces what you saw")
    assert "one change at a time" in text and d.followup is not None and d.followup.findings


@pytest.mark.parametrize("frame, match", [
    (pd.DataFrame({"batch_size": [5], "shuffle": [True], "slope": [-4.0]}),
     r"column 'slope' is neither a hyperparameter nor an observed metric of this model; "
     r"expected per-run hyperparameters or final_train_loss, weight, bias$"),
    (pd.DataFrame({"batchsize": [5], "shuffle": [True], "weight": [-4.0]}),
     r"column 'batchsize' is neither .*; did you mean 'batch_size'\?$"),
    (pd.DataFrame({"batch_size": [5], "shuffle": [True]}),
     r"no observed metric; give at least one of final_train_loss, weight, bias$"),
    (pd.DataFrame({"batch_size": ["five"], "shuffle": [True], "weight": [-4.0]}),
     r"column 'batch_size', row 1: expected a number, got 'five'$"),
    (pd.DataFrame({"batch_size": [5], "shuffle": [True], "weight": ["steep"]}),
     r"column 'weight' is not numeric"),
    (pd.DataFrame({"batch_size": [5], "weight": [-4.0]}),
     r"the config sweeps shuffle; give it as a column"),
    (pd.DataFrame({"batch_size": [5], "shuffle": [True], "bug": ["none"], "weight": [-4.0]}),
     r"column 'bug': the bug is what diagnose finds"),
    (pd.DataFrame({"batch_size": [], "shuffle": [], "weight": []}), r"has no rows$"),
])
def test_a_bad_observed_file_gets_one_line_and_exit_2(write_config, tmp_path, capsys,
                                                      frame, match):
    observed = tmp_path / "seen.csv"
    frame.to_csv(observed, index=False)
    out = tmp_path / "diag"
    assert cli.main(["diagnose", str(line_config(write_config)), "--observed", str(observed),
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tinysweep: error: {observed}") and err.count("\n") == 1, err
    assert re.search(match, err.strip()), err
    assert not (out / "results.csv").exists()


def test_a_missing_observed_file_and_weights_of_a_hidden_model(write_config, tmp_path, capsys):
    assert cli.main(["diagnose", str(line_config(write_config)), "--observed",
                     str(tmp_path / "nope.csv")]) == 2
    assert capsys.readouterr().err == (f"tinysweep: error: --observed: file not found: "
                                       f"{tmp_path / 'nope.csv'}\n")
    hidden = write_config(model={"hidden": [4], "loss": "mse"}, train={"epochs": 2})
    with pytest.raises(tinysweep.UserError, match=r"column 'weight' is neither"):
        tinysweep.diagnose(hidden, observed=pd.DataFrame({"weight": [-4.0]}))




def test_observed_runs_take_the_configs_architecture_and_single_values():
    """The architecture of the model section, or of a single-valued sweep param, is every
    observed run's; so are the other single values."""
    from tinysweep.trainer.spec.config import parse_config
    from tinysweep.trainer.insight.observed import read_observed
    frame = pd.DataFrame({"lr": [0.1, 0.01], "final_train_loss": [0.5, 0.2]})
    for sweep, hidden in (({}, (4,)), ({"hidden": [3, 2], "batch_size": [8]}, (3, 2))):
        config = parse_config({"data": {"source": "line"},
                               "model": {"hidden": [4], "activation": "relu", "loss": "mse"},
                               "sweep": {"params": sweep}}, base_dir=".")
        _, runs, metrics, _ = read_observed(frame, config, n_features=1)
        assert metrics == ["final_train_loss"]
        assert [runs.row(i).hidden for i in range(2)] == [hidden, hidden]
        assert {runs.row(i).activation for i in range(2)} == {"relu"}
        assert [runs.row(i).batch_size for i in range(2)] == [8 if sweep else 32] * 2
