"""tinysweep diagnose: the two studies' failing setups, a healthy one, determinism."""

from __future__ import annotations

import pytest

from tinysweep.trainer import cli
from tinysweep.trainer.insight.diagnose import diagnose, format_findings
from tinysweep.trainer.spec.errors import UserError

# The heart-rate study's failing setup: raw rates around 92 bpm into a sigmoid MLP.
HEART = dict(data={"source": "heart_rate", "params": {"n": 300}},
             model={"hidden": [8], "activation": "sigmoid", "loss": "bce_with_logits"},
             train={"epochs": 60, "eval_every": 5},
             sweep={"params": {"optimizer": "adam", "lr": 0.01, "batch_size": 32,
                               "input_norm": "none"}})
# The line study's failing setup: full-batch Adam at lr 1e-2 for 100 epochs is 100 steps.
LINE = dict(data={"source": "line", "params": {"n": 300}},
            model={"hidden": [], "loss": "mse"},
            train={"epochs": 100, "eval_every": 5},
            sweep={"params": {"optimizer": "adam", "lr": 0.01, "batch_size": 300,
                              "shuffle": False}})


def test_raw_heart_rates_are_diagnosed_as_unscaled_inputs(write_config):
    d = diagnose(write_config(**HEART))
    fixes = [f for f in d.findings if f.kind == "fix"]
    assert fixes and fixes[0].fix.startswith("input_norm: ")     # the top fix
    top = fixes[0]
    assert d.medians[top.fix] * 2 <= d.medians["as configured"]
    data = [f for f in d.findings if f.kind == "data"]
    assert any("heart_rate" in f.text and "far from unit scale" in f.text for f in data)
    assert not d.converges


def test_full_batch_line_is_diagnosed_as_too_few_steps(write_config):
    d = diagnose(write_config(**LINE))
    fixes = [f for f in d.findings if f.kind == "fix"]
    assert fixes[0].fix.split(":")[0] in ("batch_size", "lr", "epochs")
    assert any(f.fix.startswith("batch_size: ") for f in fixes)
    assert any("still falling at the end" in f.text for f in d.findings if f.kind == "run")
    # evidence in the text is the medians over the seeds
    assert f"{d.medians['as configured']:.3g}" in fixes[0].text


def test_a_setup_that_converges_has_no_problem(write_config):
    healthy = {**LINE, "sweep": {"params": {"optimizer": "adam", "lr": 0.01, "batch_size": 10,
                                            "shuffle": True}}}
    d = diagnose(write_config(**healthy))
    assert d.converges
    assert "no problem found" in format_findings(d)
    assert not [f for f in d.findings if f.kind in ("fix", "run")]


def test_the_same_config_gives_the_same_findings(write_config):
    path = write_config(**HEART)
    a, b = diagnose(path), diagnose(path)
    assert [(f.kind, f.text, f.fix) for f in a.findings] == \
        [(f.kind, f.text, f.fix) for f in b.findings]


def test_command_writes_a_report_and_refuses_a_sweep(write_config, tmp_path, capsys):
    out = tmp_path / "diag"
    assert cli.main(["diagnose", str(write_config(**LINE)), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[fix] batch_size" in printed or "[fix] lr" in printed
    for name in ("diagnose.md", "results.csv", "plots/changes.png", "plots/curves.png"):
        assert (out / name).is_file(), name
    assert "one change at a time" in (out / "diagnose.md").read_text()
    assert cli.main(["diagnose", str(write_config(**LINE)), "--out", str(out)]) == 0  # again
    results = tmp_path / "results"
    assert cli.main(["run", str(write_config(**LINE)), "--out", str(results)]) == 0
    capsys.readouterr()
    assert cli.main(["diagnose", str(write_config(**LINE)), "--out", str(results)]) == 2
    assert "holds a sweep's results" in capsys.readouterr().err
    swept = write_config("s.yaml", sweep={"params": {"lr": [0.1, 0.01]}})
    assert cli.main(["diagnose", str(swept), "--out", str(tmp_path / "x")]) == 2
    assert "diagnose takes one setup" in capsys.readouterr().err
    with pytest.raises(UserError, match="single value"):
        diagnose(swept)
    one_row = write_config("bn.yaml", data={"source": "line", "params": {"n": 9}},
                           sweep={"params": {"input_norm": "batchnorm", "batch_size": 4}})
    with pytest.raises(UserError, match="batch of one row"):
        diagnose(one_row)
