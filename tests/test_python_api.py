"""The Python front door: configs as dicts, data in memory, the Sweep builder, diagnose."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import tinysweep
from tinysweep.trainer import cli
from tinysweep.trainer.spec.config import load_config

from conftest import assert_same_runs

X = np.linspace(-1, 1, 41)
Y = -4 * X + 0.5 + 0.05 * np.sin(13 * X)
CONFIG = {"model": {"hidden": [], "loss": "mse"}, "train": {"epochs": 3, "lr": 0.05},
          "sweep": {"params": {"batch_size": [4, 41], "shuffle": [True, False]}}}


def one_line_error(match: str, *args, **kwargs):
    with pytest.raises(tinysweep.UserError, match=match) as info:
        tinysweep.run(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_dict_a_path_and_a_config_run_the_same_sweep(write_config):
    path = write_config()
    raw = load_config(path).to_dict()
    by_dict, by_path = tinysweep.run(raw), tinysweep.run(path)
    by_config = tinysweep.run(load_config(raw))
    assert_same_runs(by_dict, by_path, rtol=0, atol=0)
    assert_same_runs(by_config, by_path, rtol=0, atol=0)
    assert by_dict.config == by_path.config


def test_in_memory_data_trains_as_the_same_arrays_from_a_file(tmp_path):
    np.savez(tmp_path / "d.npz", X=X, y=Y)
    from_file = tinysweep.run({**CONFIG, "data": {"source": "npz", "params": {"path": str(tmp_path / "d.npz")}}})
    for data in [(X, Y), (X[:, None], Y[:, None]), (torch.tensor(X), torch.tensor(Y)),
                 (X.tolist(), Y.tolist())]:
        res = tinysweep.run(CONFIG, data=data)
        assert_same_runs(res, from_file, rtol=0, atol=0)
    frame = pd.DataFrame({"note": ["a"] * len(X), "x": X, "label": Y})
    assert_same_runs(tinysweep.run(CONFIG, data=frame, target="label"), from_file, rtol=0, atol=0)


def test_the_resolved_config_records_where_the_data_came_from():
    res = tinysweep.run(CONFIG, data=(X, Y))
    data = res.config["data"]
    assert res.config["name"] == "sweep"
    assert data["source"] == "memory"
    assert data["params"]["rows"] == 41 and data["params"]["features"] == 1
    assert data["params"]["columns"] == ["x", "y"]
    other = tinysweep.run(CONFIG, data=(X, Y + 1)).config["data"]["params"]["sha256"]
    assert len(data["params"]["sha256"]) == 64 and other != data["params"]["sha256"]
    # the config's own data section is replaced, its seed and validation split kept
    res = tinysweep.run({**CONFIG, "data": {"source": "moons", "val_fraction": 0.25}}, data=(X, Y))
    assert res.config["data"]["source"] == "memory" and "final_val_loss" in res.table
    assert res.config["data"]["val_fraction"] == 0.25


@pytest.mark.parametrize("kwargs, match", [
    ({"data": (X, Y[:-1])}, r"^data: X has 41 rows but y has 40$"),
    ({"data": (X, np.where(X > 0.5, np.nan, Y))}, r"^data \(in memory\) has NaN or inf in column 'y'$"),
    ({"data": (np.where(X > 0, np.inf, X), Y)}, r"^data \(in memory\) has NaN or inf in column 'x'$"),
    ({"data": (X[:0], Y[:0])}, r"^data: X and y have no rows$"),
    ({"data": pd.DataFrame({"x": X[:0], "y": Y[:0]}), "target": "y"},
     r"^data: the DataFrame has no rows$"),
    ({"data": (np.ones((41, 2, 2)), Y)}, r"^data: X has shape \(41, 2, 2\)"),
    ({"data": (X, np.ones((41, 2, 1)))}, r"^data: y has shape \(41, 2, 1\)"),
    ({"data": (np.array(["a"] * 41), Y)}, r"^data: X has dtype <U1; expected real numbers$"),
    ({"data": X}, r"^data: expected an \(X, y\) pair of arrays or a pandas DataFrame"),
    ({"data": (X, Y), "target": "y"}, r"^target: only used with data given as a pandas"),
    ({"data": pd.DataFrame({"x": X, "y": Y})}, r"^target: name the DataFrame's label column"),
    ({"data": pd.DataFrame({"x": X, "y": Y}), "target": "z"},
     r"^target: column 'z' not in the DataFrame; available columns: x, y$"),
    ({"data": pd.DataFrame({"x": X, "y": ["a"] * 41}), "target": "y"},
     r"^target: column 'y' is not numeric"),
    ({"data": pd.DataFrame({"s": ["a"] * 41, "y": Y}), "target": "y"},
     r"^data: the DataFrame has no numeric feature columns besides target 'y'$"),
    ({"target": "y"}, r"^target: only used with data="),
])
def test_bad_in_memory_data_gets_one_clear_line(kwargs, match):
    one_line_error(match, {**CONFIG, "data": {"source": "line"}}, **kwargs)


def test_labels_for_the_loss_are_checked_as_for_files():
    config = {**CONFIG, "model": {"hidden": [], "loss": "bce_with_logits"}}
    one_line_error(r"^data \(in memory\) has 20 labels not 0 or 1 \(e\.g\. ", config,
                   data=(X, np.where(X > 0, 2.0, 0.0)))
    assert len(tinysweep.run(config, data=(X, (X > 0).astype(float))).table) == 4


def test_a_config_with_no_data_and_no_data_given_is_refused():
    one_line_error(r"^data: missing section$", CONFIG)


def test_save_data_lets_the_command_resume_a_sweep_whose_data_was_in_memory(tmp_path, capsys):
    out = tmp_path / "out"
    first = tinysweep.run(CONFIG, data=(X, Y), out=out, save_data=True, chunk_runs=1)
    assert (out / "data.npz").is_file()
    # an interrupted sweep: the results gone, two of the four chunks kept
    from tinysweep.trainer.pipeline.store import ChunkStore
    from tinysweep.trainer.pipeline.sweep import execute, prepare
    plan = prepare(CONFIG, chunk_runs=1, data=(X, Y))
    store = ChunkStore(out)
    store.start(plan)
    whole = execute(plan)
    for lo in (0, 2):
        from tinysweep.trainer.pipeline.sweep import train_slice
        store.save(lo, train_slice(plan, lo, lo + 1))
    (out / "results.csv").unlink()
    assert cli.main(["run", str(out / "config.yaml"), "--out", str(out), "--resume",
                     "--chunk-runs", "1"]) == 0
    assert_same_runs(tinysweep.load(out), whole, rtol=0, atol=0)
    assert_same_runs(first, whole, rtol=0, atol=0)
    capsys.readouterr()
    # without the data beside the config, one line says what to do
    (out / "data.npz").unlink()
    assert cli.main(["run", str(out / "config.yaml"), "--out", str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinysweep: error: data.source: memory: this sweep's data (41 rows, "
                          "sha256 ") and "pass it again" in err and err.count("\n") == 1


def test_resume_in_python_refuses_other_data(tmp_path):
    out = tmp_path / "out"
    tinysweep.run(CONFIG, data=(X, Y), out=out)
    again = tinysweep.run(CONFIG, data=(X, Y), out=out, resume=True)     # finished: loaded
    assert len(again.table) == 4
    one_line_error(r"holds results of a different config", CONFIG, data=(X, Y + 1), out=out,
                   resume=True)


def test_save_data_needs_data_in_memory_and_out(tmp_path, write_config):
    one_line_error(r"^save_data: only used with data=\.\.\. and out=\.\.\.$", CONFIG,
                   data=(X, Y), save_data=True)
    one_line_error(r"^save_data: ", write_config(), out=tmp_path / "o", save_data=True)
    assert not (tmp_path / "o").exists()


def test_the_sweep_builder_makes_the_config_a_yaml_file_holds(tmp_path, write_config):
    import yaml
    text = """
name: built
data: {source: line, params: {n: 37}, val_fraction: 0.2}
model: {hidden: [4], activation: tanh, loss: mse}
train: {epochs: 3, optimizer: sgd, momentum: 0.9}
sweep:
  strategy: grid
  params:
    lr: {logspace: [-3, -1, 3]}
    batch_size: {linspace: [4, 30, 3], int: true}
    shuffle: [true, false]
"""
    built = tinysweep.Sweep(data={"source": "line", "params": {"n": 37}}, val_fraction=0.2,
                            name="built", hidden=[4], activation="tanh", loss="mse",
                            epochs=3, optimizer="sgd", momentum=0.9)
    built = built.grid(lr=tinysweep.logspace(-3, -1, 3),
                       batch_size=tinysweep.linspace(4, 30, 3, int=True), shuffle=[True, False])
    assert built.config == yaml.safe_load(text)
    path = tmp_path / "built.yaml"
    path.write_text(text)
    assert_same_runs(built.run(), tinysweep.run(path), rtol=0, atol=0)
    drawn = tinysweep.Sweep("line", epochs=2).random(5, seed=3, lr=tinysweep.loguniform(1e-3, 1),
                                                     momentum=tinysweep.uniform(0, 0.9))
    assert drawn.config["sweep"] == {"strategy": "random", "samples": 5, "seed": 3, "params": {
        "lr": {"loguniform": [0.001, 1]}, "momentum": {"uniform": [0, 0.9]}}}
    assert len(drawn.run().table) == 5


def test_the_sweep_builder_takes_data_in_memory_and_reports_mistakes_as_the_config_does():
    sweep = tinysweep.Sweep(data=pd.DataFrame({"x": X, "t": Y}), target="t", epochs=2)
    res = sweep.grid(lr=[0.01, 0.1]).run()
    assert res.config["data"]["params"]["columns"] == ["x", "t"] and len(res.table) == 2
    with pytest.raises(tinysweep.UserError, match=r"^train\.lrr: unknown key; did you mean 'lr'\?$"):
        tinysweep.Sweep("line", lrr=0.1).run()
    with pytest.raises(tinysweep.UserError, match=r"^sweep\.params\.lr\.linspace: the count "):
        tinysweep.Sweep("line").grid(lr=tinysweep.linspace(1, 2, 0)).run()


def test_diagnose_takes_a_dict_and_data_in_memory():
    setup = {"model": {"hidden": [], "loss": "mse"},
             "train": {"epochs": 20, "lr": 0.1, "batch_size": 8}}
    d = tinysweep.diagnose(setup, data=(X, Y))
    assert d.results.config["data"]["source"] == "memory"
    assert d.findings and len(d.results.table) > 1


def test_the_front_door_names_what_it_offers():
    for name in ("run", "diagnose", "load", "Sweep", "logspace", "UserError", "WriteError"):
        assert name in dir(tinysweep) and getattr(tinysweep, name).__doc__
