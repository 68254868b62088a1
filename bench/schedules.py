"""Grid, successive halving, Hyperband and PBT at equal budget (issue 28, item 5).

    python bench/schedules.py                    # about 2 minutes on a 2-core CPU (numba)
    python bench/schedules.py --quick            # a smoke run: a tenth of the epochs
    python bench/schedules.py --backend torch

Three studies, each over the same search space for every schedule: learning rate (the grid:
9 values log-spaced over 1e-4..1; the others: log-uniform over the same range), two batch
sizes and seeds; the model, optimizer and input normalization fixed, as PBT needs (its
members copy each other's weights):
- heart_rate: the seed study (examples/heart_rate.yaml's data): 800 raw heart rates
  (about 92 bpm, not standardized: the learning rate decides whether it learns), a
  16-unit sigmoid MLP, Adam, 270 epochs, batch 50 or 800;
- line: the seed line (slope -4, noise 0.05, 1,000 points), Linear(1,1), MSE, Adam, 54
  epochs, batch 10 or 100;
- digits: scikit-learn's load_digits (1,797 x 64, 10 classes), standardized inputs, a
  32-unit relu MLP, cross-entropy, Adam, 54 epochs, batch 32 or 128.
Every study holds out 20% of its rows (data.val_fraction 0.2, seed 0) and every schedule
ranks by the validation loss. Epochs are multiples of 27 (eta**3), evaluated every
E/27 epochs.

The budget is optimizer steps executed (Results.steps_trained: the schedules continue their
runs from state, so nothing is trained twice). The grid sets it: 9 lrs x 2 batch sizes x 2
seeds = 36 runs trained to the last epoch. Each other schedule gets as many runs as that
budget buys: halving (rungs at E/9 and E/3, keep 1/3: eta 3) and Hyperband (min_epochs
E/27, eta 3) by counting, before training, the epochs their stages train (exact: the
survivors per rung follow from the counts alone) times the mean steps per epoch of the
sampled runs (which runs survive, and so their batch size, is known only after training:
a first pass's executed / predicted steps then corrects a second pass's sizing, and
the executed steps are printed beside the budget); PBT gets 36 members trained to the
last epoch (interval about E/6, an evaluation epoch; quantile 0.25; lr perturbed by 0.8
or 1.25, batch size among the two): its steps move with the batch sizes it explores.
Random samples share the sweep seed 0, so halving's and Hyperband's first draws are the
same settings.

Reported per schedule: runs, steps executed (and their ratio to the grid's), the best final
validation loss among the runs trained to the last epoch (a schedule's answer) and the
median over those runs. Wall time is printed but the machine is shared: steps and losses are
the figures. Writes bench/results/schedules-DATE.json, .md and .png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ETA = 3
GRID_LRS = 9
SEEDS = [0, 1]
SCHEDULES = ("grid", "halving", "hyperband", "pbt")


def studies(quick: bool) -> dict[str, dict]:
    """Each study: its config sections (data, model, train), its batch sizes and epochs."""
    scale = 10 if quick else 1
    return {
        "heart_rate": {
            "data": {"source": "heart_rate", "params": {"n": 1000}, "seed": 0,
                     "val_fraction": 0.2},
            "model": {"hidden": [16], "activation": "sigmoid", "loss": "bce_with_logits"},
            "train": {"optimizer": "adam", "input_norm": "none"},
            "epochs": 270 // scale, "batch_sizes": [50, 800]},
        "line": {
            "data": {"source": "line", "params": {"n": 1000}, "seed": 0, "val_fraction": 0.2},
            "model": {"hidden": [], "loss": "mse"},
            "train": {"optimizer": "adam"},
            "epochs": max(54 // scale, 27), "batch_sizes": [10, 100]},
        "digits": {
            "data": "digits",
            "model": {"hidden": [32], "activation": "relu", "loss": "cross_entropy"},
            "train": {"optimizer": "adam", "input_norm": "standardize"},
            "epochs": max(54 // scale, 27), "batch_sizes": [32, 128]},
    }


def digits():
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32), y.astype(np.int64)


def config_for(study: dict, schedule: str, runs: int, seed: int = 0) -> dict:
    """The sweep of ``schedule`` over the study's space with ``runs`` runs (the grid: its
    36)."""
    epochs = study["epochs"]
    data = ({"source": "memory", "val_fraction": 0.2, "seed": 0} if study["data"] == "digits"
            else study["data"])
    config = {"name": schedule, "data": data, "model": study["model"],
              "train": {**study["train"], "epochs": epochs,
                        "eval_every": max(1, epochs // 27)}}
    if schedule == "grid":
        config["sweep"] = {"strategy": "grid", "params": {
            "lr": {"logspace": [-4, 0, GRID_LRS]}, "batch_size": study["batch_sizes"],
            "seed": SEEDS}}
        return config
    config["sweep"] = {"strategy": "random", "samples": runs, "seed": seed, "params": {
        "lr": {"loguniform": [1e-4, 1.0]}, "batch_size": study["batch_sizes"],
        "seed": list(range(10))}}
    e = config["train"]["eval_every"]
    if schedule == "halving":
        config["sweep"]["halving"] = {"rungs": [epochs // 9, epochs // 3], "keep": 1 / ETA,
                                      "metric": "val_loss"}
    elif schedule == "hyperband":
        config["sweep"]["hyperband"] = {"min_epochs": max(e, epochs // ETA ** 3), "eta": ETA,
                                        "metric": "val_loss"}
    elif schedule == "pbt":
        interval = max(e, round(epochs / 6 / e) * e)        # an evaluation epoch
        config["sweep"]["pbt"] = {"interval": interval, "quantile": 0.25,
                                  "metric": "val_loss",
                                  "perturb": {"lr": [0.8, 1.25],
                                              "batch_size": study["batch_sizes"]}}
    return config


def epochs_trained(config: dict, runs: int) -> int:
    """The epochs a schedule's stages train in all, from the counts alone (no run
    diverging): halving keeps ceil(keep x n) at each rung, Hyperband max(1, n // eta) in each
    bracket; the grid and PBT train every run to the end."""
    from tinysweep.trainer.pipeline.sweep import brackets
    sweep, epochs = config["sweep"], config["train"]["epochs"]
    if "halving" in sweep:
        h, total, alive, reached = sweep["halving"], 0, runs, 0
        for rung in h["rungs"]:
            total += alive * (rung - reached)
            alive, reached = math.ceil(h["keep"] * alive), rung
        return total + alive * (epochs - reached)
    if "hyperband" in sweep:
        hb = sweep["hyperband"]
        bracket, rungs = brackets(runs, epochs, hb["min_epochs"], hb["eta"],
                                  config["train"]["eval_every"], sweep["seed"])
        total = 0
        for s, at in rungs.items():
            alive, reached = int((bracket == s).sum()), 0
            for rung in at:
                if not alive:
                    break
                total += alive * (rung - reached)
                alive, reached = max(1, int(alive / hb["eta"] + 1e-9)), rung
            total += alive * (epochs - reached) if alive else 0
        return total
    return runs * epochs


def mean_steps_per_epoch(config: dict, data) -> float:
    """The sampled runs' mean optimizer steps per epoch (before training)."""
    from tinysweep.trainer.backends.backend import steps_per_epoch
    from tinysweep.trainer.pipeline.sweep import prepare
    plan = prepare(config, "torch", "cpu", data=data)
    return float(np.mean(steps_per_epoch(plan.chunk.data.n_train, plan.chunk.runs.batch_size)))


def runs_for_budget(study: dict, schedule: str, budget: float, data) -> int:
    """The number of runs whose predicted steps (epochs_trained x the mean steps per epoch of
    200 sampled runs) come closest to ``budget``."""
    per_epoch = mean_steps_per_epoch(config_for(study, schedule, 200), data)
    predicted = [epochs_trained(config_for(study, schedule, n), n) * per_epoch
                 for n in range(1, 2000)]
    return 1 + int(np.argmin(np.abs(np.asarray(predicted) - budget)))


def predicted_steps(study: dict, schedule: str, runs: int, data) -> float:
    config = config_for(study, schedule, runs)
    return epochs_trained(config, runs) * mean_steps_per_epoch(config, data)


def measure(study: dict, schedule: str, runs: int, data, backend: str) -> dict:
    import tinysweep
    config = config_for(study, schedule, runs)
    start = time.perf_counter()
    res = tinysweep.run(config, backend=backend, data=data)
    seconds = time.perf_counter() - start
    table = res.table
    epochs = study["epochs"]
    full = (~table["diverged"].to_numpy(bool)).copy()
    if "stopped_epoch" in table:
        full &= table["stopped_epoch"].isna().to_numpy()
    val = table["final_val_loss"].to_numpy(np.float64)[full]
    val = val[np.isfinite(val)]
    best = int(table.index[full][np.argmin(table["final_val_loss"].to_numpy()[full])]) \
        if len(val) else None
    return {"runs": len(table), "full_runs": int(full.sum()), "epochs": epochs,
            "steps": int(res.steps_trained), "best": float(val.min()) if len(val) else None,
            "median": float(np.median(val)) if len(val) else None,
            "best_run": best, "best_lr": float(table["lr"][best]) if best is not None else None,
            "diverged": int(table["diverged"].sum()), "seconds": seconds}


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table_md(results: dict) -> str:
    head = ("| study | schedule | runs | trained to the end | steps executed | x grid's | "
            "best val loss | median val loss (runs trained to the end) |\n"
            "|---|---|---|---|---|---|---|---|\n")
    rows = []
    for study, by in results.items():
        budget = by["grid"]["steps"]
        for schedule in SCHEDULES:
            r = by[schedule]
            rows.append(f"| {study} | {schedule} | {r['runs']} | {r['full_runs']} | "
                        f"{r['steps']:,} | {r['steps'] / budget:.2f} | {r['best']:.4g} | "
                        f"{r['median']:.4g} |")
    return head + "\n".join(rows)


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(4.4 * len(results), 3.6),
                             layout="constrained")
    for ax, (study, by) in zip(np.atleast_1d(axes), results.items()):
        x = np.arange(len(SCHEDULES))
        best = [by[s]["best"] for s in SCHEDULES]
        median = [by[s]["median"] for s in SCHEDULES]
        ax.plot(x, best, "o", color="#4c72b0", label="best")
        ax.plot(x, median, "s", color="#c44e52", label="median (trained to the end)")
        budget = by["grid"]["steps"]
        ax.set_xticks(x, [f"{s}\n{by[s]['steps'] / budget:.2f}x steps" for s in SCHEDULES],
                      fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"{study}: {budget:,} steps each", fontsize=10)
        ax.set_ylabel("final validation loss")
        ax.legend(fontsize=7)
    fig.suptitle("Schedules at equal budget (optimizer steps executed)")
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numba", choices=["numba", "torch"])
    parser.add_argument("--quick", action="store_true", help="a tenth of the epochs")
    parser.add_argument("--studies", nargs="*", default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("TINYSWEEP_AUTO_PREDICT", "0")
    results: dict[str, dict] = {}
    for name, study in studies(args.quick).items():
        if args.studies and name not in args.studies:
            continue
        data = digits() if study["data"] == "digits" else None
        grid = measure(study, "grid", 0, data, args.backend)
        results[name] = {"grid": grid}
        print(f"{name}: grid {grid['runs']} runs, {grid['steps']:,} steps, best "
              f"{grid['best']:.4g}, median {grid['median']:.4g} ({grid['seconds']:.1f} s)",
              flush=True)
        for schedule in SCHEDULES[1:]:
            if schedule == "pbt":
                r = measure(study, schedule, 36, data, args.backend)
            else:
                # two passes: the survivors' batch sizes (so their steps per epoch) are
                # known only after training; the first pass's executed / predicted steps
                # corrects the second's sizing
                runs = runs_for_budget(study, schedule, grid["steps"], data)
                first = measure(study, schedule, runs, data, args.backend)
                ratio = first["steps"] / predicted_steps(study, schedule, runs, data)
                runs2 = runs_for_budget(study, schedule, grid["steps"] / ratio, data)
                r = first if runs2 == runs else measure(study, schedule, runs2, data,
                                                         args.backend)
                r["first_pass"] = {"runs": runs, "steps": first["steps"]}
            results[name][schedule] = r
            print(f"{name}: {schedule} {r['runs']} runs, {r['steps']:,} steps "
                  f"({r['steps'] / grid['steps']:.2f}x), best {r['best']:.4g}, median "
                  f"{r['median']:.4g} ({r['seconds']:.1f} s, shared machine)", flush=True)
    text = table_md(results)
    print()
    print(text)
    if args.quick:
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"schedules-{datetime.date.today().isoformat()}"
    meta = {"cpu": cpu_name(), "cores": os.cpu_count(), "backend": args.backend,
            "date": datetime.date.today().isoformat()}
    stem.with_suffix(".json").write_text(json.dumps({**meta, "results": results}, indent=2))
    stem.with_suffix(".md").write_text(f"{meta}\n\n{text}\n")
    plot(results, stem.with_suffix(".png"))
    print(f"\nwrote {stem}.json, .md and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
