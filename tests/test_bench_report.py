"""bench/run.py: the floor's count, and a --quick report end to end (CPU)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import floor  # noqa: E402


def test_floor_counts_instructions_special_functions_and_bytes():
    line = floor.counts(1, [], "sigmoid", "mse", sample_steps=10, optimizer_steps=0, runs=1,
                        n_rows=1)
    assert line["fp32"] == 10 * 6 and line["sfu"] == 0      # fma, bias add, loss
    mlp = floor.counts(1, [16], "sigmoid", "bce_with_logits", sample_steps=1,
                       optimizer_steps=1, runs=2, n_rows=10)
    params = 16 + 16 + 16 + 1
    assert mlp["fp32"] == 3 + (16 * 2 + 16) + (16 * 3 + 1) + 2 * 16 + 12 * params
    assert mlp["sfu"] == 2 * 16 + 2 + 2 * params
    assert mlp["bytes"] == 2 * params * 3 * 4 * 2 + 10 * 2 * 4
    fl = floor.floor_seconds(mlp, {"fp32_per_s": 1.0, "sfu_per_s": 1.0, "bytes_per_s": 1e9})
    assert fl["floor_s"] == max(fl["fp32_s"], fl["sfu_s"], fl["bytes_s"]) == mlp["fp32"]


@pytest.mark.skipif(sys.platform != "linux", reason="peak RSS is read from /proc")
def test_quick_report_runs_and_guards(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--workload", "a",
                           "--repeats", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (report,) = [json.loads(p.read_text()) for p in tmp_path.glob("*-quick.json")]
    (w,) = report["workloads"]
    c = w["contenders"]
    assert set(c) >= {"per-run loop", "per-run loop (lean)", "torch.func vmap",
                      "tinysweep torch", "tinysweep numba"}
    assert c["tinysweep torch"]["guard"] == "ok"
    if importlib.util.find_spec("numba") is not None:
        assert c["tinysweep numba"]["guard"] == "ok"
        assert c["tinysweep numba"]["speedup_vs_torch_backend"] > 0
    assert c[w["loop_baseline"]]["speedup_vs_loop"] == 1.0     # the faster loop
    for fig in c.values():
        if "seconds" in fig:
            assert fig["seconds"] > 0 and fig["peak_mb"] > 0
    assert "| tinysweep torch |" in next(tmp_path.glob("*-quick.md")).read_text()
    # the CPU's floor: its measured peaks, and each contender's share of the floor
    assert report["peaks"]["fp32_per_s"] > 1e9 and report["peaks"]["bytes_per_s"] > 1e8
    assert 0 < c["tinysweep torch"]["of_floor"] < 1


@pytest.mark.skipif(sys.platform != "linux", reason="peak RSS is read from /proc")
def test_quick_bookkeeping_workload_reports_its_phases(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--workload", "e",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (report,) = [json.loads(p.read_text()) for p in tmp_path.glob("*-quick.json")]
    (w,) = report["workloads"]
    assert w["runs"] == 10 * 100 * 10
    phases = w["phases"]
    assert set(phases) == {"set-up", "training", "of which backend", "writing"}
    assert 0 < phases["of which backend"] <= phases["training"]
    assert w["outside_training_seconds"] == pytest.approx(
        sum(phases.values()) - 2 * phases["of which backend"])
    assert "| set-up | training |" in next(tmp_path.glob("*-quick.md")).read_text()


def test_report_keeps_the_workloads_it_did_not_rerun(tmp_path):
    import run

    def workload(key, seconds):
        fig = {"seconds": seconds, "sample_steps_per_s": 1.0, "run_steps_per_s": 1.0,
               "runs_per_s": 1.0, "speedup_vs_loop": 1.0, "speedup_vs_vmap_compile": None,
               "peak_mb": 1.0}
        return {"workload": key, "runs": 1, "sample_steps": 1.0, "optimizer_steps": 1.0,
                "contenders": {"per-run loop": fig}}

    head = {"device": "dev", "date": "2026-01-01", "torch": "x", "quick": False}
    run.write({**head, "workloads": [workload("a: one", 1.0), workload("c: three", 3.0)]},
              tmp_path)
    stem = run.write({**head, "workloads": [workload("b: two", 2.0), workload("c: three", 4.0)]},
                     tmp_path)
    report = json.loads(stem.with_suffix(".json").read_text())
    assert [(w["workload"], w["contenders"]["per-run loop"]["seconds"])
            for w in report["workloads"]] == [("a: one", 1.0), ("b: two", 2.0), ("c: three", 4.0)]
    assert stem.with_suffix(".md").read_text().count("## ") == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev-2026-01-01.json",
                                                          "dev-2026-01-01.md"]
