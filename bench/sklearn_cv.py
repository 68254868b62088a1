"""scikit-learn's grid search against tinysweep's, on handwritten digits (issue 24).

    python bench/sklearn_cv.py                    # about 5 minutes on a 2-core CPU
    python bench/sklearn_cv.py --epochs 5 --repeats 1      # a smoke run

The same 12-candidate grid (lr 1e-3, 3e-3, 1e-2 x hidden (16,), (32,) x batch size 32,
128), the same 5 folds (StratifiedKFold, shuffled, random_state 0), 50 epochs of Adam,
relu, no weight penalty, refit on every row afterwards:
- scikit-learn: GridSearchCV(sklearn.neural_network.MLPClassifier(solver="adam",
  max_iter=50, alpha=0, n_iter_no_change=50), n_jobs=os.cpu_count()): 60 fits spread over
  the cores by joblib, each a loop of its own (n_iter_no_change=50 keeps every fit at 50
  epochs, as tinysweep's);
- tinysweep: SweepSearchCV, the 60 (candidate, fold) runs in one sweep (backend auto:
  numba on the CPU), then one refit run.

Each contender runs in a child process of its own: its first fit there is the "first"
time, then ``--repeats`` warm fits (median). tinysweep runs twice: with an empty numba
cache (NUMBA_CACHE_DIR pointing at an empty temporary folder: a fresh machine, whose
first fit compiles the kernels), and with the cache this checkout already has (a new
process on a machine that ran tinysweep before). Printed as a markdown table; --out saves
it with the raw figures as JSON beside.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

LRS = [1e-3, 3e-3, 1e-2]
HIDDEN = [(16,), (32,)]
BATCH_SIZES = [32, 128]


def _data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import StratifiedKFold
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y, StratifiedKFold(5, shuffle=True, random_state=0)


def _sklearn_search(epochs: int):
    from sklearn.model_selection import GridSearchCV
    from sklearn.neural_network import MLPClassifier
    X, y, cv = _data()
    model = MLPClassifier(solver="adam", activation="relu", max_iter=epochs, alpha=0.0,
                          n_iter_no_change=epochs, shuffle=True, random_state=0)
    grid = {"learning_rate_init": LRS, "hidden_layer_sizes": HIDDEN, "batch_size": BATCH_SIZES}
    return GridSearchCV(model, grid, cv=cv, n_jobs=os.cpu_count()), X, y


def _tinysweep_search(epochs: int):
    from tinysweep.sklearn import SweepSearchCV
    X, y, cv = _data()
    grid = {"lr": LRS, "hidden": HIDDEN, "batch_size": BATCH_SIZES}
    return SweepSearchCV(grid, cv=cv, epochs=epochs, activation="relu", optimizer="adam"), X, y


def child(contender: str, epochs: int, repeats: int) -> dict:
    """Runs in the child process: the first fit, then ``repeats`` warm ones."""
    from sklearn.exceptions import ConvergenceWarning
    warnings.simplefilter("ignore", ConvergenceWarning)    # max_iter reached: on purpose
    make = _sklearn_search if contender == "sklearn" else _tinysweep_search
    times = []
    for _ in range(1 + repeats):
        search, X, y = make(epochs)
        t0 = time.perf_counter()
        search.fit(X, y)
        times.append(time.perf_counter() - t0)
    scores = search.cv_results_["mean_test_score"]
    import numpy as np
    return {"first_s": times[0], "warm_s": float(np.median(times[1:])) if repeats else None,
            "warm_all_s": times[1:], "best_cv_accuracy": float(search.best_score_),
            "mean_cv_accuracy": float(scores.mean()), "best_params": str(search.best_params_),
            "candidates": len(scores)}


def _run_child(contender: str, epochs: int, repeats: int, env: dict | None = None) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", contender, "--epochs", str(epochs),
                          "--repeats", str(repeats)], capture_output=True, text=True,
                         env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - t0        # with imports and interpreter start
    return result


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--repeats", type=int, default=2, help="warm fits after the first")
    p.add_argument("--out", type=Path, help="write the table (.md) and figures (.json) here")
    p.add_argument("--child", choices=["sklearn", "tinysweep"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.epochs, args.repeats)))
        return

    rows = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        rows["tinysweep SweepSearchCV, empty numba cache"] = _run_child(
            "tinysweep", args.epochs, args.repeats, env)
    rows["tinysweep SweepSearchCV, numba cache kept"] = _run_child("tinysweep", args.epochs,
                                                                   args.repeats)
    rows[f"scikit-learn GridSearchCV(MLPClassifier), n_jobs={os.cpu_count()}"] = _run_child(
        "sklearn", args.epochs, args.repeats)

    import sklearn
    import torch
    head = (f"digits (1,797 x 64, 10 classes), 12 candidates x 5 folds, {args.epochs} epochs "
            f"of Adam, refit included; {_cpu()}, {os.cpu_count()} cores; scikit-learn "
            f"{sklearn.__version__}, torch {torch.__version__}")
    lines = [head, "", "| contender | first fit (new process) | warm fit (median) | "
             "best mean CV accuracy | mean CV accuracy over the grid |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        warm = f"{r['warm_s']:.2f} s" if r["warm_s"] is not None else "-"
        lines.append(f"| {name} | {r['first_s']:.2f} s | {warm} | {r['best_cv_accuracy']:.4f} | "
                     f"{r['mean_cv_accuracy']:.4f} |")
    table = "\n".join(lines)
    print(table)
    for name, r in rows.items():
        print(f"{name}: best {r['best_params']}; process {r['process_s']:.1f} s; warm "
              f"{', '.join(f'{t:.2f}' for t in r['warm_all_s'])} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(table + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(
            {"header": head, "epochs": args.epochs, "repeats": args.repeats, "rows": rows},
            indent=1) + "\n")


if __name__ == "__main__":
    main()
