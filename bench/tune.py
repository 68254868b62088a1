"""Batched Optuna trials against Optuna's own loop: `python bench/tune.py [--trials N]`.

The same search space (moons, 400 points, a 16-unit tanh MLP, 50 epochs of Adam at batch
32; lr and weight decay log-uniform, the hidden width a choice) three ways:
- tinysweep tune with TPE, trials asked and trained BATCH at a time, one sweep each;
- tinysweep tune with the random sampler, the same number of trials;
- Optuna's study.optimize with TPE, one trial per objective call, the objective a plain
  PyTorch loop (one model, one optimizer, the same data and epochs).
Prints the best validation loss after N trials and trials per second. A benchmark, not a
test: the figures go to bench/NOTES.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SPACE = {"data": {"source": "moons", "params": {"n": 400}, "val_fraction": 0.25},
         "model": {"hidden": [16], "activation": "tanh", "loss": "bce_with_logits"},
         "train": {"epochs": 50, "batch_size": 32, "optimizer": "adam"},
         "sweep": {"seed": 0, "params": {"lr": {"loguniform": [1e-4, 1.0]},
                                         "weight_decay": {"loguniform": [1e-6, 1e-1]},
                                         "hidden": [[4], [16], [64]]}}}


def plain_objective(data):
    import torch
    import torch.nn.functional as F

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        wd = trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)
        width = int(trial.suggest_categorical("hidden", ["4", "16", "64"]))
        torch.manual_seed(trial.number)
        model = torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.Tanh(),
                                    torch.nn.Linear(width, 1))
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
        x, y = data.x_train, data.y_train
        for _ in range(50):
            for start in range(0, len(x), 32):
                loss = F.binary_cross_entropy_with_logits(model(x[start:start + 32]).squeeze(-1),
                                                          y[start:start + 32])
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            value = F.binary_cross_entropy_with_logits(model(data.x_val).squeeze(-1), data.y_val).item()
        return value if np.isfinite(value) else float("inf")
    return objective


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    import optuna
    import tinysweep
    from tinysweep.trainer.spec.config import load_config
    from tinysweep.trainer.pipeline.sweep import config_data
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for sampler in ("tpe", "random"):
        t = time.perf_counter()
        study = tinysweep.tune(SPACE, trials=args.trials, batch=args.batch, sampler=sampler)
        seconds = time.perf_counter() - t
        print(f"tinysweep tune, {sampler}, batch {args.batch}: best val loss "
              f"{study.best_value:.4g} after {args.trials} trials; {args.trials / seconds:.2f} "
              f"trials/s ({seconds:.1f} s)", flush=True)
    data = config_data(load_config(SPACE))
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    t = time.perf_counter()
    study.optimize(plain_objective(data), n_trials=args.trials)
    seconds = time.perf_counter() - t
    print(f"optuna optimize, tpe, one trial per call, plain PyTorch: best val loss "
          f"{study.best_value:.4g} after {args.trials} trials; {args.trials / seconds:.2f} "
          f"trials/s ({seconds:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
