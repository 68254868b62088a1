"""Successive halving inside a sweep: what the orchestration decides, identical on every
backend, and its bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinysweep
from tinysweep.trainer import cli
from tinysweep.trainer.pipeline.sweep import prepare

from conftest import assert_same_runs

LRS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]


def halving_sweep(**halving) -> dict:
    return {"data": {"source": "moons", "params": {"n": 60}, "val_fraction": 0.25},
            "model": {"hidden": [4], "activation": "tanh", "loss": "bce_with_logits"},
            "train": {"epochs": 12, "eval_every": 2},
            "sweep": {"params": {"lr": LRS, "batch_size": [8, 60], "epochs": [8, 12],
                                 "seed": [0, 1]},
                      "halving": {"rungs": [2, 6], "keep": 0.34, "metric": "val_loss",
                                  **halving}}}


def test_halving_on_the_torch_backend_matches_the_reference():
    config = halving_sweep()
    ref = tinysweep.run(config, backend="reference")
    assert_same_runs(tinysweep.run(config, backend="torch", chunk_runs=7), ref)


def test_the_best_fraction_of_each_budget_goes_on_and_the_rest_stop_as_trained_to_the_rung():
    config = halving_sweep()
    res = tinysweep.run(config, backend="reference")      # one run at a time: exact
    table = res.table
    stopped = table.stopped_epoch.to_numpy()
    assert set(np.unique(stopped[~np.isnan(stopped)])) == {2.0, 6.0}
    epoch = list(res.curves["epoch"])
    for budget in (8, 12):
        alive = table.index[table.epochs == budget].to_numpy()
        for rung in (2, 6):
            at = res.curves["val_loss"][alive, epoch.index(rung)]
            keep = max(1, math.ceil(0.34 * len(alive)))
            order = alive[np.lexsort((alive, at))]
            assert set(table.index[(table.epochs == budget) & (stopped == rung)]) == set(order[keep:])
            alive = np.sort(order[:keep])
        assert np.isnan(stopped[alive]).all() and len(alive) >= 1
    # a stopped run is the same run trained to its rung, bit for bit
    first = table.index[stopped == 6][0]
    alone = dict(config, sweep={"params": {k: [table[k][first].item()]
                                           for k in ("lr", "batch_size", "seed")}})
    alone["train"] = {**config["train"], "epochs": 6}
    single = tinysweep.run(alone, backend="reference")
    assert table.final_val_loss[first] == single.table.final_val_loss[0]
    np.testing.assert_array_equal(res.params["final.1.weight"][first], single.params["final.1.weight"][0])
    assert table.steps[first] == single.table.steps[0]
    assert np.isnan(res.curves["train_loss"][first, epoch.index(8):]).all()
    assert not table.diverged.any()


def test_the_report_shows_the_rungs_and_the_steps_saved(tmp_path):
    out = tmp_path / "out"
    assert cli.main(["run", str(_yaml(tmp_path, halving_sweep())), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "## Successive halving" in text and "- epoch 2: " in text
    import re
    saved = re.search(r"([\d,]+) optimizer steps trained where the whole grid takes ([\d,]+): "
                      r"(\d+)% saved\.", text)
    trained, full, percent = (int(g.replace(",", "")) for g in saved.groups())
    assert trained < full and percent == round(100 * (1 - trained / full))
    table = tinysweep.load(out).table
    assert "stopped_epoch" in table and table.stopped_epoch.notna().any()


def _yaml(tmp_path, config):
    import yaml
    path = tmp_path / "halving.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("halving, match", [
    ({"rungs": [6, 2]}, r"^sweep\.halving\.rungs: expected increasing epochs, got \[6, 2\]$"),
    ({"rungs": [2, 12]}, r"^sweep\.halving\.rungs: 12 is not before the last epoch \(12\)"),
    ({"rungs": [3]}, r"^sweep\.halving\.rungs\[0\]: 3 is not an evaluation epoch"),
    ({"keep": 1.0}, r"^sweep\.halving\.keep: expected a fraction in \(0, 1\), got 1\.0$"),
    ({"keep": 0}, r"^sweep\.halving\.keep: expected a fraction in \(0, 1\), got 0$"),
    ({"metric": "accuracy"}, r"^sweep\.halving\.metric: expected one of train_loss, val_loss"),
    ({"rungs": []}, r"^sweep\.halving\.rungs: expected a list of epochs, got \[\]$"),
])
def test_bad_halving_gets_one_line(halving, match):
    with pytest.raises(tinysweep.UserError, match=match):
        prepare(halving_sweep(**halving))


def test_val_loss_needs_a_validation_split():
    config = halving_sweep()
    config["data"] = {"source": "moons", "params": {"n": 60}}
    with pytest.raises(tinysweep.UserError, match=r"^sweep\.halving\.metric: val_loss needs "
                                                  r"a validation split"):
        prepare(config)


def counting_steps(monkeypatch):
    """Counts the optimizer steps every chunk trained (its steps less its start's) and the
    chunks trained: sweep.train_chunk, wrapped."""
    from tinysweep.trainer.pipeline import sweep
    seen = {"steps": 0, "chunks": 0}
    train = sweep.train_chunk

    def counted(plan, chunk, progress=None):
        part = train(plan, chunk, progress)
        before = 0 if chunk.start is None else chunk.start.steps
        seen["steps"] += int((part.steps - before).sum())
        seen["chunks"] += 1
        return part
    monkeypatch.setattr(sweep, "train_chunk", counted)
    return seen


def test_survivors_go_on_from_their_state_and_no_step_is_trained_twice(monkeypatch):
    seen = counting_steps(monkeypatch)
    res = tinysweep.run(halving_sweep(), backend="torch", chunk_runs=5)
    assert seen["steps"] == res.table.steps.sum() == res.steps_trained
    assert tinysweep.Results(res.config, res.table, res.curves, res.params).steps_trained \
        == res.steps_trained
    # a survivor is the run trained at once: the rungs changed nothing in it
    config = halving_sweep()
    whole = tinysweep.run({**config, "sweep": {"params": config["sweep"]["params"]}},
                          backend="torch")
    ran = res.table.stopped_epoch.isna().to_numpy() & ~res.table.diverged.to_numpy()
    assert ran.sum() >= 2
    for name in ("final_val_loss", "final_train_loss", "steps"):
        np.testing.assert_allclose(res.table[name][ran], whole.table[name][ran], rtol=1e-4)
    np.testing.assert_allclose(res.curves["val_loss"][ran], whole.curves["val_loss"][ran],
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", ["numba", "triton"])
def test_halving_on_the_fused_backends_matches_the_reference(backend):
    pytest.importorskip(backend)
    config = halving_sweep()
    config["data"]["params"]["n"] = 24
    config["sweep"]["params"].update(lr=LRS[1::2], seed=[0])
    ref = tinysweep.run(config, backend="reference")
    assert_same_runs(tinysweep.run(config, backend=backend, chunk_runs=4), ref)


def test_resume_finishes_an_interrupted_halving_sweep_without_training_again(tmp_path,
                                                                           monkeypatch):
    from tinysweep.trainer.pipeline import sweep
    path, out = _yaml(tmp_path, halving_sweep()), tmp_path / "out"
    whole = tinysweep.run(str(path), backend="torch", chunk_runs=9)
    seen = counting_steps(monkeypatch)
    train = sweep.train_chunk

    def dies_at_the_fourth(plan, chunk, progress=None):
        if seen["chunks"] == 3:
            raise KeyboardInterrupt
        return train(plan, chunk, progress)
    monkeypatch.setattr(sweep, "train_chunk", dies_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        tinysweep.run(str(path), backend="torch", chunk_runs=9, out=out)
    assert any((out / ".chunks").glob("stage-*/chunk-*.npz"))
    monkeypatch.setattr(sweep, "train_chunk", train)
    seen = counting_steps(monkeypatch)
    resumed = tinysweep.run(str(path), backend="torch", chunk_runs=9, out=out, resume=True)
    assert 0 < seen["steps"] < whole.steps_trained      # only what was missing
    assert_same_runs(tinysweep.load(out), whole)
    assert_same_runs(resumed, whole)
    assert not (out / ".chunks").exists()


def interrupted_then_resumed(tmp_path, monkeypatch, config: dict, dies_at: int):
    """A sweep trained at once, and the same sweep in --out killed as it starts its
    ``dies_at``-th chunk (KeyboardInterrupt), then resumed: (whole, resumed, the steps the
    resumed run trained). Checks that a run without --resume refuses the directory."""
    from tinysweep.trainer.pipeline import sweep
    path, out = _yaml(tmp_path, config), tmp_path / "out"
    whole = tinysweep.run(str(path), backend="torch", chunk_runs=3)
    seen = counting_steps(monkeypatch)
    train = sweep.train_chunk                   # counted

    def dies(plan, chunk, progress=None):
        if seen["chunks"] == dies_at - 1:
            raise KeyboardInterrupt
        return train(plan, chunk, progress)
    monkeypatch.setattr(sweep, "train_chunk", dies)
    with pytest.raises(KeyboardInterrupt):
        tinysweep.run(str(path), backend="torch", chunk_runs=3, out=out)
    monkeypatch.setattr(sweep, "train_chunk", train)
    assert cli.main(["run", str(path), "--out", str(out)]) == 2    # chunks are results
    seen = counting_steps(monkeypatch)
    resumed = tinysweep.run(str(path), backend="torch", chunk_runs=3, out=out, resume=True)
    assert not (out / ".chunks").exists()
    return whole, resumed, seen["steps"]


def test_the_headline_gives_the_steps_trained(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["run", str(_yaml(tmp_path, halving_sweep())), "--out", str(out),
                     "--backend", "torch"]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    steps = int(tinysweep.load(out).table.steps.sum())
    import re
    saved = re.search(r"^48 runs, ([\d,]+) optimizer steps in .*; halving trained ([\d,]+) "
                      r"steps where the whole grid takes ([\d,]+) \((\d+)% saved\)$", head)
    assert saved, head
    assert int(saved.group(1).replace(",", "")) == int(saved.group(2).replace(",", "")) == steps
