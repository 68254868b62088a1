"""`tinysweep run` end to end: files, refusals, one-line errors, resume after an interrupt."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import tinysweep
from tinysweep.trainer import cli
from tinysweep.trainer.pipeline import sweep
from tinysweep.trainer.pipeline.results import RESULT_FILES

from conftest import assert_same_runs


def run_cli(*args):
    return cli.main([str(a) for a in args])


def test_run_writes_the_results_directory(write_config, tmp_path, capsys):
    path = write_config(sweep={"params": {"batch_size": [4, 9], "shuffle": [True, False]}})
    out = tmp_path / "out"
    assert run_cli("run", path, "--out", out) == 0
    stdout = capsys.readouterr().out
    headline, *_, last = stdout.splitlines()
    assert re.fullmatch(r"4 runs, 90 optimizer steps in \S+ s: set-up \S+ s, training \S+ s, "
                        r"writing \S+ s \(\w+ backend, \w+\); 0 diverged", headline), headline
    assert last.startswith(f"results: {out}/") and last.endswith("report.md")
    assert "final_train_loss by batch_size" in stdout and "final_train_loss by shuffle" in stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([*RESULT_FILES, "results.parquet",
                                                            "summary.csv", "summary.parquet",
                                                            "plots", "report.md", "report.html",
                                                            ".lock"])
    res = tinysweep.load(out)
    assert list(res.table.run_id) == [0, 1, 2, 3]
    assert list(res.table.batch_size) == [4, 4, 9, 9]
    assert res.curves["train_loss"].shape == (4, 3)
    with np.load(out / "params.npz", allow_pickle=False) as f:
        assert f["init.1.weight"].shape == (4, 1, 1)
    assert yaml.safe_load((out / "config.yaml").read_text())["name"] == "t"


def test_default_out_is_runs_name(write_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli("run", write_config(name="my_sweep")) == 0
    assert (tmp_path / "runs" / "my_sweep" / "results.csv").is_file()


def test_existing_results_are_refused_unless_overwrite(write_config, tmp_path, capsys):
    path, out = write_config(), tmp_path / "out"
    assert run_cli("run", path, "--out", out) == 0
    capsys.readouterr()
    assert run_cli("run", path, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err
    assert run_cli("run", path, "--out", out, "--overwrite") == 0


@pytest.mark.parametrize("train, expected", [
    ({"lr": -1}, "train.lr: must be > 0"),
    ({"batch_size": 0}, "train.batch_size: must be in [1, 10**9], got 0"),
    ({"epochs": 0}, "train.epochs: must be in [1, 10**9], got 0"),
    ({"optimiser": "sgd"}, "did you mean 'optimizer'"),
    ({"optimizer": "adamm"}, "did you mean 'adam'"),
    ({"input_norm": "batchnorm", "batch_size": 36}, "batch of one row"),
    ({"epochs": 10**9}, "train.eval_every: 1 runs x 1,000,000,000 evaluation epochs"),
])
def test_bad_config_exits_2_with_one_line_and_writes_nothing(write_config, tmp_path, capsys,
                                                            train, expected):
    out = tmp_path / "out"
    assert run_cli("run", write_config(train=train), "--out", out) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_bad_data_exits_2(write_config, tmp_path, capsys):
    (tmp_path / "d.csv").write_text("a,y\n1,0\nnan,1\n")
    path = write_config(data={"source": "csv", "params": {"path": "d.csv", "target": "y"}},
                        model={"loss": "bce_with_logits"})
    assert run_cli("run", path, "--out", tmp_path / "out") == 2
    assert "NaN" in capsys.readouterr().err


def test_bad_arguments_exit_2(write_config, tmp_path, capsys):
    assert run_cli("run", tmp_path / "missing.yaml") == 2
    assert "not found" in capsys.readouterr().err
    assert run_cli("run", write_config(), "--backend", "jax") == 2
    assert "jax" in capsys.readouterr().err
    assert run_cli("run", write_config(), "--chunk-runs", "0") == 2
    assert "--chunk-runs" in capsys.readouterr().err
    deep = write_config("deep.yaml", model={"hidden": [2, 2, 2], "loss": "mse"})
    assert run_cli("run", deep, "--backend", "triton") == 2
    assert "triton backend fuses up to 2 hidden layers" in capsys.readouterr().err
    assert run_cli("run", write_config(), "--executor", "dask") == 2
    assert "dask" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert run_cli("run", write_config(), "--device", "cuda") == 2
        assert "cuda" in capsys.readouterr().err


def test_interrupted_sweep_resumes_to_the_uninterrupted_table(write_config, tmp_path, monkeypatch,
                                                               capsys):
    path = write_config(sweep={"params": {"batch_size": [4, 9, 20], "seed": [0, 1]}})
    whole = tinysweep.run(path, chunk_runs=2)       # the backend the command picks (auto)
    out = tmp_path / "out"
    real, calls = sweep.train_chunk, []

    def interrupted(plan, chunk, progress=None):
        calls.append(len(chunk.runs))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(plan, chunk, progress)

    monkeypatch.setattr(sweep, "train_chunk", interrupted)
    assert run_cli("run", path, "--out", out, "--chunk-runs", 2) == 130
    assert "--resume" in capsys.readouterr().err
    assert not (out / "results.csv").exists() and len(list((out / ".chunks").glob("chunk-*"))) == 1
    # a plain rerun would throw the finished chunk away: refused
    assert run_cli("run", path, "--out", out, "--chunk-runs", 2) == 2
    assert run_cli("run", path, "--out", out, "--chunk-runs", 3, "--resume") == 2
    calls.clear()
    monkeypatch.setattr(sweep, "train_chunk", lambda *a: calls.append(1) or real(*a))
    assert run_cli("run", path, "--out", out, "--chunk-runs", 2, "--resume") == 0
    assert len(calls) == 2                      # only the two missing chunks were trained
    assert_same_runs(tinysweep.load(out), whole, rtol=0, atol=0)
    assert not (out / ".chunks").exists()


def test_resume_refuses_another_config(write_config, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("run", write_config(), "--out", out) == 0
    other = write_config("other.yaml", train={"epochs": 4})
    assert run_cli("run", other, "--out", out, "--resume") == 2
    assert "different config" in capsys.readouterr().err
    assert run_cli("run", write_config(), "--out", out, "--resume") == 0   # nothing to do


def test_python_dash_m_and_console_script(write_config, tmp_path):
    path = write_config()
    for i, command in enumerate([[sys.executable, "-m", "tinysweep"], [sys.executable, "-c",
                    "import sys; from tinysweep.trainer.cli import entry; sys.exit(entry())"]]):
        out = tmp_path / f"out{i}"
        proc = subprocess.run([*command, "run", str(path), "--out", str(out)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert (out / "results.csv").is_file()
    proc = subprocess.run([sys.executable, "-m", "tinysweep", "run", str(path), "--lr", "1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_the_commands_process_takes_small_pages_and_mallocs_arrow_pool():
    # entry() sets both before numpy and pyarrow are imported; a user's own value is kept
    probe = ("import sys; from tinysweep.trainer import cli; cli.main = lambda: print("
             "__import__('numpy')._core.multiarray._set_madvise_hugepage(True), "   # the old
             "__import__('pyarrow').default_memory_pool().backend_name) or 0; "
             "sys.exit(cli.entry())")
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMPY_MADVISE_HUGEPAGE", "ARROW_DEFAULT_MEMORY_POOL")}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "system"]       # numpy's madvise was off
    env["ARROW_DEFAULT_MEMORY_POOL"] = "jemalloc"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert proc.stdout.split() == ["False", "jemalloc"], proc.stderr


def test_out_that_cannot_be_a_directory_is_refused(write_config, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        assert run_cli("run", write_config(), "--out", out) == 2
        assert "--out" in capsys.readouterr().err


def test_overwrite_replaces_and_a_failed_start_leaves_nothing_in_the_way(write_config, tmp_path,
                                                                         monkeypatch, capsys):
    out = tmp_path / "out"
    assert run_cli("run", write_config(), "--out", out) == 0
    real = sweep.train_chunk

    def crash(*args):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(sweep, "train_chunk", crash)
    with pytest.raises(RuntimeError):
        run_cli("run", write_config(train={"epochs": 2}), "--out", out, "--overwrite")
    assert not (out / "results.csv").exists()       # the old results are gone, as asked
    monkeypatch.setattr(sweep, "train_chunk", real)
    # nothing finished: a plain run goes ahead (a stale manifest does not block it)
    assert run_cli("run", write_config(train={"epochs": 2}), "--out", out) == 0
    assert tinysweep.load(out).config["train"]["epochs"] == 2


def test_oversized_sweeps_are_refused_before_expanding(write_config, capsys):
    grid = {"seed": {"linspace": [0, 10**6, 10**6]}, "lr": {"linspace": [0.1, 1, 10**5]}}
    assert run_cli("run", write_config(sweep={"params": grid})) == 2
    assert "100,000,000,000 runs" in capsys.readouterr().err
    assert run_cli("run", write_config(sweep={"strategy": "random", "samples": 10**12,
                                              "params": {"lr": [0.1]}})) == 2
    assert "sweep.samples" in capsys.readouterr().err
    assert run_cli("run", write_config(sweep={"params": {"lr": {"logspace": [-3, 400, 3]}}})) == 2
    err = capsys.readouterr().err
    assert "float range" in err and err.count("\n") == 1


def test_saved_config_quotes_strings_that_look_like_numbers(tmp_path):
    (tmp_path / "d.csv").write_text("x,1e5\n" + "".join(f"{i},{i % 2}\n" for i in range(12)))
    path = tmp_path / "c.yaml"
    path.write_text('name: "1e5"\nmodel: {loss: bce_with_logits}\n'
                    'data: {source: csv, params: {path: d.csv, target: "1e5"}}\n')
    res = tinysweep.run(path, out=tmp_path / "o")
    assert tinysweep.load(tmp_path / "o").config["name"] == "1e5"
    assert tinysweep.run(tmp_path / "o" / "config.yaml").table.equals(res.table)


@pytest.mark.parametrize("backend, unit", [("torch", "step"), ("reference", "run")])
def test_progress_bar_counts_the_work(write_config, capsys, backend, unit):
    tinysweep.run(write_config(sweep={"params": {"batch_size": [4, 9]}}), backend=backend,
                  progress=True)
    err = capsys.readouterr().err
    total = "2" if unit == "run" else str(3 * (10 + 5))      # 37 rows: 10 and 5 steps/epoch
    assert f"/{total}" in err and f"{unit}/s" in err


def _by_param_groupby(table, param, metric="final_train_loss", bins=5):
    """_by_param as pandas' groupby says it (what cli did before it had to be fast)."""
    values = table[param]
    if values.nunique() > 8 and values.dtype.kind in "if":
        edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
        keys = pd.cut(values, edges, include_lowest=True)
    else:
        keys = values
    rows = []
    for _, group in table.groupby(keys, observed=True, sort=True):
        lo, hi = group[param].min(), group[param].max()
        short = f"{lo:.4g}" if isinstance(lo, float) else str(lo)   # 0.001075, not 17 digits
        label = short if lo == hi else f"{lo:.4g}..{hi:.4g}"
        m = group[metric]
        rows.append((label, m.median(), m.min(), m.max(), len(group)))
    width = max(len(r[0]) for r in rows)
    lines = [f"{metric} by {param} (median, min..max over runs):"]
    lines += [f"  {k:>{width}}  {med:.4g}  ({lo:.4g}..{hi:.4g}, {n} runs)"
              for k, med, lo, hi, n in rows]
    return "\n".join(lines)


@pytest.mark.parametrize("n", [7, 1000, 65_537])
def test_by_param_says_what_groupby_says(n):
    rng = np.random.default_rng(n)
    loss = rng.lognormal(size=n)
    loss[rng.random(n) < 0.05] = np.nan                   # diverged runs
    loss[: n // 3] = np.round(loss[: n // 3], 1)          # ties
    table = pd.DataFrame({
        "lr": np.repeat(np.logspace(-3, 0, 97), -(-n // 97))[:n],      # a grid's slow axis
        "batch_size": np.tile(np.arange(1, 14), -(-n // 13))[:n],       # a fast one
        "seed": np.tile([0, 1, 2], -(-n // 3))[:n],
        "shuffle": np.arange(n) % 2 == 0,
        "optimizer": pd.Series(["sgd", "adam", "adamw"])[np.arange(n) % 3].to_numpy(),
        "momentum": rng.uniform(0, 1, n),                                # a random sweep's
        "beta1": np.where(np.arange(n) < n // 2, 0.9, 0.95),
        "final_train_loss": loss})
    table.loc[table.index[-1], "final_train_loss"] = np.nan
    for param in table.columns.drop("final_train_loss"):
        assert cli._by_param(table, param) == _by_param_groupby(table, param), param


@pytest.mark.parametrize("n, nan_share", [(3, 0), (12, 0.5), (40_000, 0), (40_000, 0.001),
                                          (40_000, 0.9999), (100_003, 0.3)])
def test_best_and_worst_runs_and_medians_are_a_sorts(n, nan_share):
    rng = np.random.default_rng(n)
    for x in (rng.random(n), np.round(rng.random(n), 2), np.sort(rng.random(n)),
              np.sort(rng.random(n))[::-1].copy(), np.full(n, 0.5), rng.integers(0, 3, n) * 1.0):
        x[rng.random(n) < nan_share] = np.nan
        first, last = cli._ends(x, 5)
        order = np.argsort(x, kind="stable")
        np.testing.assert_array_equal(first, order[:5])
        np.testing.assert_array_equal(last, order[-5:])
        finite = x[~np.isnan(x)]
        if len(finite):
            assert cli._median(finite) == np.median(finite)


def test_with_a_validation_split_the_headline_is_by_validation_loss(write_config, tmp_path,
                                                                     capsys):
    """val_fraction: the groups and the best and worst runs are by final_val_loss; seeds are
    replicates, summed up per setting (Results.summary), not a group of their own; floats
    in the groups print short."""
    path = write_config(data={"source": "line", "params": {"n": 40}, "val_fraction": 0.3},
                        train={"epochs": 3, "optimizer": "sgd"},
                        sweep={"params": {"lr": {"logspace": [-3.5, -0.5, 4]},
                                          "batch_size": [4, 16], "seed": [0, 1]}})
    out = tmp_path / "out"
    assert run_cli("run", path, "--out", out) == 0
    stdout = capsys.readouterr().out
    assert "final_val_loss by lr" in stdout and "final_val_loss by batch_size" in stdout
    assert "final_train_loss by" not in stdout and "by seed" not in stdout
    assert "0.0003162 " in stdout and "0.00031622776601683794" not in stdout
    res = tinysweep.load(out)
    best = stdout.split("best 5 runs:\n", 1)[1].split("\nworst", 1)[0].splitlines()[1:]
    expected = res.table.sort_values("final_val_loss", kind="stable").run_id[:5].tolist()
    assert [int(line.split()[0]) for line in best] == expected
    settings = stdout.split("rank 1: within noise of the best):\n", 1)[1].splitlines()
    top = res.summary().iloc[0]
    assert settings[1].split()[:3] == [f"{top.lr:.4g}", str(top.batch_size), "2"]
