"""The doctor's overhead on the benchmark's healthy scripts (tests/doctor_scripts/healthy_*.py):

  in process: each script run by runpy, plain and under tinysweep.doctor.watch(), after a
              warm-up run, alternating, best of --reps (the training itself, which is what the
              hooks slow down);
  wall:       `python SCRIPT` against `python -m tinysweep doctor SCRIPT` as processes,
              alternating, median of --reps (what a user waits for, imports included).

    python bench/doctor_overhead.py [--reps 3] [--no-wall]

Prints a table and the geometric mean of the ratios. Both run on one thread (torch and
OMP_NUM_THREADS=1). Timings on a shared machine move from run to run: compare ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import runpy
import statistics
import subprocess
import tempfile
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "tests" / "doctor_scripts").glob("healthy_*.py"))


def in_process(script: Path, watched: bool) -> float:
    from tinysweep.trainer.insight import doctor
    sys.path.insert(0, str(script.parent))
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            if watched:
                with doctor.watch(live=False):
                    runpy.run_path(str(script), run_name="__main__")
            else:
                runpy.run_path(str(script), run_name="__main__")
            return time.perf_counter() - t0
    finally:
        sys.path.remove(str(script.parent))


def wall(script: Path, watched: bool) -> float:
    cmd = ([sys.executable, "-m", "tinysweep", "doctor", "--out", tempfile.mkdtemp(), str(script)]
           if watched else [sys.executable, str(script)])
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd="/tmp", capture_output=True, check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-wall", action="store_true")
    args = ap.parse_args()
    # one thread: torch's intra-op threads fighting other users for 2 shared cores made a
    # BatchNorm call take 0.2 to 3 ms and the same script 0.25 to 4.5 s
    import torch
    torch.set_num_threads(1)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown CPU")
    print(f"{cpu}, {os.cpu_count()} cores; {args.reps} repetitions")
    print(f"{'script':34s} {'plain s':>8s} {'doctor s':>9s} {'ratio':>6s}"
          + ("" if args.no_wall else f" {'wall s':>7s} {'doctor':>7s} {'ratio':>6s}"))
    ratios, wall_ratios = [], []
    for script in SCRIPTS:
        in_process(script, False)                       # warm-up: imports, first calls
        plain, under = [], []
        for _ in range(args.reps):
            plain.append(in_process(script, False))
            under.append(in_process(script, True))
        r = min(under) / min(plain)
        ratios.append(r)
        row = f"{script.stem:34s} {min(plain):8.3f} {min(under):9.3f} {r:6.2f}"
        if not args.no_wall:
            wp, wd = [], []
            for _ in range(args.reps):
                wp.append(wall(script, False))
                wd.append(wall(script, True))
            w = statistics.median(wd) / statistics.median(wp)
            wall_ratios.append(w)
            row += f" {statistics.median(wp):7.2f} {statistics.median(wd):7.2f} {w:6.2f}"
        print(row, flush=True)
    gmean = math.exp(statistics.fmean(math.log(r) for r in ratios))
    print(f"in process: geometric mean {gmean:.2f}x, largest {max(ratios):.2f}x")
    if wall_ratios:
        gw = math.exp(statistics.fmean(math.log(r) for r in wall_ratios))
        print(f"wall: geometric mean {gw:.2f}x, largest {max(wall_ratios):.2f}x")


if __name__ == "__main__":
    main()
