"""Workload (f) of bench/run.py: a real table, scikit-learn's digits, against scikit-learn.

    python bench/run.py --workload f             # about 2 minutes on a 2-core CPU
    python bench/digits.py                       # the same workload alone, as a table

The grid of issue 25: scikit-learn's bundled digits (1,797 x 64 pixels, 10 classes), 80/20
split, inputs standardized; lr 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1 x hidden [16], [32],
[16, 16] x batch size 32, 128 x seeds 0, 1: 72 runs of 50 epochs of Adam, relu,
cross_entropy, evaluated after the last epoch (scikit-learn evaluates no held-out rows
either). Contenders, on the same split:
- scikit-learn: MLPClassifier(hidden, learning_rate_init, batch_size, max_iter=50,
  n_iter_no_change=50, alpha=0, random_state=seed), 72 fits spread over the cores by
  joblib (each fit a per-run loop of its own); n_iter_no_change keeps every fit at 50
  epochs, as tinysweep's;
- tinysweep end to end: ``tinysweep.run(config, data=(X, y))`` in this process, warm (its
  kernels compiled or loaded by a first call), backend auto;
- tinysweep's backends, training alone (bench/run.py's time_backend);
- a fresh machine: each in a new Python process, imports included, tinysweep with
  NUMBA_CACHE_DIR an empty folder (every kernel compiles, or auto trains on torch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

LRS = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
HIDDEN = [[16], [32], [16, 16]]
BATCH_SIZES = [32, 128]
SEEDS = [0, 1]
EPOCHS = 50
VAL_FRACTION = 0.2


def data() -> tuple[np.ndarray, np.ndarray]:
    """digits' pixels (float32 [1797, 64], 0..16) and classes (int64 [1797])."""
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32), y.astype(np.int64)


def config(epochs: int = EPOCHS, lrs=LRS) -> dict:
    """The 72-run grid as a tinysweep config (data given in memory)."""
    return {"data": {"val_fraction": VAL_FRACTION},
            "model": {"activation": "relu", "loss": "cross_entropy"},
            "train": {"epochs": epochs, "optimizer": "adam", "input_norm": "standardize",
                      "shuffle": True, "eval_every": epochs},
            "sweep": {"params": {"lr": list(lrs), "hidden": HIDDEN, "batch_size": BATCH_SIZES,
                                 "seed": SEEDS}}}


def split(x, y):
    """tinysweep's own split of the rows (the same seed, fraction and stratification), so
    scikit-learn trains on the rows tinysweep trains on, standardized the same way."""
    from tinysweep.trainer.pipeline.sweep import prepare
    d = prepare(config(epochs=1, lrs=LRS[:1]), backend="torch", device="cpu",
                data=(x, y)).chunk.data
    mean, std = (t.numpy() for t in d.standardization())
    return ((d.x_train.numpy() - mean) / std, d.y_train.numpy().ravel().astype(np.int64),
            (d.x_val.numpy() - mean) / std, d.y_val.numpy().ravel().astype(np.int64))


def sklearn_fits(xt, yt, xv, yv, epochs: int = EPOCHS, lrs=LRS) -> dict:
    """The grid's fits with scikit-learn through joblib over every core: seconds, and the
    best and median held-out accuracy."""
    from joblib import Parallel, delayed
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    def fit(hidden, lr, bs, seed):
        warnings.simplefilter("ignore", ConvergenceWarning)     # max_iter reached: on purpose
        m = MLPClassifier(tuple(hidden), learning_rate_init=lr, batch_size=bs, max_iter=epochs,
                          n_iter_no_change=epochs, alpha=0.0, random_state=seed)
        return m.fit(xt, yt).score(xv, yv)

    grid = [(h, lr, bs, s) for lr in lrs for h in HIDDEN for bs in BATCH_SIZES for s in SEEDS]
    t = time.perf_counter()
    scores = Parallel(n_jobs=os.cpu_count())(delayed(fit)(*g) for g in grid)
    return {"seconds": time.perf_counter() - t, "fits": len(grid),
            "best_val_accuracy": float(np.max(scores)),
            "median_val_accuracy": float(np.median(scores))}


def tinysweep_run(x, y, epochs: int = EPOCHS, lrs=LRS) -> dict:
    """tinysweep.run of the grid (no results directory): seconds, backend, accuracies."""
    import tinysweep
    t = time.perf_counter()
    res = tinysweep.run(config(epochs, lrs), data=(x, y))
    seconds = time.perf_counter() - t
    acc = res.table["final_val_accuracy"].to_numpy()
    return {"seconds": seconds, "best_val_accuracy": float(np.nanmax(acc)),
            "median_val_accuracy": float(np.nanmedian(acc))}


# A new process: the contender's first call, imports and interpreter start included.
_CHILD = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {here!r})
import digits
x, y = digits.data()
if {who!r} == "sklearn":
    out = digits.sklearn_fits(*digits.split(x, y), epochs={epochs})
else:
    out = digits.tinysweep_run(x, y, epochs={epochs})
out["process_seconds"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def fresh_process(who: str, epochs: int = EPOCHS) -> dict:
    """``who`` ("sklearn" or "tinysweep") in a new Python process; tinysweep with an empty
    numba cache. process_seconds: from the interpreter's first line to the answer; wall:
    the whole process, as a user waits for it."""
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _CHILD.format(here=here, who=who,
                                                                    epochs=epochs)],
                              env=env, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["seconds"] = wall
    out["stderr"] = done.stderr.strip()[-300:]
    return out


def flops(chunk) -> dict:
    """bench/floor.py's counts of the grid, summed over its architectures (the floor of a
    sweep of several models is the sum of each group's)."""
    import floor
    from tinysweep.trainer.backends.backend import steps_per_epoch

    n = chunk.data.n_train
    runs = chunk.runs
    codes = np.asarray(runs.hidden.codes)
    total: dict[str, float] = {}
    for code in np.unique(codes):           # a loop over the architectures, not the runs
        picked = codes == code
        hidden = runs.architectures()[code]
        epochs = np.asarray(runs.epochs)[picked]
        opt_steps = float((epochs * steps_per_epoch(n, np.asarray(runs.batch_size)[picked])).sum())
        c = floor.counts(chunk.data.n_features, list(hidden), chunk.model.activation,
                         chunk.model.loss, float(epochs.sum() * n), opt_steps,
                         int(picked.sum()), n, chunk.data.n_outputs)
        for k, v in c.items():
            total[k] = total.get(k, 0.0) + v
    return total


def main() -> None:
    x, y = data()
    print("scikit-learn, warm:", sklearn_fits(*split(x, y)))
    tinysweep_run(x, y)
    print("tinysweep, warm:", tinysweep_run(x, y))
    print("fresh, scikit-learn:", fresh_process("sklearn"))
    print("fresh, tinysweep:", fresh_process("tinysweep"))


if __name__ == "__main__":
    main()
