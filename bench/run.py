"""The throughput report: tinysweep against its peers and the hardware floor.

    python bench/run.py                      # every workload, this machine's device
    python bench/run.py --workload a         # one workload: a | b | c | d | e | f (repeatable)
    python bench/run.py --quick              # each workload scaled down (CPU, CI smoke)

Workloads (configs in examples/ and bench/workloads/):
  a  the line study: 200 runs, 100 batch sizes 10..1000 x shuffle, Adam 1e-2, 100 epochs
  b  the line workload at scale: 100,000 runs, 500 batch sizes x shuffle x 100 lrs
  c  the MLP workload: 10,000 runs of 1-16-1 sigmoid, BCE, Adam per-run lr, batch 100,
     1,000 epochs
  d  batchnorm on the input, two hidden layers of 32: 1,000 runs, batch 100, 100 epochs
  e  a million runs of the line model, one epoch of 100 points each: the time `tinysweep
     run` spends around training (set-up, writing, the report), by phase; --scale 10 for
     ten million runs
  f  a real table: scikit-learn's digits (64 features, 10 classes), 72 runs of [16], [32]
     and [16, 16] relu, cross_entropy, 50 epochs, against scikit-learn's MLPClassifier
     (bench/digits.py: the grid, and its contenders, warm and in a fresh process)

Contenders, on the same device, one after the other in this process: the per-run loop
(tinysweep's reference backend: one nn.Module and torch.optim per run; on a GPU also on
the CPU, where tiny models often train faster) and on the CPU its lean form (no curves or
checks: bench/contenders.py), torch.func ensembling eager and under torch.compile,
tinysweep's torch backend, its numba backend (on the CPU, whatever the device), and on
CUDA its triton backend. The numba kernels' compile time is measured apart, in fresh
processes: once with an empty cache (compiling), once with the cache it left (loading).
A contender whose whole run would take too long is timed on a slice and extrapolated, and
the figure is marked so: the loop on some runs (by optimizer steps), the ensembles on one
batch size's group (by run-steps), the backends on some runs on a CPU and on some epochs of
every run on a GPU (by sample-steps). Before timing, each tinysweep
backend trains a small slice that is checked against the reference; a backend that
disagrees is reported as wrong, not as fast.

Writes bench/results/DEVICE-DATE.json and .md (``-quick`` appended for --quick), after each
workload; a workload not run this time keeps its figures from an earlier report of that
day, so workloads can be run one call at a time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import contenders  # noqa: E402
import digits  # noqa: E402
import floor  # noqa: E402

import tinysweep  # noqa: E402
from tinysweep.trainer.backends import numba_backend, reference, triton_backend  # noqa: E402
from tinysweep.trainer.backends.backend import Chunk, evaluation_epochs, steps_per_epoch  # noqa: E402
from tinysweep.trainer.pipeline.results import atomic_write  # noqa: E402
from tinysweep.trainer.pipeline.sweep import Plan, prepare, train_chunk  # noqa: E402

WORKLOADS = {
    "a": ("line study", HERE.parent / "examples" / "line_batch_size.yaml"),
    "b": ("line at scale", HERE / "workloads" / "line_scale.yaml"),
    "c": ("MLP 1-16-1", HERE / "workloads" / "mlp_10k.yaml"),
    "d": ("batchnorm + 32-32 relu", HERE / "workloads" / "bn_mlp.yaml"),
    "e": ("a million runs: the time around training", HERE / "workloads" / "line_1m.yaml"),
    "f": ("digits against scikit-learn", None),        # data in memory: bench/digits.py
}
# Runs timed per contender on a CPU (the rest extrapolated): (loop, ensemble, torch backend,
# numba backend). The numba backend trains (a) and (b) whole; (c) and (d) would take minutes
# a repeat on 2 cores.
CPU_SLICE = {"a": (200, 200, 200, 200), "b": (3, 200, 1000, 100_000), "c": (2, 200, 200, 1000),
             "d": (3, 100, 100, 200)}
# On a GPU: runs of each per-run loop; an ensemble takes its whole batch-size group (a
# slice would leave the GPU idle), a backend every run.
GPU_LOOP_RUNS = {"a": 10, "b": 3, "c": 1, "d": 3}
QUICK_RUNS, QUICK_EPOCHS, QUICK_SLICE = 48, 5, (3, 16, 48, 48)
ENSEMBLE_STEPS = 20
# A backend on a GPU is timed on the whole sweep when that takes at most this long (by a
# probe of a tenth of the epochs), else on the probe, extrapolated.
GPU_BUDGET_S = 20.0


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name().replace(" ", "-")
    return f"cpu-{os.cpu_count()}core-{platform.machine()}"


# ---- sizes -------------------------------------------------------------------------------
def workload_chunk(key: str, epochs: int | None = None) -> Chunk:
    """The workload's sweep as one Chunk (runs, data, model)."""
    if key == "f":
        return prepare(digits.config(epochs or digits.EPOCHS), backend="torch", device="cpu",
                       data=digits.data()).chunk
    return prepare(WORKLOADS[key][1], backend="torch", device="cpu").chunk


def sub_chunk(chunk: Chunk, picked: list[int], epochs: int | None = None) -> Chunk:
    runs = chunk.runs[np.asarray(picked, dtype=np.int64)]
    if epochs is not None:
        runs = runs.replace(epochs=np.minimum(runs.epochs, epochs))
    eval_every = min(chunk.eval_every, int(runs.epochs.max()))
    return Chunk(chunk.model, chunk.data, runs, eval_every, evaluation_epochs(runs, eval_every))


def totals(chunk: Chunk) -> dict[str, float]:
    n = chunk.data.n_train
    runs = chunk.runs
    return {"runs": len(runs), "sample_steps": float(runs.epochs.sum() * n),
            "optimizer_steps": float((runs.epochs * steps_per_epoch(n, runs.batch_size)).sum())}


# ---- measuring -------------------------------------------------------------------------------
def status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), in MB."""
    status = Path("/proc/self/status").read_text()
    return int(next(ln for ln in status.splitlines() if ln.startswith(field)).split()[1]) / 1024


class PeakMemory:
    """Peak memory of what runs inside: torch.cuda.max_memory_allocated on CUDA, the
    process's peak RSS (VmHWM, reset through /proc/self/clear_refs) on the CPU."""

    def __init__(self, device: str):
        self.device = device

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            self.mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self.mb = status_mb("VmHWM")
        return False


def guard(backend: str, chunk: Chunk, device: str) -> str:
    """'ok' when the backend matches the reference on a small slice, else what differs.

    One epoch: past it, a run at a large learning rate is chaotic, and any order of the
    sums drifts from the reference's. Digits' 72-run grid at lr 0.1 and 0.2 moved its
    training losses 4 to 60% from the reference's by the third epoch, on the numba kernels
    in lanes and one run at a time alike (neither further than the other); at two epochs
    its lr 0.1 run of 64-16-16-10 was 0.01% off in lanes and 1.6% one run at a time, at one
    epoch 0.0002% and 0.0006% (bench/NOTES.md). The tests compare every epoch, shuffled
    and not, at learning rates that do not diverge so."""
    small = sub_chunk(chunk, contenders.spread(len(chunk.runs), 6), epochs=1)
    plan = Plan(None, small, backend, device, len(small.runs))
    got = train_chunk(plan, small)
    want = reference.train(small)
    # ||got - want|| / ||want|| per tensor: float32 arithmetic in another order lands far
    # under 1e-3, even where Adam turns near-zero gradients into lr-sized steps (relu units
    # off for most rows); a wrong result lands far above.
    for what, a, b in [("curves", got.curves, want.curves), ("weights", got.final, want.final)]:
        for name in b:
            x, y = np.asarray(a[name], np.float64), np.asarray(b[name], np.float64)
            if not np.array_equal(np.isnan(x), np.isnan(y)):
                return f"wrong: {what} {name} is NaN in different places"
            x, y = np.nan_to_num(x), np.nan_to_num(y)
            err = np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-12)
            if err > 1e-3:
                return f"wrong: {what} {name} differs by {err:.2g} (relative norm)"
    if not np.array_equal(got.steps, want.steps):
        return "wrong: steps differ"
    return "ok"


def _timed(plan: Plan, part: Chunk, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    train_chunk(plan, part)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def time_backend(backend: str, chunk: Chunk, picked: list[int], device: str,
                 repeats: int) -> dict:
    """Warm wall time of train_chunk (set-up, training, results), the first call's extra
    (compile) time apart. On a CPU on the ``picked`` runs; on a GPU on every run, over a
    tenth of the epochs when the whole sweep would pass GPU_BUDGET_S."""
    if device == "cuda":
        probe = sub_chunk(chunk, list(range(len(chunk.runs))),
                          epochs=max(1, int(chunk.runs.epochs.max()) // 10))
        plan = Plan(None, probe, backend, device, len(probe.runs))
        first, again = _timed(plan, probe, device), _timed(plan, probe, device)
        scale = totals(chunk)["sample_steps"] / totals(probe)["sample_steps"]
        part = chunk if again * scale <= GPU_BUDGET_S else probe
        compile_s = max(0.0, first - again)
    else:
        part = sub_chunk(chunk, picked) if len(picked) < len(chunk.runs) else chunk
        first = _timed(Plan(None, part, backend, device, len(part.runs)), part, device)
    plan = Plan(None, part, backend, device, len(part.runs))
    with PeakMemory(device) as mem:
        times = [_timed(plan, part, device) for _ in range(repeats)]
    seconds = float(np.median(times))
    if device != "cuda":
        compile_s = max(0.0, first - seconds)
    scale = totals(chunk)["sample_steps"] / totals(part)["sample_steps"]
    out = {"seconds": seconds * scale, "measured_seconds": seconds, "repeats": times,
           "compile_seconds": compile_s, "peak_mb": mem.mb}
    if len(part.runs) < len(chunk.runs):
        out["extrapolated_from_runs"] = len(part.runs)
    elif scale != 1:
        out["extrapolated_from_epochs"] = int(part.runs.epochs.max())
    return out


# A fresh process that trains a workload's first 2 runs for 1 epoch, with the numba cache
# NUMBA_CACHE_DIR names: its first train call's seconds (compiling into an empty cache,
# loading from a full one).
_FIRST_CALL = """
import sys, time
from tinysweep.trainer.pipeline.sweep import Plan, prepare, train_chunk
sys.path.insert(0, {here!r})
from run import sub_chunk
chunk = prepare({path!r}, backend="torch", device="cpu").chunk
small = sub_chunk(chunk, [0, 1], epochs=1)
t = time.perf_counter()
train_chunk(Plan(None, small, "numba", "cpu", 2), small)
print(time.perf_counter() - t)
"""


def numba_compile_seconds(path: Path) -> dict:
    """The numba kernels' first call in a fresh process: with an empty cache (compile) and
    again with the cache that left (load); the call itself trains 2 runs for 1 epoch."""
    import subprocess
    import tempfile
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for name in ("compile_cold_seconds", "cache_load_seconds"):
            done = subprocess.run([sys.executable, "-c", _FIRST_CALL.format(here=str(HERE),
                                                                              path=str(path))],
                                  env=env, capture_output=True, text=True, check=True)
            out[name] = float(done.stdout.split()[-1])
    return out


def triton_kernel_seconds(chunk: Chunk, repeats: int) -> float:
    """Device time of the triton backend's launches alone (CUDA events around each group's
    training, its state loaded beforehand): the median over ``repeats`` fresh loads."""
    from tinysweep.trainer.backends.torch_backend import group_rows
    from tinysweep.trainer.backends.triton_backend import _TritonGroup

    times = []
    for _ in range(repeats):
        total = 0.0
        for rows in group_rows(chunk):
            with torch.no_grad():
                group = _TritonGroup(chunk, rows, torch.device("cuda"), chunk.empty_result())
                group.load()
                begin, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
                begin.record()
                group.train_intervals()
                end.record()
                end.synchronize()
            total += begin.elapsed_time(end) / 1e3
        times.append(total)
    return float(np.median(times))


def time_loop(chunk: Chunk, picked: list[int], device: str = "cpu", lean: bool = False) -> dict:
    with PeakMemory(device) as mem:
        loop = contenders.lean_loop if lean else contenders.per_run_loop
        seconds = loop(chunk, picked, device)
    runs = chunk.runs
    steps = runs.epochs * steps_per_epoch(chunk.data.n_train, runs.batch_size)
    scale = steps.sum() / steps[picked].sum()
    out = {"seconds": seconds * scale, "measured_seconds": seconds, "peak_mb": mem.mb}
    if len(picked) < len(chunk.runs):
        out["extrapolated_from_runs"] = len(picked)
    return out


def time_ensemble(chunk: Chunk, max_runs: int, compiled: bool, device: str) -> dict:
    """One batch-size group (the median batch size's), ENSEMBLE_STEPS steps, extrapolated
    to every group by run-steps."""
    batch = np.asarray(chunk.runs.batch_size)
    sizes, counts = np.unique(batch, return_counts=True)
    bs = int(sizes[len(sizes) // 2])
    picked = np.flatnonzero(batch == bs)[:max_runs].tolist()
    with PeakMemory(device) as mem:
        t = contenders.func_ensemble(chunk, picked, ENSEMBLE_STEPS, compiled, device)
    per_run_step = t["seconds_per_step"] / len(picked)
    per_size = contenders.ensemble_steps(chunk)
    run_steps = sum(per_size[int(b)] * int(k) for b, k in zip(sizes, counts))
    return {"seconds": per_run_step * run_steps, "measured_seconds":
            t["seconds_per_step"] * ENSEMBLE_STEPS, "compile_seconds": t["warmup_seconds"],
            "peak_mb": mem.mb, "extrapolated_from_runs": len(picked),
            "measured_batch_size": bs}


def bookkeeping(key: str, quick: bool, device: str, scale: int = 1) -> dict:
    """Workload (e): one `tinysweep run` of the million-run line sweep (``scale`` times as
    many learning rates: 10 for 10,000,000 runs; 10,000 runs with --quick), in this
    process, timed by phase as the command runs them: set-up (config, search space, data,
    checks, plan), training (execute(): the backend's train calls, and around them the
    chunks and the table) and writing (results.csv, results.parquet, curves.npz, params.npz,
    config.yaml, and the report drawn meanwhile: report.save_with_report). Imports are done
    before the clock starts; the peak memory is the process's, beyond what it held then."""
    import gc
    import tempfile

    import matplotlib.figure  # noqa: F401  (imported before the clock, as torch is)
    from tinysweep.trainer.spec import config as config_module
    from tinysweep.trainer.insight import report as report_module
    from tinysweep.trainer.pipeline import sweep
    from tinysweep.trainer.backends import numba_backend as numba_module
    from tinysweep.trainer.pipeline import tables  # noqa: F401
    from tinysweep.trainer.backends import torch_backend, triton_backend as triton_module

    title, path = WORKLOADS[key]
    raw = config_module.read_config_file(path)
    lrs = raw["sweep"]["params"]["lr"]["logspace"]
    lrs[2] = 10 if quick else lrs[2] * scale
    cfg = config_module.parse_config(raw, base_dir=path.parent)
    inside = {"seconds": 0.0, "depth": 0}

    def timed(train):               # the backends' own training, apart from the rest
        def wrapper(*args, **kwargs):
            # the fused backends train through torch_backend.train: count the outer call
            inside["depth"] += 1
            t = time.perf_counter()
            try:
                return train(*args, **kwargs)
            finally:
                inside["depth"] -= 1
                if inside["depth"] == 0:
                    inside["seconds"] += time.perf_counter() - t
        return wrapper

    rss_before = status_mb("VmRSS")
    gc.freeze()                     # as `tinysweep run` does after its imports
    modules = (torch_backend, triton_module, numba_module)
    original = [m.train for m in modules]
    for m, train in zip(modules, original):
        m.train = timed(train)
    try:
        with PeakMemory("cpu") as mem, tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            plan = sweep.prepare(cfg, backend="auto", device=device)
            t1 = time.perf_counter()
            res = sweep.execute(plan)
            t2 = time.perf_counter()
            report_module.save_with_report(res, out)
            t3 = time.perf_counter()
    finally:
        for m, train in zip(modules, original):
            m.train = train
    phases = {"set-up": t1 - t0, "training": t2 - t1, "of which backend": inside["seconds"],
              "writing": t3 - t2}
    outside = phases["set-up"] + phases["training"] - inside["seconds"] + phases["writing"]
    runs = len(plan.chunk.runs)
    print(f"[{key}] {title}: {runs:,} runs; " + ", ".join(f"{k} {v:.2f} s" for k, v in
          phases.items()) + f"; outside training {outside:.2f} s; peak +{mem.mb - rss_before:.0f} MB",
          flush=True)
    return {"workload": f"{key}: {title}", "runs": runs, "backend": plan.backend,
            "phases": phases, "outside_training_seconds": outside,
            "peak_mb_beyond_imports": mem.mb - rss_before, "help_seconds": help_seconds()}


def help_seconds() -> float:
    """Wall time of `python -m tinysweep --help` in a fresh interpreter (median of 5)."""
    import subprocess
    times = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tinysweep", "--help"], check=True,
                       capture_output=True)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def workload(key: str, quick: bool, device: str, repeats: int, peaks, scale: int = 1) -> dict:
    title, path = WORKLOADS[key]
    if key == "e":
        return bookkeeping(key, quick, device, scale)
    if key == "f":
        return digits_workload(quick, repeats, peaks)
    chunk = workload_chunk(key)
    if quick:
        chunk = sub_chunk(chunk, contenders.spread(len(chunk.runs), QUICK_RUNS), QUICK_EPOCHS)
    size = totals(chunk)
    n_loop, n_ens, n_torch, n_numba = QUICK_SLICE if quick else CPU_SLICE[key]
    if device == "cuda":
        n_loop = n_loop if quick else GPU_LOOP_RUNS[key]
        n_ens = n_torch = len(chunk.runs)
    result = {"workload": f"{key}: {title}", **size, "contenders": {}}
    c = result["contenders"]
    print(f"[{key}] {title}: {size['runs']:,} runs, {size['sample_steps']:.3g} sample-steps",
          flush=True)
    loop_runs = contenders.spread(len(chunk.runs), n_loop)

    def measure(name: str, timing) -> None:
        """c[name] = timing(), or why it has none; printed as it lands (with how long the
        measuring took), so a long report shows its progress."""
        t = time.perf_counter()
        try:
            c[name] = timing()
        except Exception as e:     # keep the report: say why this contender has no figure
            c[name] = {"error": repr(e)[:200]}
        fig = c[name]
        print(f"  {name}: " + (f"{fig['seconds']:.4g} s" if "seconds" in fig else fig["error"])
              + f"  (measured in {time.perf_counter() - t:.0f} s)", flush=True)

    def backend_timing(backend: str):
        if backend == "triton" and (why := triton_backend.unsupported(chunk)) is not None:
            return {"error": f"unsupported: {why}"}
        if backend == "numba" and (why := (numba_backend.available()
                                           or numba_backend.unsupported(chunk))) is not None:
            return {"error": f"unsupported: {why}"}
        on = "cpu" if backend == "numba" else device        # numba trains on the CPU
        # the cold compile takes half a minute: not in the --quick smoke run
        compile_s = numba_compile_seconds(path) if backend == "numba" and not quick else {}
        t = time.perf_counter()
        verdict = guard(backend, chunk, on)
        guard_s = time.perf_counter() - t   # the triton kernels compile in the guard's call
        if verdict != "ok":
            return {"error": verdict}
        runs = n_numba if backend == "numba" else n_torch
        if backend == "numba" and device == "cuda" and not quick:
            runs = CPU_SLICE[key][3]
        fig = time_backend(backend, chunk, contenders.spread(len(chunk.runs), runs), on,
                           repeats)
        fig.update(guard=verdict, guard_seconds=guard_s, **compile_s)
        if backend == "numba":   # the compile column: a cold compile, not the first call's
            fig["compile_seconds"] = compile_s.get("compile_cold_seconds", 0.0)
            fig["threads"] = numba_backend.threads()
        if backend == "triton":
            fig["kernel_seconds"] = triton_kernel_seconds(chunk, repeats)
        return fig

    measure("per-run loop", lambda: time_loop(chunk, loop_runs, device))
    if device == "cuda":      # tiny models often train faster one by one on the CPU
        measure("per-run loop (cpu)", lambda: time_loop(chunk, loop_runs, "cpu"))
    else:
        measure("per-run loop (lean)", lambda: time_loop(chunk, loop_runs, device, lean=True))
    for compiled in (False, True):
        measure("torch.func vmap" + (" + compile" if compiled else ""),
                lambda: time_ensemble(chunk, n_ens, compiled, device))
    for backend in ["torch", "numba"] + (["triton"] if device == "cuda" else []):
        measure(f"tinysweep {backend}", lambda: backend_timing(backend))
    # the speedups are over the faster loop, the one a user would keep
    loops = [n for n in c if n.startswith("per-run loop")]
    result["loop_baseline"] = min(loops, key=lambda n: c[n]["seconds"])
    loop_s = c[result["loop_baseline"]]["seconds"]
    vmap_s = c.get("torch.func vmap + compile", {}).get("seconds")
    torch_s = c.get("tinysweep torch", {}).get("seconds")
    if peaks is not None:
        spec = chunk.model
        fl = floor.floor_seconds(floor.counts(
            chunk.data.n_features, spec.hidden, spec.activation, spec.loss,
            size["sample_steps"], size["optimizer_steps"], size["runs"], chunk.data.n_train),
            peaks)
    for name, fig in c.items():
        if "seconds" in fig:
            rates(fig, size, loop_s, vmap_s, torch_s,
                  fl if peaks is not None and not name.endswith("(cpu)") else None)
    return result


def rates(fig: dict, size: dict, loop_s: float, vmap_s: float | None, torch_s: float | None,
          fl: dict | None) -> None:
    """A contender's figures from its seconds: work per second, its speedups over the loop
    (``loop_s``), vmap + compile and the torch backend (where measured), and its share of
    the floor ``fl`` (floor.floor_seconds; None: none)."""
    s = fig["seconds"]
    fig.update(sample_steps_per_s=size["sample_steps"] / s,
               run_steps_per_s=size["optimizer_steps"] / s, runs_per_s=size["runs"] / s,
               speedup_vs_loop=loop_s / s,
               speedup_vs_vmap_compile=(vmap_s / s) if vmap_s else None,
               speedup_vs_torch_backend=(torch_s / s) if torch_s else None)
    if fl is not None:
        # the floor bounds device work: against the launches alone where they are timed
        fig.update(floor_seconds=fl["floor_s"], floor=fl,
                   of_floor=fl["floor_s"] / fig.get("kernel_seconds", s))


def digits_workload(quick: bool, repeats: int, peaks) -> dict:
    """Workload (f): the digits grid, scikit-learn's 72 fits (joblib over every core)
    against tinysweep end to end (tinysweep.run, backend auto) and its backends training
    alone, warm (the median of ``repeats`` after a first call), then each in a fresh
    process (imports included; tinysweep with an empty numba cache). --quick: 2 epochs of
    2 learning rates, no fresh processes."""
    title = WORKLOADS["f"][0]
    epochs, lrs = (2, digits.LRS[:2]) if quick else (digits.EPOCHS, digits.LRS)
    x, y = digits.data()
    chunk = prepare(digits.config(epochs, lrs), backend="torch", device="cpu",
                    data=(x, y)).chunk
    size = totals(chunk)
    result = {"workload": f"f: {title}", **size, "contenders": {}}
    c = result["contenders"]
    print(f"[f] {title}: {size['runs']:,} runs, {size['sample_steps']:.3g} sample-steps",
          flush=True)

    def warm(call) -> dict:
        """call() once (workers started, kernels compiled or loaded), then ``repeats``
        times: the median's figures."""
        call()
        runs = [call() for _ in range(repeats)]
        best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
        return {**best, "repeats": [r["seconds"] for r in runs]}

    sk = "per-run loop: scikit-learn MLPClassifier, joblib"
    split = digits.split(x, y)
    c[sk] = warm(lambda: digits.sklearn_fits(*split, epochs=epochs, lrs=lrs))
    c["tinysweep.run, auto"] = warm(lambda: digits.tinysweep_run(x, y, epochs, lrs))
    for backend in ("torch", "numba"):
        if backend == "numba" and (why := (numba_backend.available()
                                           or numba_backend.unsupported(chunk))) is not None:
            c[f"tinysweep {backend}, training"] = {"error": f"unsupported: {why}"}
            continue
        verdict = guard(backend, chunk, "cpu")
        c[f"tinysweep {backend}, training"] = (
            {"error": verdict} if verdict != "ok" else
            time_backend(backend, chunk, list(range(len(chunk.runs))), "cpu", repeats))
    if not quick:
        c["scikit-learn, a new process"] = digits.fresh_process("sklearn", epochs)
        c["tinysweep.run, a new process, empty numba cache"] = digits.fresh_process(
            "tinysweep", epochs)
    for name, fig in c.items():
        if "seconds" in fig:
            print(f"  {name}: {fig['seconds']:.3g} s", flush=True)
    result["loop_baseline"] = sk
    sk_s = c[sk]["seconds"]
    fresh_sk = c.get("scikit-learn, a new process", {}).get("seconds")
    torch_s = c.get("tinysweep torch, training", {}).get("seconds")
    fl = floor.floor_seconds(digits.flops(chunk), peaks) if peaks is not None else None
    for name, fig in c.items():
        if "seconds" in fig:
            # a new process against a new process, a warm call against a warm call
            base = fresh_sk if "new process" in name and fresh_sk else sk_s
            rates(fig, size, base, None, torch_s, fl)
            fig.setdefault("peak_mb", float("nan"))
    return result


def markdown(report: dict) -> str:
    lines = [f"# tinysweep throughput: {report['device']}, {report['date']}"
             + (" (quick)" if report["quick"] else ""), "",
             f"torch {report['torch']}. Figures marked * are extrapolated: from a slice of "
             f"the runs, or (marked e) of the epochs; see bench/run.py. Speedups are over "
             f"the faster per-run loop. Kernel s: the triton launches alone; the floor is "
             f"taken against them. Compile s of the numba backend: its first call in a fresh "
             f"process with an empty cache (the cached first call is in the JSON, "
             f"cache_load_seconds).", ""]
    for w in report["workloads"]:
        if "phases" in w:
            lines += [f"## {w['workload']}", "",
                      f"{w['runs']:,} runs, {w['backend']} backend. Outside training: "
                      f"{w['outside_training_seconds']:.2f} s; peak memory beyond the "
                      f"imports: {w['peak_mb_beyond_imports']:.0f} MB; `tinysweep --help`: "
                      f"{w['help_seconds']:.2f} s.", "",
                      "| " + " | ".join(w["phases"]) + " |",
                      "|" + "---|" * len(w["phases"]),
                      "| " + " | ".join(f"{v:.2f} s" for v in w["phases"].values()) + " |", ""]
            continue
        lines += [f"## {w['workload']}", "",
                  f"{w['runs']:,} runs, {w['sample_steps']:.3g} sample-steps, "
                  f"{w['optimizer_steps']:.3g} optimizer steps.", "",
                  "| contender | wall s | kernel s | compile s | sample-steps/s | run-steps/s "
                  "| runs/s | vs loop | vs vmap+compile | vs torch backend | peak MB | of floor |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, f in w["contenders"].items():
            if "error" in f:
                lines.append(f"| {name} | {f['error']} |" + " |" * 10)
                continue
            star = ("*" if "extrapolated_from_runs" in f
                    else "*e" if "extrapolated_from_epochs" in f else "")
            vs_vmap = f"{f['speedup_vs_vmap_compile']:.1f}x" if f.get("speedup_vs_vmap_compile") else "-"
            vs_torch = f"{f['speedup_vs_torch_backend']:.1f}x" if f.get("speedup_vs_torch_backend") else "-"
            of_floor = f"{f['of_floor']:.1%}" if "of_floor" in f else "-"
            kernel = f"{f['kernel_seconds']:.3g}" if "kernel_seconds" in f else "-"
            lines.append(
                f"| {name} | {f['seconds']:.3g}{star} | {kernel} | "
                f"{f.get('compile_seconds', 0):.2g} | "
                f"{f['sample_steps_per_s']:.3g} | {f['run_steps_per_s']:.3g} | "
                f"{f['runs_per_s']:.3g} | {f['speedup_vs_loop']:.1f}x | {vs_vmap} | {vs_torch} | "
                f"{f['peak_mb']:.0f} | {of_floor} |".replace("| nan |", "| - |"))
        lines.append("")
    return "\n".join(lines)


def write(report: dict, out: Path) -> Path:
    """Writes STEM.json and STEM.md (atomically), keeping the workloads of an earlier
    report of the same stem that this one did not run."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / (f"{report['device']}-{report['date']}" + ("-quick" if report["quick"] else ""))
    path = stem.with_suffix(".json")
    if path.exists():
        done = {w["workload"] for w in report["workloads"]}
        kept = [w for w in json.loads(path.read_text())["workloads"] if w["workload"] not in done]
        report = {**report, "workloads": sorted(kept + report["workloads"],
                                                key=lambda w: w["workload"])}
    for suffix, text in ((".json", json.dumps(report, indent=1, default=float) + "\n"),
                         (".md", markdown(report))):
        atomic_write(stem.with_suffix(suffix), lambda f: f.write(text.encode()))
    return stem


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", action="append", choices=sorted(WORKLOADS),
                    help="a workload to run (repeatable; default: all)")
    ap.add_argument("--quick", action="store_true", help="every workload scaled down")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of each backend")
    ap.add_argument("--scale", type=int, default=1,
                    help="workload e: this many million runs (10 for the 10,000,000-run sweep)")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for the JSON and table")
    args = ap.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # the floor: the GPU's peaks, or this CPU's (a matmul's FMA rate on every core, a
    # copy's bandwidth), taken before the workloads, on a quiet machine
    peaks = floor.measure_peaks() if device == "cuda" else floor.measure_cpu_peaks()
    report = {"device": device_name(), "date": datetime.date.today().isoformat(),
              "torch": torch.__version__, "tinysweep": tinysweep.__version__,
              "quick": args.quick, "peaks": peaks, "workloads": []}
    if device == "cuda":
        import triton
        report["triton"] = triton.__version__
    for key in args.workload or sorted(WORKLOADS):
        report["workloads"].append(workload(key, args.quick, device, args.repeats, peaks,
                                            args.scale))
        stem = write(report, Path(args.out))      # after each workload: nothing lost
    print(markdown(report))
    print(f"wrote {stem}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
