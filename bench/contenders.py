"""What tinysweep is measured against, each on the same device, in the same process.

- ``per_run_loop``: the loop a user would write, one nn.Module and one torch.optim optimizer
  per run, a Python loop over epochs and batches: tinysweep's reference backend is exactly
  that (``reference.train_run``), so the loop is timed through it.
- ``lean_loop``: the same loop with nothing a sweep tool adds (no curves kept, no state
  copied, no divergence check): the model, its optimizer, a permutation per epoch, and the
  training loss once per epoch, as a user would print it.
- ``func_ensemble``: torch.func model ensembling, ``stack_module_state`` + ``vmap(grad(
  functional_call))`` with Adam written on the stacked parameters and a per-run lr, eager or
  under ``torch.compile``. vmap needs one batch shape, so runs are grouped by batch size
  (each group one vmap call per step); every run still reads its own rows.

Both are timed on a slice and extrapolated (see bench/run.py).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from tinysweep.trainer.backends import reference
from tinysweep.trainer.backends.backend import Chunk, steps_per_epoch
from tinysweep.trainer.spec.model import pointwise_loss, seeded_model
from tinysweep.trainer.spec.order import epoch_order


def per_run_loop(chunk: Chunk, picked: list[int], device: str = "cpu") -> float:
    """Seconds to train runs ``picked`` of the chunk one after the other on ``device``."""
    start = time.perf_counter()
    for i in picked:
        reference.train_run(chunk, chunk.runs.row(i), device)
    return time.perf_counter() - start


def lean_loop(chunk: Chunk, picked: list[int], device: str = "cpu") -> float:
    """Seconds to train runs ``picked`` of the chunk one after the other with the leanest
    correct loop: no per-run bookkeeping, the training loss evaluated once per epoch."""
    spec, data = chunk.model, chunk.data
    x, y = data.x_train.to(device), data.y_train.to(device)
    n = data.n_train
    start = time.perf_counter()
    for i in picked:
        run = chunk.runs.row(i)
        stats = data.standardization() if run.input_norm == "standardize" else None
        model = seeded_model(run.seed, data.n_features, spec.hidden, spec.activation,
                             run.input_norm, stats).to(device)
        opt = reference.make_optimizer(run, model.parameters())
        sched = (torch.optim.lr_scheduler.StepLR(opt, run.step_size, run.gamma)
                 if run.lr_schedule == "step" else None)
        gen = torch.Generator().manual_seed(run.seed)
        for _ in range(run.epochs):
            model.train()
            order = torch.randperm(n, generator=gen) if run.shuffle else torch.arange(n)
            for lo in range(0, n, run.batch_size):
                rows = order[lo:lo + run.batch_size]
                loss = pointwise_loss(model(x[rows]).squeeze(-1), y[rows], spec.loss).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            if sched is not None:
                sched.step()
            model.eval()
            with torch.no_grad():
                pointwise_loss(model(x).squeeze(-1), y, spec.loss).mean().item()
    return time.perf_counter() - start


def func_ensemble(chunk: Chunk, runs: list[int], steps: int, compiled: bool,
                  device: str = "cpu") -> dict:
    """Times ``steps`` Adam steps of runs ``runs`` (one batch size) trained as one
    torch.func ensemble. Returns seconds per step (warm) and the warm-up/compile seconds.

    On CUDA the compiled step is captured in CUDA graphs (mode "reduce-overhead"), the
    fastest torch.compile mode for steps of many small kernels."""
    spec, data = chunk.model, chunk.data
    group = chunk.runs[np.asarray(runs, dtype=np.int64)].rows()
    bs = group[0].batch_size
    assert all(r.batch_size == bs for r in group), "one batch size per ensemble"
    norm = group[0].input_norm
    stats = data.standardization() if norm == "standardize" else None
    models = [seeded_model(r.seed, data.n_features, spec.hidden, spec.activation, norm, stats)
              for r in group]
    params, buffers = torch.func.stack_module_state(models)
    params = {k: v.to(device) for k, v in params.items()}
    buffers = {k: v.to(device) for k, v in buffers.items()}
    base = copy.deepcopy(models[0])
    if norm == "batchnorm":   # vmap cannot update running stats in place: batch stats only
        torch.func.replace_all_batch_norm_modules_(base)
    base = base.to(device)
    lr = torch.tensor([r.lr for r in group], device=device)

    def loss_fn(p, b, x, y):
        z = torch.func.functional_call(base, (p, b), (x,)).squeeze(-1)
        return pointwise_loss(z, y, spec.loss).mean()

    grads_of = torch.vmap(torch.func.grad(loss_fn), in_dims=(0, 0, 0, 0))

    def step(p, m, v, t, x, y):
        g = grads_of(p, buffers, x, y)
        new_p, new_m, new_v = {}, {}, {}
        for k in p:
            shape = (len(group),) + (1,) * (p[k].dim() - 1)
            new_m[k] = 0.9 * m[k] + 0.1 * g[k]
            new_v[k] = 0.999 * v[k] + 0.001 * g[k] * g[k]
            denom = (new_v[k] / (1 - torch.pow(0.999, t))).sqrt() + 1e-8
            new_p[k] = p[k] - lr.view(shape) * (new_m[k] / (1 - torch.pow(0.9, t))) / denom
        return new_p, new_m, new_v

    if not compiled:
        run_step = step
    elif device != "cuda":
        run_step = torch.compile(step)
    else:
        graphed_step = torch.compile(step, mode="reduce-overhead")

        def run_step(*args):
            # one replay's outputs feed the next, which overwrites the graph's buffers
            torch.compiler.cudagraph_mark_step_begin()
            return tuple({k: t.clone() for k, t in d.items()} for d in graphed_step(*args))
    x_all, y_all = data.x_train.to(device), data.y_train.to(device)
    n = data.n_train
    width = min(bs, n)
    orders = torch.stack([torch.from_numpy(epoch_order(r.seed, 0, n, r.shuffle))
                          for r in group]).to(device)                   # [R, n]
    m = {k: torch.zeros_like(v) for k, v in params.items()}
    v = {k: torch.zeros_like(t) for k, t in params.items()}
    full = max(1, n // width)                  # full batches of an epoch: one batch shape

    def batch(s):
        rows = orders[:, (s % full) * width:(s % full) * width + width]     # [R, B]
        return x_all[rows], y_all[rows]

    counts = [torch.tensor(float(t), device=device) for t in range(1, steps + 3)]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    start = time.perf_counter()
    for s in range(2):                         # warm-up (and compile)
        params, m, v = run_step(params, m, v, counts[s], *batch(s))
    sync()
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for s in range(2, steps + 2):
        params, m, v = run_step(params, m, v, counts[s], *batch(s))
    sync()
    per_step = (time.perf_counter() - start) / steps
    return {"seconds_per_step": per_step, "warmup_seconds": warm}


def ensemble_steps(chunk: Chunk) -> dict[int, int]:
    """Batch size -> the vmap steps its group of runs takes (the longest run's)."""
    n, runs = chunk.data.n_train, chunk.runs
    batch, epochs = np.asarray(runs.batch_size), np.asarray(runs.epochs)
    return {int(b): int(epochs[batch == b].max()) * int(steps_per_epoch(n, b))
            for b in np.unique(batch)}


def spread(n_items: int, k: int) -> list[int]:
    """k indices spread evenly over range(n_items)."""
    return sorted(set(np.linspace(0, n_items - 1, min(k, n_items)).round().astype(int).tolist()))
