"""report.html's size and write time on synthetic sweeps of 200,000 and 1,000,000 runs.

    python bench/report_html.py [--runs 200000 1000000] [--out DIR]

The tables are made, not trained: a grid (lr log-spaced x batch_size x optimizer x shuffle,
25 seeds each) and a random search of as many settings as runs (no replicates: the largest
number of settings to aggregate), with a final loss that depends on lr, batch size and their
interaction plus seed noise, 2% diverged, and 100-epoch curves (float32, as saved). Prints
the page's size, the median of 3 writes, and how much of it is the page's data (page_info)
and Results.summary (which page_info calls)."""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tinysweep.trainer.insight.report_html import page_info, write_html
from tinysweep.trainer.pipeline.results import Results

EPOCHS = 100


def synthetic(n_runs: int, grid: bool, seed: int = 0) -> Results:
    """A made results table of ``n_runs`` runs (see the module docstring)."""
    rng = np.random.default_rng(seed)
    if grid:
        seeds = 25
        n_set = n_runs // seeds
        n_bs = 50
        n_lr = max(1, n_set // (n_bs * 4))
        lr_values = np.logspace(-4, 0, n_lr)
        bs_values = np.linspace(8, 1024, n_bs).round().astype(np.int64)
        idx = np.arange(n_lr * n_bs * 4 * seeds)
        lr = lr_values[idx // (n_bs * 4 * seeds)]
        bs = bs_values[idx // (4 * seeds) % n_bs]
        opt = np.array(["sgd", "adam"])[idx // (2 * seeds) % 2]
        shuffle = (idx // seeds % 2).astype(bool)
        seed_col = idx % seeds
        params = {"lr": {"logspace": [-4, 0, n_lr]},
                  "batch_size": {"linspace": [8, 1024, n_bs], "int": True},
                  "optimizer": ["sgd", "adam"], "shuffle": [True, False],
                  "seed": list(range(seeds))}
    else:
        idx = np.arange(n_runs)
        lr = 10 ** rng.uniform(-4, 0, n_runs)
        bs = rng.integers(8, 1025, n_runs)
        opt = rng.choice(np.array(["sgd", "adam"]), n_runs)
        shuffle = rng.random(n_runs) < 0.5
        seed_col = np.zeros(n_runs, np.int64)
        params = {"lr": {"loguniform": [1e-4, 1.0]}, "batch_size": {"uniform": [8, 1024]},
                  "optimizer": ["sgd", "adam"], "shuffle": [True, False]}
    n = len(idx)
    x = np.log10(lr) + 2.5 - 0.8 * np.log10(bs / 8) * (opt == "adam")
    loss = 0.01 * np.exp(np.abs(x) * 1.3) * np.exp(0.15 * rng.standard_normal(n))
    diverged = rng.random(n) < 0.02
    loss[diverged] = np.nan
    table = pd.DataFrame({"run_id": idx, "lr": lr, "batch_size": bs, "shuffle": shuffle,
                          "seed": seed_col, "optimizer": opt, "final_train_loss": loss,
                          "diverged": diverged, "steps": np.full(n, 1000)})
    decay = np.exp(-np.arange(1, EPOCHS + 1) / 20).astype(np.float32)
    curves = {"epoch": np.arange(1, EPOCHS + 1),
              "train_loss": (loss[:, None].astype(np.float32) * (1 + 5 * decay[None, :]))}
    config = {"name": f"synthetic_{'grid' if grid else 'random'}_{n}",
              "data": {"source": "line"}, "model": {"hidden": [], "loss": "mse"},
              "sweep": {"strategy": "grid" if grid else "random", "params": params}}
    return Results(config, table, curves, {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, nargs="+", default=[200_000, 1_000_000])
    ap.add_argument("--out", help="keep the pages here (default: a temporary folder)")
    args = ap.parse_args()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    print(f"CPU: {cpu}, {len(open('/proc/cpuinfo').read().split('processor')) - 1} cores")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        for n_runs in args.runs:
            for grid in (True, False):
                res = synthetic(n_runs, grid)
                out = root / res.config["name"]
                times = []
                for _ in range(3):
                    start = time.perf_counter()
                    path = write_html(res, out)
                    times.append(time.perf_counter() - start)
                start = time.perf_counter()
                info = page_info(res)
                info_s = time.perf_counter() - start
                start = time.perf_counter()
                res.summary()
                summary_s = time.perf_counter() - start
                print(f"{len(res.table):>9,} runs {'grid' if grid else 'random':>6}: "
                      f"{info['n_settings']:,} settings, {info['shown']:,} lines, "
                      f"{path.stat().st_size / 1e6:.2f} MB, write {np.median(times):.2f} s "
                      f"(min {min(times):.2f}); of which page_info {info_s:.2f} s, "
                      f"Results.summary {summary_s:.2f} s")


if __name__ == "__main__":
    main()
