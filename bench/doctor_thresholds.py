"""Calibrates the doctor's thresholds (trainer/insight/doctor_checks.py): trains randomized small
PyTorch runs in this process, healthy ones and ones with one injected bug each, every run
under tinysweep.doctor.watch(), and prints

  - per statistic, its range over the healthy runs and over the buggy runs of its class
    (the figure each threshold is set from),
  - per class, how many buggy runs are caught, and how many healthy runs are flagged.

    python bench/doctor_thresholds.py [--healthy 200] [--buggy 12] [--seed 0]

A healthy run: data from a random task (regression, binary, 3-5 classes; noisy), a 1- to
4-hidden-layer MLP (ReLU, tanh, or sigmoid up to 2 layers), Adam or SGD (with or without
momentum) at a learning rate drawn within the range where such a model trains, batches of
16 to 64, shuffled, 4 to 12 epochs, a 25% validation split evaluated in eval mode under
no_grad each epoch; some with dropout, BatchNorm, a warm-up, a per-epoch StepLR, a cosine
schedule stepped per batch over the whole run, or gradient accumulation. A buggy run is one
such run with one mistake put in.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tinysweep.trainer.insight import doctor

LEARNED = 0.9       # a run learned when its last validation loss is under 0.9 x chance's

BUGS = ["not_updated", "no_grad_flow", "eval_mode_training", "train_mode_eval",
        "class_target_mse", "bce_target_range", "class_target_range", "nll_no_log_softmax",
        "vanishing_gradient", "update_ratio", "lr_schedule", "symmetric_init", "data_order",
        "stuck_at_chance", "overfitting", "eval_leak", "no_step"]


def make_data(rng: random.Random, task: str, n: int, gen: torch.Generator):
    d = rng.choice([2, 3, 5, 8])
    x = torch.randn(n, d, generator=gen)
    noise = rng.choice([0.05, 0.2, 0.5])
    if task == "regression":
        w = torch.randn(d, 1, generator=gen)
        y = torch.sin(x @ w) + noise * torch.randn(n, 1, generator=gen)
        return x, y, 1
    if task == "binary":
        w = torch.randn(d, generator=gen)
        z = x @ w + (x[:, 0] * x[:, 1] if rng.random() < 0.5 else 0)
        y = ((z + noise * 2 * torch.randn(n, generator=gen)) > 0).float().unsqueeze(1)
        return x, y, 1
    k = rng.choice([3, 4, 5])
    centers = 2.5 * torch.randn(k, d, generator=gen)
    y = torch.randint(0, k, (n,), generator=gen)
    x = centers[y] + (0.5 + noise * 2) * torch.randn(n, d, generator=gen)
    x = (x - x.mean(0)) / x.std(0)
    return x, y, k


def train(cfg: dict, bug: str | None) -> None:
    """One run, as a careful script would write it (plus the bug)."""
    rng = random.Random(cfg["seed"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    task = cfg["task"]
    if bug in ("class_target_mse", "class_target_range", "nll_no_log_softmax", "data_order"):
        task = "classes"
    if bug == "bce_target_range":
        task = "binary"
    if bug == "overfitting":
        cfg = {**cfg, "n": 50, "epochs": 60, "width": 256, "depth": 2, "act": "relu",
               "noise_labels": True, "opt": "adam", "lr": 3e-3, "batch": 16, "dropout": 0,
               "accumulate": 1, "sched": None, "bn": False}
    n = cfg["n"]
    x, y, k = make_data(rng, task, n, gen)
    if cfg.get("noise_labels"):
        flip = torch.rand(n, generator=gen) < 0.3
        shuffled = y[torch.randperm(n, generator=gen)]
        y = torch.where(flip.view(-1, *([1] * (y.dim() - 1))), shuffled, y)
    if bug == "stuck_at_chance":
        y = y[torch.randperm(n, generator=gen)]             # labels no longer match the rows
    nv = n // 4
    xt, yt, xv, yv = x[nv:], y[nv:], x[:nv], y[:nv]
    if bug == "data_order":
        order = torch.argsort(yt, stable=True)
        xt, yt = xt[order], yt[order]
    outputs = k if task == "classes" else 1
    if bug == "class_target_mse":
        outputs = 1
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[cfg["act"]]
    depth = cfg["depth"]
    if bug == "vanishing_gradient":
        act, depth = nn.Sigmoid, 8
    layers, width = [], cfg["width"]
    fan = x.shape[1]
    for i in range(depth):
        layers.append(nn.Linear(fan, width))
        if cfg["bn"] or bug == "eval_mode_training" and i == 0:
            layers.append(nn.BatchNorm1d(width))
        layers.append(act())
        if cfg["dropout"] or bug in ("eval_mode_training", "train_mode_eval") and i == 0:
            layers.append(nn.Dropout(0.2))
        fan = width
    layers.append(nn.Linear(fan, outputs))
    if bug == "nll_no_log_softmax":
        pass                                                # raw scores into nll_loss
    model = nn.Sequential(*layers)
    if bug == "symmetric_init":
        for m in model:
            if isinstance(m, nn.Linear):
                nn.init.constant_(m.weight, 0.1)
                nn.init.zeros_(m.bias)
    lr = cfg["lr"]
    if bug == "update_ratio":
        lr = lr * 1e-5
    params = list(model.parameters())
    if bug == "not_updated":
        params = list(model[-1].parameters())               # the optimizer misses the body
    opt = (torch.optim.Adam(params, lr=lr) if cfg["opt"] == "adam" else
           torch.optim.SGD(params, lr=lr, momentum=cfg["momentum"]))
    batches = math.ceil(len(xt) / cfg["batch"])
    sched = None
    if bug == "lr_schedule":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)   # per batch
    elif cfg["sched"] == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, cfg["epochs"] // 3),
                                                gamma=0.3)
    elif cfg["sched"] == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg["epochs"] * batches)
    elif cfg["sched"] == "warmup":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / batches))

    def loss_fn(out, target):
        if bug == "class_target_mse":
            return F.mse_loss(out, target.float().unsqueeze(1))
        if bug == "nll_no_log_softmax":
            return F.nll_loss(out, target)
        if bug == "class_target_range":
            return F.cross_entropy(out, target + 1)
        if task == "classes":
            if cfg["nll"]:
                return F.nll_loss(F.log_softmax(out, 1), target)
            return F.cross_entropy(out, target)
        if task == "binary":
            return F.binary_cross_entropy_with_logits(out, target * 2 - 1 if bug ==
                                                      "bce_target_range" else target)
        return F.mse_loss(out, target)

    accumulate = cfg["accumulate"]
    model.train()
    if bug == "eval_mode_training":
        model.eval()
    step = 0
    val = math.nan
    for epoch in range(cfg["epochs"]):
        if bug != "eval_mode_training":
            model.train()
        perm = (torch.arange(len(xt)) if bug == "data_order"
                else torch.randperm(len(xt), generator=gen))
        opt.zero_grad()
        for b in range(batches):
            idx = perm[b * cfg["batch"]:(b + 1) * cfg["batch"]]
            loss = loss_fn(model(xt[idx]), yt[idx])
            if bug == "no_grad_flow":
                loss = torch.tensor(loss.item(), requires_grad=True)
            (loss / accumulate).backward()
            if (b + 1) % accumulate == 0 or b == batches - 1:
                if bug != "no_step":
                    opt.step()
                opt.zero_grad()
                step += 1
                if sched is not None and (bug == "lr_schedule" or cfg["sched"] in
                                          ("cosine", "warmup")):
                    sched.step()
        if sched is not None and cfg["sched"] == "step" and bug != "lr_schedule":
            sched.step()
        if bug != "train_mode_eval":
            model.eval()
        with torch.no_grad():
            if bug == "eval_leak":
                loss_fn(model(xt[:nv]), yt[:nv])
            else:
                val = float(loss_fn(model(xv), yv))
    # the validation loss against the best constant predictor's: did the run learn?
    if task == "classes":
        chance = -sum(q * math.log(q) for q in torch.bincount(yv).float() / len(yv) if q > 0)
    elif task == "binary":
        q = float(yv.mean())
        chance = -sum(r * math.log(r) for r in (q, 1 - q) if 0 < r < 1)
    else:
        chance = float(yv.var(unbiased=False))
    return val / float(chance)


def draw(rng: random.Random, seed: int) -> dict:
    opt = rng.choice(["adam", "adam", "sgd"])
    act = rng.choice(["relu", "relu", "tanh", "sigmoid"])
    depth = 1 if act == "sigmoid" else rng.choice([1, 2, 3, 4])
    momentum = rng.choice([0.0, 0.9])
    # within the range where such a model learns in a few epochs (Adam: 3e-3 to 3e-2; SGD:
    # 0.03 to 0.3, a tenth with momentum 0.9)
    lr = (10 ** rng.uniform(-2.5, -1.5) if opt == "adam" else
          10 ** rng.uniform(-1.5, -0.5) * (0.1 if momentum else 1))
    return {"seed": seed, "task": rng.choice(["regression", "binary", "classes"]),
            "n": rng.choice([256, 512, 1024]), "width": rng.choice([8, 16, 32, 64]),
            "depth": depth, "act": act, "opt": opt, "lr": lr, "momentum": momentum,
            "batch": rng.choice([16, 32, 64]), "epochs": rng.choice([6, 8, 12]),
            "bn": rng.random() < 0.15, "dropout": rng.random() < 0.2,
            "sched": rng.choice([None, None, None, "step", "cosine", "warmup"]),
            "accumulate": rng.choice([1, 1, 1, 4]), "nll": rng.random() < 0.3}


def watched(cfg, bug):
    """The Doctor of one run; a run that raises (torch refusing the bug) keeps its."""
    with doctor.watch(live=False) as d:
        try:
            d.learned = train(cfg, bug) < LEARNED
        except Exception as e:              # noqa: BLE001 -- the bug's own error
            d.raised = f"{type(e).__name__}: {e}"
    return d


def quantiles(values) -> str:
    if not values:
        return "-"
    q = np.quantile(values, [0, 0.01, 0.5, 0.99, 1])
    return " ".join(f"{v:.3g}" for v in q)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--healthy", type=int, default=200)
    ap.add_argument("--buggy", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    stats: dict[str, list] = {}
    flagged, flagged_learned = Counter(), Counter()
    flagged_runs = learned = 0
    runs = []                               # (learned, stats) per healthy run
    for i in range(args.healthy):
        cfg = draw(rng, 1000 + i)
        d = watched(cfg, None)
        runs.append((d.learned, d.stats))
        for name, values in d.stats.items():
            stats.setdefault(name, []).extend(values)
        kinds = {f.kind for f in d.findings}
        flagged.update(kinds)
        flagged_runs += bool(kinds)
        learned += d.learned
        if d.learned:
            flagged_learned.update(kinds)
        if kinds:
            shown = {k: [round(v, 3) for v in vs] for k, vs in d.stats.items()
                     if k in ("loss_over_chance", "stuck_trend", "overfit_rise")}
            print(f"healthy run {i} flagged {sorted(kinds)} (learned: {d.learned}): {cfg} "
                  f"{shown}")
    print(f"\n{args.healthy} healthy runs in {time.perf_counter() - t0:.0f} s; "
          f"{flagged_runs} flagged ({flagged_runs / args.healthy:.1%}): {dict(flagged)}; "
          f"{learned} learned (validation loss < {LEARNED} x chance), findings on those: "
          f"{dict(flagged_learned)}")
    print("\nhealthy statistics (min, 1%, median, 99%, max):")
    for name, values in sorted(stats.items()):
        print(f"  {name:24s} n={len(values):5d}  {quantiles(values)}")
    print("\nthresholds tried on the healthy runs that learned (share of those flagged):")
    learned_runs = [st for ok, st in runs if ok]
    for name, test, tries in (
            ("loss_over_chance", lambda v, t: abs(v - 1) <= t, (0.02, 0.05, 0.1)),
            ("overfit_rise", lambda v, t: v >= t, (1.2, 1.3, 1.5, 2.0)),
            ("update_ratio", lambda v, t: v > t, (0.1, 0.2, 0.5)),
            ("grad_first_last", lambda v, t: v < t, (1e-2, 1e-3, 1e-4)),
            ("grad_growth", lambda v, t: v > t, (1e2, 1e3, 1e4))):
        shares = [sum(any(test(v, t) for v in st.get(name, [])) for st in learned_runs)
                  / max(len(learned_runs), 1) for t in tries]
        print(f"  {name:18s} " + "  ".join(f"{t:g}: {sh:.1%}" for t, sh in zip(tries, shares)))
    print("\nbuggy runs: caught / runs (the statistic's quantiles over them)")
    for bug in BUGS:
        caught, bstats = 0, {}
        for j in range(args.buggy):
            cfg = draw(rng, 5000 + j)
            if bug in ("vanishing_gradient", "symmetric_init"):
                cfg.update(bn=False, dropout=False)     # either breaks the symptom itself
            d = watched(cfg, bug)
            hit = bug in {f.kind for f in d.findings}
            caught += hit
            if not hit:
                print(f"  missed {bug}: {cfg} {getattr(d, 'raised', '')}")
            for name, values in d.stats.items():
                bstats.setdefault(name, []).extend(values)
        key = {"update_ratio": "update_ratio", "vanishing_gradient": "grad_first_last",
               "lr_schedule": "lr_dead_share", "stuck_at_chance": "loss_over_chance",
               "data_order": "batch_mix_excess", "overfitting": "overfit_rise",
               "symmetric_init": "symmetric_spread",
               "eval_mode_training": "eval_backward_share"}.get(bug)
        extra = f"  {key}: {quantiles(bstats.get(key, []))}" if key else ""
        print(f"  {bug:22s} {caught:3d} / {args.buggy}{extra}")


if __name__ == "__main__":
    main()
