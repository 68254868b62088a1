"""Plots, report.md and model export, through the command line."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import torch

import tinysweep
from tinysweep.trainer import cli
from tinysweep.trainer.insight.export import load_exported
from tinysweep.trainer.insight.report import ranking, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def run_cli(*args):
    return cli.main([str(a) for a in args])


def sweep(write_config, tmp_path, **sections):
    out = tmp_path / "out"
    assert run_cli("run", write_config(**sections), "--out", out) == 0
    return out


def markdown_rows(text: str, header: str) -> pd.DataFrame:
    """The markdown table under the heading that starts with ``header``."""
    block = text.split(header, 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return pd.DataFrame(cells[2:], columns=cells[0])


def test_run_writes_plots_and_a_report_whose_numbers_are_the_results(write_config, tmp_path):
    out = sweep(write_config, tmp_path,
                data={"source": "moons", "params": {"n": 40}, "val_fraction": 0.25},
                model={"hidden": [3], "activation": "tanh", "loss": "bce_with_logits"},
                train={"epochs": 3},
                sweep={"params": {"lr": [0.01, 0.1, 1.0], "batch_size": [4, 10],
                                  "optimizer": ["sgd", "adam"]}})
    table = pd.read_csv(out / "results.csv")
    # with a validation split, "best" and "what mattered" are by the validation loss; the
    # heatmap is over the two parameters that move it most, in config order
    ranked = ranking(table, ["lr", "batch_size", "optimizer"], "final_val_loss")
    pair = sorted([r["param"] for r in ranked[:2]], key=["lr", "batch_size", "optimizer"].index)
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == sorted(["curves.png", "final_by_batch_size.png", "final_by_lr.png",
                            "final_by_optimizer.png", f"heatmap_{pair[0]}_{pair[1]}.png"])
    for name in plots:
        data = (out / "plots" / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, name
    text = (out / "report.md").read_text()
    for name in plots:
        assert f"](plots/{name})" in text
    # the best runs, as results.csv has them
    best = markdown_rows(text, "## Best")
    expected = table.sort_values("final_val_loss", kind="stable").head(10)
    assert best.run_id.astype(int).tolist() == expected.run_id.tolist()
    for col in ("final_train_loss", "final_val_loss", "final_train_accuracy"):
        np.testing.assert_allclose(best[col].astype(float), expected[col], rtol=1e-3)
    # what mattered: each parameter's medians, from results.csv, largest effect first
    lines = re.findall(r"^\d+\. \*\*(\w+)\*\* moves the median final val loss from "
                       r"(\S+) \(.*?\) to (\S+) \(", text, re.M)
    assert [p for p, _, _ in lines] == [r["param"] for r in ranked]
    for (param, worst, best_v), r in zip(lines, ranked):
        medians = table.groupby(param).final_val_loss.median()
        assert float(worst) == float(f"{medians.max():.4g}")
        assert float(best_v) == float(f"{medians.min():.4g}")
        assert r["ratio"] >= 1


def test_categorical_string_columns_give_the_report_and_plots_of_strings(write_config, tmp_path):
    """results.parquet may hand the report input_norm, optimizer, lr_schedule as pandas
    Categoricals, their categories in any order and some unused: report.md and every plot
    come out byte for byte as with strings, and its medians are pandas' own."""
    out = sweep(write_config, tmp_path,
                sweep={"params": {"lr": [0.003, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5],
                                  "optimizer": ["sgd", "adamw", "adam"],
                                  "input_norm": ["none", "standardize"]}})
    res = tinysweep.load(out)
    table = res.table
    # diverged: every sgd run at lr 0.5, and two others
    diverged = ((table.optimizer == "sgd") & (table.lr == 0.5)) | table.run_id.isin([4, 21])
    table.loc[diverged, "final_train_loss"] = np.nan
    table["diverged"] = diverged
    write_report(res, tmp_path / "strings")
    categorical = table.copy()
    for col in ("input_norm", "optimizer", "lr_schedule"):
        values = sorted(table[col].unique())
        categorical[col] = pd.Categorical(table[col], categories=[*values[::-1], "unused"])
    res.table = categorical
    write_report(res, tmp_path / "categorical")
    text = (tmp_path / "strings" / "report.md").read_text()
    assert (tmp_path / "categorical" / "report.md").read_text() == text
    plots = sorted(p.name for p in (tmp_path / "strings" / "plots").iterdir())
    # lines split by optimizer or input_norm: their order and colours are the strings' order
    # final_by_ x3, weights_by_lr, curves, and the heatmap of the two parameters that move
    # the loss most (one of them numeric)
    assert len(plots) == 6, plots
    for name in plots:
        assert ((tmp_path / "categorical" / "plots" / name).read_bytes()
                == (tmp_path / "strings" / "plots" / name).read_bytes()), name
    assert "optimizer (3 values), input_norm (2 values)" in text
    done = table[table.final_train_loss.notna()]
    lines = re.findall(r"^\d+\. \*\*(\w+)\*\* moves the median final train loss from "
                       r"(\S+) \(\w+ = (\S+)\) to (\S+) \(\w+ = (\S+)\)", text, re.M)
    assert {p for p, *_ in lines} == {"lr", "optimizer", "input_norm"}

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    ratios = []
    for param, worst, worst_value, best, best_value in lines:
        medians = done.groupby(param).final_train_loss.median()
        assert (worst, best) == (f"{medians.max():.4g}", f"{medians.min():.4g}"), param
        assert (worst_value, best_value) == (fmt(medians.idxmax()), fmt(medians.idxmin()))
        ratios.append(medians.max() / medians.min())
    assert ratios == sorted(ratios, reverse=True)
    share = table.groupby("optimizer").diverged.mean()
    assert f"{int(diverged.sum())} of 42 runs diverged" in text
    assert f"{share.max():.0%} of runs with optimizer = {share.idxmax()}" in text


def test_linear_models_get_a_weights_plot(write_config, tmp_path):
    out = sweep(write_config, tmp_path,
                sweep={"params": {"batch_size": [3, 8, 37], "shuffle": [True, False]}})
    names = {p.name for p in (out / "plots").iterdir()}
    assert "weights_by_batch_size.png" in names
    assert "heatmap_batch_size_shuffle.png" in names     # a bool is a heatmap's axis too


def test_report_renders_again_and_overwrite_drops_stale_plots(write_config, tmp_path, capsys):
    out = sweep(write_config, tmp_path, sweep={"params": {"lr": [0.01, 0.1]}})
    for p in (out / "plots").iterdir():
        p.unlink()
    (out / "report.md").unlink()
    assert run_cli("report", out) == 0
    assert (out / "report.md").is_file() and (out / "plots" / "final_by_lr.png").is_file()
    assert run_cli("run", write_config("b.yaml", sweep={"params": {"seed": [0, 1]}}),
                   "--out", out, "--overwrite") == 0
    assert not (out / "plots" / "final_by_lr.png").exists()
    assert (out / "plots" / "final_by_seed.png").is_file()
    capsys.readouterr()
    assert run_cli("report", tmp_path / "missing") == 2
    assert "not a results directory" in capsys.readouterr().err


def test_export_round_trips_through_the_command_line(write_config, tmp_path, capsys):
    out = sweep(write_config, tmp_path,
                data={"source": "moons", "params": {"n": 30}},
                model={"hidden": [4], "activation": "relu", "loss": "bce_with_logits"},
                sweep={"params": {"input_norm": ["none", "standardize", "batchnorm"],
                                  "batch_size": [5, 30]}})
    res = tinysweep.load(out)
    x = torch.randn(7, 2)
    assert run_cli("export", out, "--run", 2, "--out", tmp_path / "m" / "run2.pt") == 0
    model = load_exported(tmp_path / "m" / "run2.pt")
    torch.testing.assert_close(model(x), res.model(2)(x))
    state = torch.load(tmp_path / "m" / "run2.pt", weights_only=True)
    assert state.keys() == res.model(2).state_dict().keys()
    assert run_cli("export", out, "--best", "--out", tmp_path / "best.pt") == 0
    best = int(res.table.final_train_loss.idxmin())
    torch.testing.assert_close(load_exported(tmp_path / "best.pt")(x), res.model(best)(x))
    capsys.readouterr()
    assert run_cli("export", out, "--out", tmp_path / "x.pt") == 2
    assert "--run ID or --best" in capsys.readouterr().err
    assert run_cli("export", out, "--run", 99, "--out", tmp_path / "x.pt") == 2
    assert "out of range" in capsys.readouterr().err


def test_every_example_config_is_valid():
    from pathlib import Path

    from tinysweep.trainer.pipeline.sweep import prepare
    examples = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))
    assert {p.stem for p in examples} >= {"line_batch_size", "heart_rate"}
    for path in examples:
        plan = prepare(path, backend="torch", device="cpu")
        assert len(plan.chunk.runs) > 1, path


def test_a_sweep_where_every_run_diverged_still_gets_its_report(write_config, tmp_path):
    import tinysweep
    from tinysweep.trainer.insight.report import write_report
    path = write_config(data={"source": "line", "params": {"n": 20}}, model={"hidden": []},
                        train={"epochs": 2, "optimizer": "sgd"},
                        sweep={"params": {"lr": [1e30, 1e35]}})
    res = tinysweep.run(path, backend="torch")
    assert res.table.diverged.all()
    report = write_report(res, tmp_path)
    assert "2 runs (2 diverged)" in report.read_text()


def _line_sweep(write_config, tmp_path):
    """A linear sweep with enough panels (3 figures x 3, curves, heatmap) to draw forked."""
    return sweep(write_config, tmp_path,
                 data={"source": "line", "params": {"n": 30}},
                 model={"hidden": [], "loss": "mse"}, train={"epochs": 2},
                 sweep={"params": {"lr": [0.0001, 0.01, 1.0], "batch_size": [5, 30],
                                   "seed": [0, 1]}})


def _pngs(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "plots").iterdir())}


def test_plots_drawn_in_a_forked_child_equal_those_drawn_in_process(write_config, tmp_path,
                                                                    monkeypatch):
    from tinysweep.trainer.insight import report
    out = _line_sweep(write_config, tmp_path)
    res = tinysweep.load(out)
    forked = []
    monkeypatch.setattr(report, "_can_fork", lambda: True)   # an earlier test's tqdm thread
    fork = report._fork
    monkeypatch.setattr(report, "_fork", lambda draws: forked.append(1) or fork(draws))
    report.save_with_report(res, tmp_path / "forked")
    assert forked, "the million-run path (a child drawing) was not taken"
    monkeypatch.setattr(report, "FORK_PANELS", 10**9)
    report.save_with_report(res, tmp_path / "in_process")
    a, b = _pngs(tmp_path / "forked"), _pngs(tmp_path / "in_process")
    assert list(a) == list(b) == ["curves.png", "final_by_batch_size.png", "final_by_lr.png",
                                  "final_by_seed.png", "heatmap_lr_batch_size.png",
                                  "weights_by_lr.png"]
    assert a == b
    for name in ("results.csv", "results.parquet", "report.md"):
        assert ((tmp_path / "forked" / name).read_bytes()
                == (tmp_path / "in_process" / name).read_bytes()), name


def test_a_child_that_fails_to_draw_raises_after_the_results_are_written(
        write_config, tmp_path, monkeypatch, capfd):
    import pytest
    from tinysweep.trainer.insight import report
    out = _line_sweep(write_config, tmp_path)
    res = tinysweep.load(out)

    def broken(*args, **kwargs):
        raise ValueError("no curves today")
    monkeypatch.setattr(report, "plot_curves", broken)
    monkeypatch.setattr(report, "_can_fork", lambda: True)
    with pytest.raises(ValueError, match="no curves today"):
        report.save_with_report(res, tmp_path / "again")
    assert "Traceback" in capfd.readouterr().err      # a bug's: printed by the child
    assert (tmp_path / "again" / "results.csv").read_bytes() == (out / "results.csv").read_bytes()
    assert not (tmp_path / "again" / "report.md").exists()


def test_with_another_python_thread_alive_the_plots_are_drawn_in_process(monkeypatch):
    import threading
    from tinysweep.trainer.insight import report
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert report._can_fork()
    monkeypatch.undo()
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not report._can_fork()
    finally:
        stop.set()
        thread.join()


def test_log_axes_are_labelled_in_plain_text_with_minor_ticks_over_few_decades():
    from tinysweep.trainer.insight.report import _figure, _log_scale
    fig, (wide, narrow) = _figure(2)
    _log_scale(wide, "x", 1e-4, 1.0)
    _log_scale(narrow, "y", 1.5, 9.0)
    wide.set_xlim(1e-4, 1.0)
    narrow.set_ylim(1.5, 9.0)
    fig.canvas.draw()
    labels = {t.get_text() for t in wide.get_xticklabels()}
    assert {"10⁻⁴", "10⁻²", "10⁰"} <= labels and not any("$" in t for t in labels)
    assert len(wide.xaxis.get_minorticklocs()) == 0
    assert len(narrow.yaxis.get_minorticklocs()) > 0
    minor = {t.get_text() for t in narrow.get_yticklabels(minor=True)} - {""}
    assert minor and {"2×10⁰", "5×10⁰"} & minor and not any("$" in t for t in minor)


def test_seeds_and_folds_are_replicates_not_parameters(write_config, tmp_path):
    """With folds and seeds, what mattered ranks lr and batch_size by the median final val
    loss, says how far the replicates alone move it (the median over settings of largest /
    smallest), compares each factor with that, and lists the best settings from summary."""
    out = sweep(write_config, tmp_path,
                data={"source": "line", "params": {"n": 40}, "cv": 3},
                train={"epochs": 3, "optimizer": "sgd"},
                sweep={"params": {"lr": [0.003, 0.03, 0.3], "batch_size": [4, 16],
                                  "seed": [0, 1]}})
    table = pd.read_csv(out / "results.csv")
    text = (out / "report.md").read_text()
    ranked = re.findall(r"^\d+\. \*\*(\w+)\*\* moves the median final val loss from .*?, a "
                        r"factor of (\S+), (beyond|within) the replicates' own (\S+)\.$",
                        text, re.M)
    assert sorted(p for p, *_ in ranked) == ["batch_size", "lr"]           # no seed, no fold
    per_setting = table.groupby(["lr", "batch_size"]).final_val_loss
    spread = (per_setting.max() / per_setting.min()).median()
    assert (f"Replicates, not parameters: seed (2 values), fold (3 values). Between the "
            f"replicates of one setting the final val loss moves by a factor of "
            f"{spread:.3g}") in text
    for _, factor, verdict, noise in ranked:
        assert noise == f"{spread:.3g}"
        assert verdict == ("beyond" if float(factor) > float(noise) else "within")
    best = markdown_rows(text, "## Best settings over their replicates (6 settings)")
    summary = tinysweep.load(out).summary()
    assert best.lr.astype(float).tolist() == summary.lr.tolist()
    assert best["rank"].astype(int).tolist() == summary["rank"].tolist()
    assert best.n.astype(int).tolist() == [6] * 6
    assert "heatmap_lr_batch_size.png" in text        # seed is never a heatmap's axis
