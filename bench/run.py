"""The throughput report: tinysweep against the per-run loop a user would write.

    python bench/run.py            # the line study (200 runs), CPU (about a minute)
    python bench/run.py --quick    # the loop on a slice, for a smoke test (about 10 s)

Workload (a), the line study: Linear(1, 1), MSE, Adam lr 1e-2, 100 epochs, 1,000 points,
100 batch sizes 10..1000 x shuffle on/off = 200 runs. Both contenders run in this process,
one after the other, on the same device. The per-run loop trains every run (with --quick,
every 50th run, so that the slice spans all batch sizes, extrapolated by optimizer steps
and marked as such); tinysweep's torch backend trains the whole sweep. Prints a table and
writes bench/results/DEVICE-DATE.json and .md.
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

from contenders import plain_loop  # noqa: E402

import tinysweep  # noqa: E402
from tinysweep.trainer.backend import steps_per_epoch  # noqa: E402
from tinysweep.trainer.config import load_config  # noqa: E402
from tinysweep.trainer.sweep import execute, prepare  # noqa: E402

LINE_STUDY = HERE.parent / "examples" / "line_batch_size.yaml"


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name().replace(" ", "-")
    return f"cpu-{os.cpu_count()}core-{platform.machine()}"


def line_study(slice_every: int, repeats: int) -> dict:
    """Times workload (a) for the per-run loop (a slice, extrapolated) and the torch backend."""
    plan = prepare(load_config(LINE_STUDY), backend="torch", device="cpu")
    runs, data = plan.chunk.runs, plan.chunk.data
    n, epochs = data.n_train, runs[0].epochs
    sample_steps = sum(r.epochs * n for r in runs)
    opt_steps = sum(r.epochs * steps_per_epoch(n, r.batch_size) for r in runs)

    execute(plan)                            # warm-up: first-call allocations, thread pools
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        res = execute(plan)
        times.append(time.perf_counter() - t)
    torch_s = float(np.median(times))

    picked = runs[::slice_every]
    t = time.perf_counter()
    for r in picked:
        plain_loop(data.x_train, data.y_train, r.batch_size, r.shuffle, epochs, r.lr, r.seed)
    loop_slice_s = time.perf_counter() - t
    # Extrapolate by optimizer steps, which is what the loop's time is made of.
    slice_steps = sum(r.epochs * steps_per_epoch(n, r.batch_size) for r in picked)
    loop_s = loop_slice_s * opt_steps / slice_steps

    converged = res.table[res.table.final_train_loss < 0.01]
    return {
        "workload": "a: line study", "runs": len(runs), "sample_steps": sample_steps,
        "optimizer_steps": opt_steps,
        "contenders": {
            "per-run loop": {"seconds": loop_s, "measured_seconds": loop_slice_s,
                             **({"extrapolated_from_runs": len(picked)}
                                if len(picked) < len(runs) else {})},
            "tinysweep torch": {"seconds": torch_s, "repeats": times},
        },
        "speedup_torch_over_loop": loop_s / torch_s,
        "largest_converged_batch_size": int(converged.batch_size.max()) if len(converged) else None,
    }


def report_markdown(result: dict, device: str) -> str:
    lines = [f"# tinysweep throughput, {device}, {result['date']}", "",
             f"Workload {result['workload']}: {result['runs']} runs, "
             f"{result['sample_steps']:.3g} sample-steps, {result['optimizer_steps']:.3g} optimizer steps.", "",
             "| contender | wall s | sample-steps/s | run-steps/s | runs/s | speedup vs loop |",
             "|---|---|---|---|---|---|"]
    loop_s = result["contenders"]["per-run loop"]["seconds"]
    for name, c in result["contenders"].items():
        s = c["seconds"]
        note = " (extrapolated)" if "extrapolated_from_runs" in c else ""
        lines.append(f"| {name} | {s:.3f}{note} | {result['sample_steps'] / s:.3g} | "
                     f"{result['optimizer_steps'] / s:.3g} | {result['runs'] / s:.3g} | "
                     f"{loop_s / s:.1f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small slice of the loop, 1 repeat")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for the JSON and table")
    args = ap.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    result = line_study(slice_every=50 if args.quick else 1, repeats=1 if args.quick else 5)
    device = device_name()
    result.update(device=device, date=datetime.date.today().isoformat(),
                  torch=torch.__version__, tinysweep=tinysweep.__version__, quick=args.quick)
    table = report_markdown(result, device)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{device}-{result['date']}" + ("-quick" if args.quick else "")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(table)
    print(f"wrote {out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
