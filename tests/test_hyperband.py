"""Hyperband inside a sweep (sweep.hyperband): Li et al.'s brackets, every stage continued
from the state its runs reached, the same on every backend, and its bad input."""

from __future__ import annotations

import numpy as np
import pytest

import tinysweep
from tinysweep.trainer.pipeline.sweep import brackets, prepare

from conftest import assert_same_runs


def hyperband_sweep(**hyperband) -> dict:
    return {"data": {"source": "moons", "params": {"n": 40}, "val_fraction": 0.25},
            "model": {"hidden": [3], "activation": "tanh", "loss": "bce_with_logits"},
            "train": {"epochs": 9, "batch_size": 10},
            "sweep": {"strategy": "random", "samples": 20, "seed": 4,
                      "params": {"lr": {"loguniform": [0.001, 0.3]},
                                 "optimizer": ["sgd", "adam"], "seed": [0, 1]},
                      "hyperband": {"min_epochs": 1, "eta": 3, "metric": "val_loss",
                                    **hyperband}}}


def test_the_brackets_are_li_et_al():
    """R = 81, eta = 3 (the paper's table 1): brackets of 81, 34, 15, 8 and 5 settings
    starting at 1, 3, 9, 27 and 81 epochs."""
    bracket, rungs = brackets(143, 81, 1, 3, 1)
    assert [int((bracket == s).sum()) for s in (4, 3, 2, 1, 0)] == [81, 34, 15, 8, 5]
    assert rungs == {4: [1, 3, 9, 27], 3: [3, 9, 27], 2: [9, 27], 1: [27], 0: []}
    bracket, _ = brackets(10, 81, 1, 3, 1)      # fewer runs: shares, every run placed
    assert len(bracket) == 10 and set(bracket) <= {0, 1, 2, 3, 4}
    assert brackets(10, 81, 1, 3, 1, seed=1)[0].tolist() != bracket.tolist()
    assert brackets(40, 100, 10, 3, 10)[1] == {2: [10, 30], 1: [30], 0: []}


def test_hyperband_halves_each_bracket_and_trains_no_step_twice(monkeypatch):
    from test_halving import counting_steps
    seen = counting_steps(monkeypatch)
    res = tinysweep.run(hyperband_sweep(), backend="reference")
    table = res.table
    assert seen["steps"] == table.steps.sum() == res.steps_trained
    assert set(table.bracket) == {0, 1, 2}
    epoch = list(res.curves["epoch"])
    for s, rungs in {2: [1, 3], 1: [3]}.items():
        alive = table.index[table.bracket == s].to_numpy()
        for rung in rungs:
            at = res.curves["val_loss"][alive, epoch.index(rung)]
            keep = max(1, len(alive) // 3)
            order = alive[np.lexsort((alive, at))]
            assert set(table.index[(table.bracket == s) & (table.stopped_epoch == rung)]) \
                == set(order[keep:])
            alive = np.sort(order[:keep])
        assert table.stopped_epoch[alive].isna().all()
    assert table.stopped_epoch[table.bracket == 0].isna().all()


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_hyperband_matches_the_reference(backend):
    pytest.importorskip(backend)
    config = hyperband_sweep()
    ref = tinysweep.run(config, backend="reference")
    assert_same_runs(tinysweep.run(config, backend=backend, chunk_runs=3), ref)


def test_hyperband_on_triton_matches_the_reference():
    """Under the interpreter: 8 settings (sgd and adam) on 12 training rows, 4 epochs, eta 2:
    brackets 2, 1 and 0 (runs stopped at epochs 1 and 2), chunks of 4 runs; weights, curves
    and optimizer state run by run."""
    pytest.importorskip("triton")
    import torch
    config = hyperband_sweep(eta=2)
    config["data"]["params"]["n"] = 16
    config["train"]["epochs"] = 4
    config["sweep"]["samples"] = 8
    ref = tinysweep.run(config, backend="reference")
    assert set(ref.table.bracket) == {0, 1, 2}
    assert set(ref.table.stopped_epoch.dropna()) == {1.0, 2.0}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert_same_runs(tinysweep.run(config, backend="triton", device=device, chunk_runs=4), ref)


@pytest.mark.parametrize("change, match", [
    ({"hyperband": {"eta": 1.5}}, r"^sweep\.hyperband\.eta: expected a number >= 2, got 1\.5$"),
    ({"hyperband": {"min_epochs": 9}}, r"^sweep\.hyperband\.min_epochs: 9 is not below the "
                                       r"runs' epochs \(9\)$"),
    ({"hyperband": {"metric": "val_accuracy"}}, r"^sweep\.hyperband\.metric: expected one of"),
    ({"hyperband": {"min_epochs": 0}}, r"^sweep\.hyperband\.min_epochs"),
    ({"hyperband": {"eta": 1}}, r"^sweep\.hyperband\.eta: expected a number >= 2, got 1$"),
    ({"hyperband": {"eta": "3"}}, r"^sweep\.hyperband\.eta: expected a number >= 2"),
    ({"halving": {"rungs": [3]}}, r"^sweep\.hyperband: not used with sweep\.halving"),
    ({"epochs": [5, 9]}, r"^sweep\.hyperband: the runs' epochs .* must be one value"),
    ({"data": {"source": "moons", "params": {"n": 40}}},
     r"^sweep\.hyperband\.metric: val_loss needs a validation split"),
])
def test_bad_hyperband_gets_one_line(change, match):
    config = hyperband_sweep()
    sweep = config["sweep"]
    if "hyperband" in change:
        sweep["hyperband"].update(change["hyperband"])
    if "halving" in change:
        sweep["halving"] = change["halving"]
    if "epochs" in change:
        sweep["params"]["epochs"] = change["epochs"]
    if "data" in change:
        config["data"] = change["data"]
    with pytest.raises(tinysweep.UserError, match=match):
        prepare(config)


def test_bad_hyperband_exits_2_with_one_line_before_writing(tmp_path, capsys):
    import yaml

    from tinysweep.trainer import cli
    path, out = tmp_path / "hb.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(hyperband_sweep(eta=1.5)))
    assert cli.main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sweep.hyperband.eta: expected a number >= 2, got 1.5" in err[0], err
    assert not out.exists() or not any(out.iterdir())


def test_resume_finishes_an_interrupted_hyperband_sweep(tmp_path, monkeypatch):
    """20 runs in brackets of 11, 6 and 3, chunks of 3: killed as bracket 1's last stage
    starts (bracket 2's 6 chunks and bracket 1's rung done), the resumed sweep trains only
    the rest and ends as the sweep trained at once."""
    from test_halving import interrupted_then_resumed
    whole, resumed, steps = interrupted_then_resumed(tmp_path, monkeypatch,
                                                     hyperband_sweep(), dies_at=9)
    assert 0 < steps < whole.steps_trained
    assert resumed.steps_trained == whole.steps_trained
    assert_same_runs(resumed, whole)
    assert_same_runs(tinysweep.load(tmp_path / "out"), whole)


def test_the_report_and_headline_show_the_brackets(tmp_path, capsys):
    import yaml

    from tinysweep.trainer import cli
    path, out = tmp_path / "hb.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(hyperband_sweep()))
    assert cli.main(["run", str(path), "--out", str(out), "--backend", "torch"]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert "; hyperband trained " in head and "% saved)" in head
    text = (out / "report.md").read_text()
    assert "## Hyperband" in text and "| 2 | " in text and "| 0 | " in text
    table = tinysweep.load(out).table
    assert {"bracket", "stopped_epoch"} <= set(table.columns)
