"""The reference backend: one nn.Module and one torch.optim optimizer per run, in a loop.

This file *defines* tinysweep's training semantics; every other backend is tested against
it run by run. Keep it short and obviously right:

- each epoch visits the training rows in ``order.epoch_order(seed, epoch, n, shuffle)``, in
  consecutive batches of ``batch_size`` (the last one smaller); the loss is the batch mean;
  one optimizer step per batch; StepLR, when asked for, steps at the end of each epoch;
- after every ``eval_every``-th epoch and the last one, the model is evaluated in eval mode
  on the whole training split (and the validation split);
- a run whose weights or evaluated training loss are non-finite at an evaluation is marked
  diverged and trained no further; ``steps`` counts the steps it took up to then;
- a chunk with a ``start`` state (backend.RunState) goes on from it: its weights, buffers and
  optimizer state loaded, its step count Adam's, StepLR at its epoch (``_load_state``),
  epochs ``start.epoch``..``epochs`` trained as above; 0->E1 then E1->E2 is 0->E2 bit for bit;
- a run's ``bug`` (config.BUGS) trains it as code with that mistake would: the buggy line
  is written out in ``train_run``. Evaluations stay the task's true loss (and accuracy).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .backend import Chunk, ChunkResult, RunState, stack_rows, stepped_lr
from ..spec.config import RunParams
from ..spec.model import accuracy, pointwise_loss, predictions, seeded_model
from ..spec.order import epoch_order


def make_optimizer(run: RunParams, params) -> torch.optim.Optimizer:
    if run.optimizer == "sgd":
        return torch.optim.SGD(params, lr=run.lr, momentum=run.momentum,
                               nesterov=run.nesterov, weight_decay=run.weight_decay)
    kind = torch.optim.Adam if run.optimizer == "adam" else torch.optim.AdamW
    return kind(params, lr=run.lr, betas=(run.beta1, run.beta2), eps=run.eps,
                weight_decay=run.weight_decay)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str,
             n_outputs: int = 1) -> dict[str, float]:
    """Mean loss (and accuracy: bce_with_logits predicts 1 where the logit is > 0,
    cross_entropy the argmax) in eval mode."""
    model.eval()
    z = predictions(model(x), n_outputs)
    out = {"loss": pointwise_loss(z, y, loss).mean().item()}
    if loss != "mse":
        out["accuracy"] = accuracy(z, y, loss).mean().item()
    return out


def _finite(model: nn.Module) -> bool:
    return all(torch.isfinite(t).all() for t in model.state_dict().values())


def _load_state(start: RunState, i: int, run: RunParams, model: nn.Module, opt, sched) -> int:
    """Puts run i of ``start`` into a fresh model, optimizer and scheduler: the state_dict,
    the optimizer's state (Adam's step as the float32 tensor torch.optim keeps), the
    accumulated gradients of no_zero_grad, StepLR at the start epoch. Returns its steps."""
    own = model.state_dict()
    model.load_state_dict({name: torch.from_numpy(start.entry("model", name, i, value.shape))
                           for name, value in own.items()})
    steps = int(start.steps[i])
    for name, p in model.named_parameters():
        state = {}
        for key in ("exp_avg", "exp_avg_sq", "momentum_buffer"):
            value = start.entry("optim", f"{key}.{name}", i, p.shape)
            if value is not None:
                state[key] = torch.from_numpy(value.copy()).to(p.device)
        if run.optimizer != "sgd" and steps > 0:
            state["step"] = torch.tensor(float(steps))
        if state:
            opt.state[p] = state
        grad = start.entry("optim", f"grad_sum.{name}", i, p.shape)
        if grad is not None:
            p.grad = torch.from_numpy(grad.copy()).to(p.device)
    if sched is not None:       # as if stepped at the end of each epoch so far
        epoch = int(start.epoch[i])
        sched.last_epoch = epoch
        for group in opt.param_groups:
            group["lr"] = float(stepped_lr(run.lr, run.gamma, run.step_size, True, epoch)[0])
    return steps


def train_run(chunk: Chunk, run: RunParams, device="cpu", i: int = 0):
    """Trains one run (run ``i`` of the chunk, whose ``start`` state it goes on from, if
    any) on ``device`` (the CPU, except for bench/run.py's per-run loop on a GPU). Returns
    (init state, final state, optimizer state, curves, diverged, steps), on the CPU."""
    data, spec = chunk.data, chunk.model
    stats = data.standardization() if run.input_norm == "standardize" else None
    k = data.n_outputs
    model = seeded_model(run.seed, data.n_features, run.hidden, run.activation,
                         run.input_norm, stats, k)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    model.to(device)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    splits = [("train", x_train, y_train), ("val", data.x_val.to(device), data.y_val.to(device))]
    opt = make_optimizer(run, model.parameters())
    sched = (torch.optim.lr_scheduler.StepLR(opt, run.step_size, run.gamma)
             if run.lr_schedule == "step" else None)
    curves = {m: np.full(len(chunk.eval_epochs), np.nan, np.float32) for m in chunk.metrics()}
    n, steps, diverged, first = data.n_train, 0, False, 0
    if chunk.start is not None:
        steps = _load_state(chunk.start, i, run, model, opt, sched)
        first = int(chunk.start.epoch[i])

    for epoch in range(first, run.epochs):
        model.train()
        order = torch.from_numpy(epoch_order(run.seed, epoch, n, run.shuffle)).to(device)
        for start in range(0, n, run.batch_size):
            rows = order[start:start + run.batch_size]
            z, y = predictions(model(x_train[rows]), k), y_train[rows]   # [B] or [B, k]
            if run.bug == "target_broadcast":
                # a Dataset returning each target as [1, k]: predictions [B, k], targets
                # [B, 1, k], and the loss broadcasts them to [B, B, k], every pair
                z, y = z.view(len(z), -1), y.view(len(y), 1, -1)
            elif run.bug == "double_sigmoid":
                z = torch.sigmoid(z)      # the model ends in nn.Sigmoid(), and the loss is
                # BCE-with-logits, which applies a sigmoid of its own
            losses = pointwise_loss(z, y, spec.loss)
            loss = losses.sum() if run.bug == "loss_sum" else losses.mean()   # .sum(): the
            # step grows with the batch
            if run.bug != "no_zero_grad":   # without it, each step applies the sum of
                opt.zero_grad()             # every gradient so far
            loss.backward()
            opt.step()
            steps += 1
        if sched is not None:
            sched.step()
        if chunk.is_eval_epoch(epoch + 1, run):
            for split, x, y in splits:
                if len(x) == 0:
                    continue
                for metric, value in evaluate(model, x, y, spec.loss, k).items():
                    curves[f"{split}_{metric}"][chunk.column(epoch + 1)] = value
            # Once non-finite, weights stay so (NaN and inf only spread), so checking at
            # evaluations alone decides the same runs, at the same step, on every backend.
            if not np.isfinite(curves["train_loss"][chunk.column(epoch + 1)]) or not _finite(model):
                diverged = True
                break

    optim = {}
    names = {p: name for name, p in model.named_parameters()}
    for p, state in opt.state.items():
        for key, value in state.items():
            if key != "step":
                optim[f"{key}.{names[p]}"] = value.cpu()
    if run.bug == "no_zero_grad":       # the gradients' running sum: state to go on from
        for name, p in model.named_parameters():
            if p.grad is not None:
                optim[f"grad_sum.{name}"] = p.grad.cpu()
    final = {k: v.cpu() for k, v in model.state_dict().items()}
    return init, final, optim, curves, diverged, steps


def train(chunk: Chunk, progress=None) -> ChunkResult:
    """Trains every run of the chunk, one after the other, on the CPU."""
    inits, finals, optims, curves, diverged, steps = [], [], [], [], [], []
    for i in range(len(chunk.runs)):         # the reference is the per-run loop
        run = chunk.runs.row(i)
        init, final, optim, curve, div, n_steps = train_run(chunk, run, i=i)
        inits.append(init)
        finals.append(final)
        optims.append(optim)
        curves.append(curve)
        diverged.append(div)
        steps.append(n_steps)
        if progress is not None:
            progress(1)
    return ChunkResult(
        curves={m: np.stack([c[m] for c in curves]) for m in chunk.metrics()},
        diverged=np.array(diverged, dtype=bool),
        steps=np.array(steps, dtype=np.int64),
        init=stack_rows(inits), final=stack_rows(finals), optim=stack_rows(optims))
