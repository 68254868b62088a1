"""Losing nothing and refusing bad input: kill -9 mid-sweep then --resume; random configs,
valid ones run and invalid ones are refused with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

import tinysweep
from tinysweep.trainer import cli

from conftest import assert_same_runs

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def test_sigkill_then_resume_gives_the_uninterrupted_table(write_config, tmp_path):
    path = write_config(data={"source": "line", "params": {"n": 200}},
                        train={"epochs": 40, "lr": 0.05},
                        sweep={"params": {"batch_size": [4, 7, 10, 13], "seed": [0, 1, 2]}})
    whole = tinysweep.run(path, backend="reference", chunk_runs=2)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "tinysweep", "run", str(path), "--out", str(out),
               "--backend", "reference", "--chunk-runs", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((out / ".chunks").glob("chunk-*.npz")) and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)           # no handler, no cleanup: as a crash
    proc.wait()
    assert not (out / "results.csv").exists(), "the sweep finished before the kill"
    kept = len(list((out / ".chunks").glob("chunk-*.npz")))
    assert 1 <= kept < 6
    assert cli.main(["run", str(path), "--out", str(out), "--backend", "reference",
                     "--chunk-runs", "2", "--resume"]) == 0
    assert_same_runs(tinysweep.load(out), whole, rtol=0, atol=0)


# ---- random configs ---------------------------------------------------------------------
VALID = {
    "lr": st.floats(1e-4, 0.5), "batch_size": st.integers(1, 30), "shuffle": st.booleans(),
    "seed": st.integers(0, 2**31), "optimizer": st.sampled_from(["sgd", "adam", "adamw"]),
    "input_norm": st.sampled_from(["none", "standardize"]), "momentum": st.floats(0, 0.99),
    "beta1": st.floats(0, 0.99), "eps": st.floats(1e-10, 1e-2),
    "weight_decay": st.floats(0, 0.1), "epochs": st.integers(1, 3),
    "lr_schedule": st.sampled_from(["constant", "step"]), "gamma": st.floats(0.1, 1.0),
}
INVALID = {
    "lr": st.sampled_from([0, -1.0, "fast", None, float("inf")]),
    "batch_size": st.sampled_from([0, -3, 2.5, "32", True]),
    "shuffle": st.sampled_from(["yes", 1, None]),
    "optimizer": st.sampled_from(["adagrad", "", 3]),
    "input_norm": st.sampled_from(["layernorm", None]),
    "beta1": st.sampled_from([1.0, -0.1, "x"]),
    "epochs": st.sampled_from([0, -1, 1.5]),
    "bogus_key": st.integers(),
}


@st.composite
def configs(draw, valid: bool):
    params = draw(st.dictionaries(st.sampled_from(sorted(VALID)), st.none(), max_size=5))
    sweep = {k: draw(VALID[k]) for k in params}
    if not valid:
        key = draw(st.sampled_from(sorted(INVALID)))
        sweep[key] = draw(INVALID[key])
    source = draw(st.sampled_from(["line", "moons"]))
    return {"name": "h", "data": {"source": source, "params": {"n": draw(st.integers(3, 20))}},
            "model": {"hidden": draw(st.sampled_from([[], [2]])),
                      "loss": "mse" if source == "line" else "bce_with_logits"},
            "train": {"epochs": 2}, "sweep": {"params": sweep}}


SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(config=configs(valid=True))
def test_valid_random_configs_run(config, tmp_path_factory, capsys):
    d = tmp_path_factory.mktemp("v")
    (d / "c.yaml").write_text(yaml.safe_dump(config))
    assert cli.main(["run", str(d / "c.yaml"), "--out", str(d / "out")]) == 0, \
        capsys.readouterr().err


@SETTINGS
@given(config=configs(valid=False))
def test_invalid_random_configs_are_refused_with_one_line(config, tmp_path_factory, capsys):
    d = tmp_path_factory.mktemp("i")
    (d / "c.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert cli.main(["run", str(d / "c.yaml"), "--out", str(d / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinysweep: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not (d / "out").exists()             # nothing written


def test_chunks_shrink_to_fit_the_memory_free(write_config, monkeypatch):
    from tinysweep.trainer.pipeline import sweep
    path = write_config(model={"hidden": [4], "activation": "tanh", "loss": "mse"},
                        sweep={"params": {"batch_size": [3, 8], "seed": [0, 1, 2, 3, 4]}})
    roomy = sweep.prepare(path, backend="torch", device="cpu")
    assert roomy.chunk_runs == 10
    per_run = sweep.bytes_per_run(roomy.chunk, "torch")
    monkeypatch.setattr(sweep, "available_bytes", lambda device: int(3 * per_run / sweep.MEMORY_SHARE))
    tight = sweep.prepare(path, backend="torch", device="cpu")
    assert tight.chunk_runs == 3
    # a run's result does not depend on the chunking beyond float32 rounding
    assert_same_runs(sweep.execute(tight), sweep.execute(roomy), rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(sweep, "available_bytes", lambda device: 1)
    assert sweep.prepare(path, backend="torch", device="cpu").chunk_runs == 1
