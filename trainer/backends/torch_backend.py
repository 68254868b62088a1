"""The torch backend: all runs of a chunk trained together, with ordinary PyTorch ops.

Every run's parameters live in one row of a flat ``[R, P]`` tensor (views give each layer's
``[R, out, in]`` weight and ``[R, out]`` bias); gradients and optimizer state are ``[R, P]``
too, and every per-run hyperparameter is an ``[R, 1]`` tensor, so one optimizer step of all
runs is a handful of ops whatever the depth.

Runs step in lockstep: global step ``t`` is every active run's step ``t + 1`` (counted from
where it starts: epoch ``e0_r``, after ``k0_r`` steps, for a chunk with a start state; 0
otherwise). Run ``r``'s step ``t`` is batch ``u % spe_r`` of epoch ``u // spe_r``, ``u = t +
e0_r spe_r`` (``spe_r = ceil(n / batch_size_r)``), and Adam's step ``k0_r + t + 1``,
so runs with different batch sizes and shuffles share each launch: each run's batch is
gathered into a ``[R, B]`` slab padded to the widest batch ``B``, with per-row weights
``1 / rows_in_batch`` (0 on padding), so the padded rows add nothing to any gradient. A run
leaves the active set when its steps are done (or it diverges), and the slab narrows.

The forward and backward passes are written out (no autograd) for the MLP

    h_0 = norm(x);   z_i = h_{i-1} W_i^T + b_i;   h_i = act(z_i)   (i < L);   out = z_L

    dL/dz_L = w * loss'(out, y)            (mse: 2 (out - y); bce: sigmoid(out) - y)
    dL/dW_i = dz_i^T h_{i-1},  dL/db_i = sum_rows dz_i,  dz_{i-1} = (dz_i W_i) * act'(h_{i-1})

and, for batchnorm on the input (batch statistics over the run's real rows),
``dL/dgamma = sum_rows dh_0 * xhat``, ``dL/dbeta = sum_rows dh_0``.

Runs are trained in groups that share the architecture (hidden widths and activation),
the input normalization, the optimizer family (sgd, or adam/adamw) and the bug
(config.BUGS), so each step runs only the ops its group needs.
A bug is its math: ``target_broadcast``'s loss over every (prediction, target) pair of a
batch has the gradient of the loss against the batch's mean target; ``double_sigmoid``
puts a sigmoid's chain rule before the loss's; ``loss_sum`` drops the 1 / rows of the
mean; ``no_zero_grad`` keeps a running sum of the gradients, which the optimizer reads. Steps are processed
in blocks: the batches, per-step learning rates and bias corrections of a block are
computed in a few vectorized ops before its steps run; the evaluation snapshots taken in a
block (weights, optimizer and batchnorm state) are evaluated together at its end. A run
whose snapshot has non-finite weights or training loss is then rolled back to that
snapshot and frozen: exactly where the reference, which checks at evaluations, stops it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .backend import Chunk, ChunkResult, RunState, corner, put_rows, steps_per_epoch
from ..spec.model import (Standardize, accuracy, layer_sizes, linear_names, pointwise_loss,
                    predictions, seeded_model)
from ..spec.order import permutations
from ..spec.runs import Runs, is_constant

BN_EPS, BN_MOMENTUM = 1e-5, 0.1      # nn.BatchNorm1d's defaults
# Steps per block, at most: enough to amortize a block's set-up (a few hundred us) over
# steps of a few tens of us, few enough that a diverged run is dropped soon.
MAX_BLOCK_STEPS = 256
# Elements of a block's gathered batches ([steps, runs, rows]) and of an evaluation
# ([snapshots, rows, width]): bounds memory to a few hundred MB whatever the sweep.
BLOCK_ELEMENTS = 1 << 22
EVAL_ELEMENTS = 1 << 23


@dataclass(frozen=True)
class Layout:
    """Where each named parameter lives in a run's flat parameter row."""

    names: list[str]
    shapes: list[tuple[int, ...]]
    offsets: list[int]
    size: int

    @staticmethod
    def of(n_features: int, hidden, batchnorm: bool, n_outputs: int = 1) -> Layout:
        names, shapes = [], []
        if batchnorm:
            names += ["0.weight", "0.bias"]
            shapes += [(n_features,), (n_features,)]
        for name, (fan_in, fan_out) in zip(linear_names(len(hidden) + 1),
                                           layer_sizes(n_features, hidden, n_outputs)):
            names += [f"{name}.weight", f"{name}.bias"]
            shapes += [(fan_out, fan_in), (fan_out,)]
        sizes = [math.prod(s) for s in shapes]
        offsets = [int(o) for o in np.cumsum([0] + sizes[:-1])]
        return Layout(names, shapes, offsets, int(sum(sizes)))

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """name -> view [R, *shape] of a flat [R, P] tensor."""
        return {name: flat[:, off:off + math.prod(shape)].view(flat.shape[0], *shape)
                for name, shape, off in zip(self.names, self.shapes, self.offsets)}


def _softmax_last(z: torch.Tensor) -> torch.Tensor:
    """softmax over the last dim of z [K, B, k], computed over dim 1 of its transposed copy:
    torch's CPU softmax over a last dim of 10 took 248 us for [24, 128, 10] (490 on one
    thread), over the middle dim of the contiguous [24, 10, 128] 14.5 (2-core Xeon,
    2026-12-06); digits' 72-run grid on this backend: 3.64 s against 4.18."""
    if z.device.type != "cpu" or z.dim() != 3:
        return torch.softmax(z, dim=-1)
    return torch.softmax(z.transpose(1, 2).contiguous(), dim=1).transpose(1, 2)


# Layers with one input or one output are products and sums over broadcast dimensions, not
# batched matmuls: baddbmm of [200, 1000, 1] x [200, 1, 1] takes 480 us on this 2-core CPU,
# the equivalent addcmul 53 us (4.2 us vs 3.6 us at [2, 10, 1]).
def _linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """h [K, B, in], weight [K, out, in], bias [K, 1, out] -> h W^T + b, [K, B, out]."""
    fan_out, fan_in = weight.shape[1:]
    if fan_in == 1:
        return torch.addcmul(bias, h, weight.transpose(1, 2))
    if fan_out == 1:
        return (h * weight).sum(dim=-1, keepdim=True).add_(bias)
    return torch.baddbmm(bias, h, weight.transpose(1, 2))


def _weight_grad(dz: torch.Tensor, h: torch.Tensor, out: torch.Tensor) -> None:
    """dz [K, B, out], h [K, B, in] -> dz^T h, written into out [K, out * in]."""
    if dz.shape[-1] == 1 or h.shape[-1] == 1:
        torch.sum(dz * h, dim=1, out=out)
    else:
        torch.bmm(dz.transpose(1, 2), h, out=out.view(-1, dz.shape[-1], h.shape[-1]))


def _input_grad(dz: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """dz [K, B, out], weight [K, out, in] -> dz W, [K, B, in]."""
    if weight.shape[1] == 1:
        return dz * weight
    return torch.bmm(dz, weight)


def batch_stats(x: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor):
    """Mean and biased variance over each batch's real rows, both [K, 1, d], summed then
    divided as BatchNorm1d does (a constant feature gets variance 0, not rounding noise that
    1/sqrt(eps) would amplify). x [K, B, d]; mask [K, B, 1] is 1 on real rows; rows [K, 1, 1]."""
    mean = (x * mask).sum(dim=1, keepdim=True).div_(rows)
    var = (x - mean).square_().mul_(mask).sum(dim=1, keepdim=True).div_(rows)
    return mean, var


class Net:
    """The vectorized MLP: forward and hand-written backward over K stacked runs.

    Parameters come as ``Net.views(flat)``: per Linear layer (weight [K, out, in], bias
    [K, 1, out]) and, for batchnorm, (gamma, beta) [K, 1, d]; gradients as
    ``Net.grad_views(flat)``: the same entries, flattened to [K, size].
    """

    def __init__(self, chunk: Chunk, input_norm: str, bug: str = "none", hidden=None,
                 activation: str | None = None):
        self.bug = bug                  # the group's (config.BUGS): see output_grad
        self.hidden = tuple(chunk.model.hidden if hidden is None else hidden)
        self.activation = activation or chunk.model.activation
        self.loss = chunk.model.loss
        self.n_outputs = chunk.data.n_outputs
        self.batchnorm = input_norm == "batchnorm"
        self.layout = Layout.of(chunk.data.n_features, self.hidden, self.batchnorm,
                                self.n_outputs)
        self.linears = linear_names(len(self.hidden) + 1)

    def views(self, flat: torch.Tensor) -> dict:
        named = self.layout.views(flat)
        out = {"layers": [(named[f"{n}.weight"], named[f"{n}.bias"].unsqueeze(1))
                          for n in self.linears]}
        if self.batchnorm:
            out["bn"] = (named["0.weight"].unsqueeze(1), named["0.bias"].unsqueeze(1))
        return out

    def grad_views(self, flat: torch.Tensor) -> dict:
        named = {k: v.view(v.shape[0], -1) for k, v in self.layout.views(flat).items()}
        out = {"layers": [(named[f"{n}.weight"], named[f"{n}.bias"]) for n in self.linears]}
        if self.batchnorm:
            out["bn"] = (named["0.weight"], named["0.bias"])
        return out

    def _act(self, z: torch.Tensor) -> torch.Tensor:
        if self.activation == "sigmoid":
            return torch.sigmoid(z)
        if self.activation == "tanh":
            return torch.tanh(z)
        return torch.relu(z)

    def _act_grad(self, h: torch.Tensor) -> torch.Tensor:
        """act'(z) from h = act(z)."""
        if self.activation == "sigmoid":
            return h * (1 - h)
        if self.activation == "tanh":
            return 1 - h * h
        return (h > 0).to(h.dtype)

    def forward(self, p: dict, x: torch.Tensor, norm=None):
        """Outputs [K, B, n_outputs] and what the backward pass needs (activations, xhat).

        x: [K, B, d], or [B, d] shared by all K. norm (batchnorm only): (mean, var), each
        [K, 1, d]: the batch statistics in training, the running ones in eval mode.
        """
        layers = p["layers"]
        if x.dim() == 2:
            x = x.expand(layers[0][0].shape[0], *x.shape)
        xhat = None
        if self.batchnorm:
            mean, var = norm
            xhat = (x - mean).mul_(torch.rsqrt(var + BN_EPS))
            gamma, beta = p["bn"]
            x = torch.addcmul(beta, xhat, gamma)
        acts = [x]
        for i, (weight, bias) in enumerate(layers):
            z = _linear(acts[-1], weight, bias)
            if i < len(layers) - 1:
                acts.append(self._act(z))
        return z, acts, xhat

    def backward(self, p: dict, grads: dict, dz: torch.Tensor, acts: list, xhat) -> None:
        """Writes dL/dparam into ``grads``; dz: dL/dout [K, B, 1]."""
        for i in reversed(range(len(acts))):
            weight = p["layers"][i][0]
            grad_w, grad_b = grads["layers"][i]
            _weight_grad(dz, acts[i], out=grad_w)
            torch.sum(dz, dim=1, out=grad_b)
            if i > 0:
                dz = _input_grad(dz, weight).mul_(self._act_grad(acts[i]))
            elif self.batchnorm:
                dh = _input_grad(dz, weight)
                torch.sum(dh * xhat, dim=1, out=grads["bn"][0])
                torch.sum(dh, dim=1, out=grads["bn"][1])

    def output_grad(self, out: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """dL/dout of the weighted batch mean: w [K, B, 1] is loss'-scale / rows on a batch's
        rows and 0 on padding (see ``loss_scale``); out [K, B, n_outputs], y [K, B, k] (the
        targets) or [K, B, 1] (cross_entropy: the class). double_sigmoid: the loss of
        sigmoid(out), so loss'(sigmoid(out)) * sigmoid'(out)."""
        if self.bug == "double_sigmoid":              # bce_with_logits only (plan_for)
            s = torch.sigmoid(out)
            return torch.sigmoid(s).sub_(y).mul_(w).mul_(s * (1 - s))
        if self.loss == "mse":
            return torch.sub(out, y).mul_(w)
        if self.loss == "cross_entropy":              # softmax(out) - onehot(y)
            classes = torch.arange(out.shape[-1], device=out.device, dtype=out.dtype)
            return _softmax_last(out).sub_((classes == y).to(out.dtype)).mul_(w)
        return torch.sigmoid(out).sub_(y).mul_(w)

    def loss_scale(self, mean: bool = True) -> float:
        """d loss / d out = scale * (f(out) - y) per row of the batch: 2 for mse ((out-y)^2,
        averaged over the k outputs too, as F.mse_loss: 2 / k), 1 for bce and
        cross_entropy. ``mean=False`` (loss_sum): every element summed, no 1 / k."""
        if self.loss != "mse":
            return 1.0
        return 2.0 / self.n_outputs if mean else 2.0

    @torch.no_grad()
    def evaluate(self, p: dict, x: torch.Tensor, y: torch.Tensor, norm) -> dict[str, torch.Tensor]:
        """Mean loss (and accuracy) of K models on all rows of x [N, d], y [N]: each [K]."""
        out = predictions(self.forward(p, x, norm)[0], self.n_outputs)
        losses = pointwise_loss(out, y, self.loss)
        metrics = {"loss": losses.flatten(1).mean(dim=1)}
        if self.loss != "mse":
            metrics["accuracy"] = accuracy(out, y, self.loss).mean(dim=1)
        return metrics


class _Runs:
    """Per-run constants of a group of runs: numpy arrays [R], device tensors [R, 1]."""

    def __init__(self, runs: Runs, n_train: int, device, start: RunState | None = None):
        col = lambda name, dtype=np.float64: np.array(getattr(runs, name), dtype)
        self.batch = col("batch_size", np.int64)
        self.epochs = col("epochs", np.int64)
        self.spe = steps_per_epoch(n_train, self.batch)
        # where each run starts: its epoch's first step (begin) and the steps it took before
        zero = np.zeros(len(self.batch), np.int64)
        self.begin = zero if start is None else np.asarray(start.epoch, np.int64) * self.spe
        self.k0 = zero if start is None else np.asarray(start.steps, np.int64)
        self.total = np.maximum(self.epochs * self.spe - self.begin, 0)   # steps to train
        self.seed = col("seed", np.int64)
        # the distinct seeds, sorted, and each run's: initial weights and batch orders
        self.seeds, self.seed_index = np.unique(self.seed, return_inverse=True)
        self.shuffle = col("shuffle", bool)
        self.lr, self.gamma = col("lr"), col("gamma")
        self.step_size = col("step_size", np.int64)
        self.scheduled = runs.lr_schedule == "step"
        self.beta1, self.beta2 = col("beta1"), col("beta2")
        self.eps = col("eps")
        self.momentum = col("momentum")
        self.nesterov = col("nesterov", bool)
        wd = col("weight_decay")
        adamw = runs.optimizer == "adamw"
        self.wd_coupled = np.where(adamw, 0.0, wd)      # added to the gradient (sgd, adam)
        self.wd_decoupled = np.where(adamw, wd, 0.0)    # p *= 1 - lr * wd (adamw)
        # from_numpy, not torch.tensor: 0.4 ms against 7 ms for 167,000 runs
        tensor = lambda a: torch.from_numpy(np.asarray(a, np.float32)).to(device).unsqueeze(1)
        self.tensors = {
            "one_minus_beta1": tensor(1 - self.beta1), "beta2": tensor(self.beta2),
            "one_minus_beta2": tensor(1 - self.beta2), "eps": tensor(self.eps),
            "momentum": tensor(self.momentum), "wd": tensor(self.wd_coupled),
            "nesterov": torch.from_numpy(self.nesterov).to(device).unsqueeze(1)}

    def lr_at(self, u: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Learning rate [S, R'] of runs ``rows`` at their steps ``u`` [S, R'] since epoch 0
        (StepLR: lr * gamma ** (epoch // step_size))."""
        epoch = u // self.spe[rows]
        decays = np.where(self.scheduled[rows], epoch // self.step_size[rows], 0)
        return self.lr[rows] * self.gamma[rows] ** decays


def _distinct_pairs(q: np.ndarray, e: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The distinct (q, e) pairs of two int arrays [K], sorted, and each entry's pair index
    [K]: np.unique(stack([q, e], 1), axis=0, return_inverse=True), without its sort of K
    rows when the pairs fit a dense table (the usual case: few seeds, a block's epochs).
    np.unique took 10 of a 1,000,000-run sweep's 70 s on the 2-core CPU."""
    e0 = int(e.min())
    span = int(e.max()) - e0 + 1
    key = q.astype(np.int64) * span + (e - e0)
    size = (int(q.max()) + 1) * span
    if size <= 4 * len(key) + 4096:
        present = np.zeros(size, dtype=bool)
        present[key] = True
        distinct = np.flatnonzero(present)
        which = (np.cumsum(present) - 1)[key]
    else:
        distinct, which = np.unique(key, return_inverse=True)
    return [(int(k // span), int(k % span) + e0) for k in distinct], which.reshape(-1)


class _Group:
    """The runs of a chunk that share input_norm and optimizer family, trained together."""

    def __init__(self, chunk: Chunk, rows: np.ndarray, device, result: ChunkResult,
                 progress=None):
        self.chunk, self.rows, self.device = chunk, rows, device
        self.result, self.progress = result, progress
        runs = chunk.runs[rows]
        first = runs.row(0)
        self.input_norm = first.input_norm
        self.sgd = first.optimizer == "sgd"
        self.bug, self.hidden, self.activation = first.bug, first.hidden, first.activation
        self.net = Net(chunk, self.input_norm, self.bug, self.hidden, self.activation)
        data = chunk.data
        self.n = data.n_train
        start = None if chunk.start is None else chunk.start.take(rows)
        self.c = _Runs(runs, self.n, device, start)
        self.stats = data.standardization() if self.input_norm == "standardize" else None
        x_train, x_val = data.x_train, data.x_val
        if self.stats is not None:   # the exported model's own module, so the same values
            standardize = Standardize(*self.stats)
            x_train, x_val = standardize(x_train), standardize(x_val)
        to = lambda t: t.to(device=device, dtype=torch.float32)
        self.x, self.y = to(x_train), to(data.y_train)
        self.x_val, self.y_val = to(x_val), to(data.y_val)
        self._perms: dict[tuple[int, int], torch.Tensor] = {}

        # Full-size state [R, ...]; the active runs' rows are copied out and back per block.
        self.init = self._initial_states()
        self.params = torch.cat([self.init[n].reshape(len(runs), -1)
                                 for n in self.net.layout.names], 1).to(device)
        zeros = lambda: torch.zeros_like(self.params)
        self.opt_state = {"momentum_buffer": zeros()} if self.sgd else \
            {"exp_avg": zeros(), "exp_avg_sq": zeros()}
        self.running = tuple(
            self.init[f"0.{name}"].unsqueeze(1).to(device, copy=True)
            for name in ("running_mean", "running_var")) if self.net.batchnorm else None
        # no_zero_grad: the gradients' running sum, what the optimizer reads (never cleared)
        self.grad_sum = zeros() if self.bug == "no_zero_grad" else None
        self.steps = np.zeros(len(runs), dtype=np.int64)
        self.diverged = np.zeros(len(runs), dtype=bool)
        if start is not None:
            self._load_state(start)

    def _load_state(self, start: RunState) -> None:
        """Replaces the seeded initial state by ``start``'s (this group's rows): weights,
        optimizer state (0 where a run has none yet), running statistics, gradient sums."""
        n, layout, dev = len(self.rows), self.net.layout, self.device

        def flat(part: dict, key: str) -> torch.Tensor | None:
            if f"{key}{layout.names[0]}" not in part:
                return None
            pieces = [part[f"{key}{name}"][(slice(None), *corner(shape))].reshape(n, -1)
                      for name, shape in zip(layout.names, layout.shapes)]
            return torch.from_numpy(np.nan_to_num(np.concatenate(pieces, 1), nan=0.0)
                                    if key else np.concatenate(pieces, 1)).to(dev)

        self.params = flat(start.model, "").contiguous()
        for key, value in self.opt_state.items():
            loaded = flat(start.optim, f"{key}.")
            if loaded is not None:
                value.copy_(loaded)
        if self.grad_sum is not None and flat(start.optim, "grad_sum.") is not None:
            self.grad_sum.copy_(flat(start.optim, "grad_sum."))
        if self.running is not None:
            d = self.chunk.data.n_features
            self.running = tuple(
                torch.from_numpy(np.ascontiguousarray(start.model[f"0.{name}"][:, :d]))
                .unsqueeze(1).to(dev) for name in ("running_mean", "running_var"))
        self.steps = np.asarray(start.steps, np.int64).copy()

    def _initial_states(self) -> dict[str, torch.Tensor]:
        """The runs' initial state_dicts, stacked [R, ...]: nn.Linear's init from each
        run's seed, one model per distinct seed (``_Runs.seeds``)."""
        data = self.chunk.data
        states = [seeded_model(int(seed), data.n_features, self.hidden, self.activation,
                               self.input_norm, self.stats, data.n_outputs).state_dict()
                  for seed in self.c.seeds]
        index = torch.from_numpy(self.c.seed_index.reshape(-1))
        return {k: torch.stack([s[k].detach() for s in states])[index] for k in states[0]}

    # ---- data order -------------------------------------------------------------------
    def _permuted_data(self, pairs: list[tuple[int, int]], width: int):
        """The training data in the order of each (seed, epoch) pair, as one table.

        Returns x [(Q + 1) * (n + width), d] and y [(Q + 1) * (n + width), k]: block 0
        holds the rows in their own order, block q the rows of pair q - 1's permutation;
        each block is padded with ``width`` zero rows, so every batch is a window of
        ``width`` consecutive rows of the table. Permutations are cached until every run
        is past their epoch.
        """
        missing = [p for p in pairs if p not in self._perms]
        if missing:
            seeds, epochs = zip(*missing)
            table = torch.from_numpy(permutations(np.array(seeds), np.array(epochs), self.n))
            self._perms.update(zip(missing, table.to(self.device)))
        order = torch.stack([torch.arange(self.n, device=self.device)]
                            + [self._perms[p] for p in pairs])            # [Q + 1, n]
        if pairs:
            low = min(e for _, e in pairs)
            for key in [k for k in self._perms if k[1] < low]:
                del self._perms[key]
        x = torch.cat([self.x[order], self.x.new_zeros(len(order), width, self.x.shape[1])], 1)
        targets = self.y.view(self.n, -1)          # [n, k] targets, or [n, 1]: y or the class
        y = torch.cat([targets[order], targets.new_zeros(len(order), width, targets.shape[1])], 1)
        return x.view(-1, x.shape[-1]), y.view(-1, targets.shape[1])

    def _gather(self, t0: int, t1: int, act: np.ndarray, scale: float, keep_mask: bool,
                mean: bool = True):
        """Batches of global steps t0..t1-1 for the active runs ``act``.

        Returns x [S, A, B, d], y [S, A, B, 1], the mask [S, A, B, 1] (1 on a batch's rows,
        0 on its padding; None unless ``keep_mask``), the row weights w = mask * scale /
        rows (``mean``; else mask * scale: the batch's sum), and the rows in each batch
        [S, A, 1].
        """
        c, dev, n = self.c, self.device, self.n
        u = np.arange(t0, t1)[:, None] + c.begin[act]                  # [S, A]
        spe, batch = c.spe[act], c.batch[act]
        width = int(min(batch.max(), n))
        epoch = u // spe                                                # [S, A]
        start = (u % spe) * batch
        count = np.minimum(n - start, batch)
        # The block of the permuted table each (step, run) reads: 0 = unshuffled.
        block = np.zeros(epoch.shape, dtype=np.int64)
        shuffled = np.broadcast_to(c.shuffle[act], epoch.shape)
        if shuffled.any():
            pairs, which = _distinct_pairs(np.broadcast_to(c.seed_index[act], epoch.shape)[shuffled],
                                           epoch[shuffled])
            block[shuffled] = which + 1
            pairs = [(int(c.seeds[q]), int(e)) for q, e in pairs]
        else:
            pairs = []
        x_table, y_table = self._permuted_data(pairs, width)
        first = torch.from_numpy((block * (n + width) + start).reshape(-1)).to(dev)
        # Every batch is a window of the table: index_select over a strided view of all
        # windows copies them whole (0.75 ms for [20, 200, 1000] rows, against 22 ms for
        # computing and gathering each row's index).
        d = x_table.shape[1]
        windows = lambda t: t.as_strided((len(t) - width + 1, width, t.shape[1]),
                                         (t.shape[1], t.shape[1], 1))
        x = windows(x_table).index_select(0, first).view(*epoch.shape, width, d)
        y = windows(y_table).index_select(0, first).view(*epoch.shape, width, y_table.shape[1])
        # w: `scale / count` ones followed by zeros, again as windows of one vector.
        steps_down = torch.cat([torch.ones(width, device=dev), torch.zeros(width, device=dev)])
        mask = steps_down.as_strided((width + 1, width), (1, 1))
        count_t = torch.from_numpy(count.reshape(-1)).to(dev)
        mask_rows = mask.index_select(0, width - count_t).view(*epoch.shape, width, 1)
        count_f = count_t.to(torch.float32).view(*epoch.shape, 1)
        factor = (scale / count_f).unsqueeze(-1) if mean else scale
        weights = mask_rows * factor if keep_mask else mask_rows.mul_(factor)
        return x, y, mask_rows if keep_mask else None, weights, count_f

    # ---- training -----------------------------------------------------------------------
    def train(self):
        c, act = self.c, np.flatnonzero(self.c.total > 0)
        t = 0
        while act.size:
            state = self._take(act)
            elements = len(act) * int(min(c.batch[act].max(), self.n))
            block = max(1, min(MAX_BLOCK_STEPS, BLOCK_ELEMENTS // elements))
            t_end = min(t + block, int(c.total[act].min()))
            snaps = self._run_block(state, act, t, t_end)
            self._put(act, state)
            self.steps[act] = c.k0[act] + t_end
            self._check_divergence(snaps)
            if self.progress is not None:
                self.progress(int(len(act) * (t_end - t)))
            t = t_end
            act = act[(c.total[act] > t) & ~self.diverged[act]]

    def _check_divergence(self, snaps: list) -> None:
        """Freezes the runs whose weights or training loss were non-finite at an evaluation of
        this block, as the reference does: state, steps and curves as of that evaluation."""
        if not snaps:
            return
        snap, first = self._evaluate(snaps)
        for k in np.nonzero(first >= 0)[0]:      # k: a run of this group
            j = first[k]                          # its first bad snapshot
            self.diverged[k] = True
            epoch = self.chunk.eval_epochs[snap["cols"][j]]
            self.steps[k] = self.c.k0[k] + epoch * self.c.spe[k] - self.c.begin[k]
            self.params[k] = snap["params"][j]
            for name, value in self.opt_state.items():
                value[k] = snap["opt"][name][j]
            if self.running is not None:
                for full, part in zip(self.running, snap["running"]):
                    full[k] = part[j]
            for curve in self.result.curves.values():   # no evaluations after it
                curve[self.rows[k], snap["cols"][j] + 1:] = np.nan

    def _take(self, act: np.ndarray) -> dict:
        """The active runs' state, copied out of the full-size tensors."""
        idx = torch.from_numpy(act).to(self.device)
        # index_select, not [idx]: 2.2 ms against 8.2 ms for 167,000 rows on the 2-core CPU
        take = lambda t: t.index_select(0, idx)
        state = {"params": take(self.params)}
        state["grads"] = torch.zeros_like(state["params"])
        state.update({k: take(v) for k, v in self.opt_state.items()})
        if self.grad_sum is not None:
            state["grad_sum"] = take(self.grad_sum)
        if self.running is not None:
            state["running"] = tuple(take(r) for r in self.running)
        return state

    def _put(self, act: np.ndarray, state: dict):
        idx = torch.from_numpy(act).to(self.device)
        self.params[idx] = state["params"]
        for k, v in self.opt_state.items():
            v[idx] = state[k]
        if self.grad_sum is not None:
            self.grad_sum[idx] = state["grad_sum"]
        if self.running is not None:
            for full, part in zip(self.running, state["running"]):
                full[idx] = part

    def _schedule(self, t0: int, t1: int, act: np.ndarray) -> dict[str, list[torch.Tensor]]:
        """Per-step optimizer factors, each a list over steps of [A, 1] tensors (computed
        in float64 from the float hyperparameters, as torch.optim does)."""
        c, steps = self.c, np.arange(t0, t1)
        k = steps[:, None] + 1 + c.k0[act]                         # the optimizer's step count
        to = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(
            self.device).unsqueeze(-1).unbind(0)
        with np.errstate(over="ignore"):       # lr 1e300 is inf in float32: the run diverges
            lr = c.lr_at(steps[:, None] + c.begin[act], act)       # [S, A]
            out = {"decay": to(1 - lr * c.wd_decoupled[act])}
            if self.sgd:
                out["neg_lr"] = to(-lr)
            else:
                bc1, bc2 = 1 - c.beta1[act] ** k, 1 - c.beta2[act] ** k
                out["neg_step_size"] = to(-lr / bc1)
                out["bc2_sqrt"] = to(np.sqrt(bc2))
        return out

    def _eval_points(self, t0: int, t1: int, act: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """step -> (active positions, curve columns) of the runs evaluated after that step."""
        c, steps = self.c, np.arange(t0, t1)
        u = steps[:, None] + c.begin[act]
        done = (u + 1) % c.spe[act] == 0
        epoch = (u + 1) // c.spe[act]
        is_eval = done & ((epoch % self.chunk.eval_every == 0) | (epoch == c.epochs[act]))
        points = {}
        for s in np.nonzero(is_eval.any(axis=1))[0]:
            where = np.nonzero(is_eval[s])[0]
            points[int(s)] = (where, self.chunk.column(epoch[s, where]))
        return points

    def _run_block(self, state: dict, act: np.ndarray, t0: int, t1: int) -> list:
        """Runs global steps t0..t1-1 of the active runs; returns the evaluation snapshots."""
        net, dev = self.net, self.device
        broadcast = self.bug == "target_broadcast"
        mean = self.bug != "loss_sum"
        x, y, mask, w, count = self._gather(t0, t1, act, net.loss_scale(mean),
                                            net.batchnorm or broadcast, mean=mean)
        if broadcast:        # every row's target is the batch's mean target: [S, A, 1, 1]
            y = (y * mask).sum(dim=2, keepdim=True).div_(count.unsqueeze(-1))
        xs, ys, ws = x.unbind(0), y.unbind(0), w.unbind(0)
        masks, counts = (mask.unbind(0), count.unbind(0)) if net.batchnorm else (None, None)
        sched = self._schedule(t0, t1, act)
        points = self._eval_points(t0, t1, act)
        idx = torch.from_numpy(act).to(dev)
        h = {k: v.index_select(0, idx) for k, v in self.c.tensors.items()}
        coupled = bool(self.c.wd_coupled[act].any())
        decoupled = bool(self.c.wd_decoupled[act].any())
        nesterov = bool(self.c.nesterov[act].any())
        params, grads = state["params"], state["grads"]
        p, g = net.views(params), net.grad_views(grads)
        snaps = []
        for s in range(t1 - t0):
            x, w = xs[s], ws[s]
            norm = None
            if net.batchnorm:
                rows = counts[s].unsqueeze(-1)                     # [A, 1, 1]
                norm = batch_stats(x, masks[s], rows)
            out, acts, xhat = net.forward(p, x, norm)
            net.backward(p, g, net.output_grad(out, ys[s], w), acts, xhat)
            if net.batchnorm:   # running stats: momentum 0.1, unbiased variance, as BatchNorm1d
                mean, var = norm
                state["running"][0].mul_(1 - BN_MOMENTUM).add_(mean, alpha=BN_MOMENTUM)
                state["running"][1].mul_(1 - BN_MOMENTUM).add_(var * rows / (rows - 1),
                                                               alpha=BN_MOMENTUM)
            if self.grad_sum is not None:              # no_zero_grad: p.grad accumulates
                grads.copy_(state["grad_sum"].add_(grads))
            if coupled:
                grads.addcmul_(params, h["wd"])
            if decoupled:
                params.mul_(sched["decay"][s])
            if self.sgd:
                buf = state["momentum_buffer"]
                buf.mul_(h["momentum"]).add_(grads)
                step = torch.where(h["nesterov"], grads + h["momentum"] * buf, buf) \
                    if nesterov else buf
                params.addcmul_(step, sched["neg_lr"][s])
            else:
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(grads, h["one_minus_beta1"])
                v.lerp_(grads.square(), h["one_minus_beta2"])
                denom = v.sqrt().div_(sched["bc2_sqrt"][s]).add_(h["eps"])
                params.addcdiv_(m * sched["neg_step_size"][s], denom)
            if s in points:
                where, cols = points[s]
                i = torch.from_numpy(where).to(dev)
                snaps.append({
                    "params": params[i], "runs": act[where], "cols": cols,
                    "opt": {k: state[k][i] for k in self.opt_state},
                    "running": tuple(r[i] for r in state["running"]) if net.batchnorm else None})
        return snaps

    def _evaluate(self, snaps: list) -> tuple[dict, np.ndarray]:
        """Evaluates a block's snapshots into the curves.

        Returns the snapshots concatenated (params [K, P], opt, running, runs [K], cols [K])
        and, for each run of the group, the index of its first snapshot with non-finite
        weights or training loss, else -1: int [R].
        """
        net = self.net
        snap = {"params": torch.cat([s["params"] for s in snaps]),
                "runs": np.concatenate([s["runs"] for s in snaps]),
                "cols": np.concatenate([s["cols"] for s in snaps]),
                "opt": {k: torch.cat([s["opt"][k] for s in snaps]) for k in self.opt_state},
                "running": tuple(torch.cat([s["running"][i] for s in snaps]) for i in range(2))
                if net.batchnorm else None}
        params, running, runs, cols = snap["params"], snap["running"], snap["runs"], snap["cols"]
        finite = torch.isfinite(params).all(dim=1)
        if running is not None:
            for r in running:
                finite &= torch.isfinite(r).flatten(1).all(dim=1)
        bad = ~finite.cpu().numpy()
        width = max([self.chunk.data.n_features, *self.hidden])
        for split, x, y in (("train", self.x, self.y), ("val", self.x_val, self.y_val)):
            if len(x) == 0:
                continue
            per = max(1, EVAL_ELEMENTS // (len(x) * width))
            for lo in range(0, len(params), per):
                hi = min(lo + per, len(params))
                norm = tuple(r[lo:hi] for r in running) if running is not None else None
                metrics = net.evaluate(net.views(params[lo:hi]), x, y, norm)
                for metric, value in metrics.items():
                    value = value.cpu().numpy()
                    curve = self.result.curves[f"{split}_{metric}"]
                    curve[self.rows[runs[lo:hi]], cols[lo:hi]] = value
                    if split == "train" and metric == "loss":
                        bad[lo:hi] |= ~np.isfinite(value)
        first = np.full(len(self.rows), -1)
        for j in reversed(np.nonzero(bad)[0]):   # snapshots are in step order: keep the first
            first[runs[j]] = j
        return snap, first

    # ---- results ------------------------------------------------------------------------
    def write_result(self):
        """Copies this group's runs into the chunk's result."""
        res, rows, net = self.result, self.rows, self.net
        res.diverged[rows] = self.diverged
        res.steps[rows] = self.steps
        final = {k: v.cpu() for k, v in net.layout.views(self.params).items()}
        if self.running is not None:
            final["0.running_mean"], final["0.running_var"] = (r.squeeze(1).cpu() for r in self.running)
            final["0.num_batches_tracked"] = torch.from_numpy(self.steps.astype(np.float32))
        if self.stats is not None:
            for name, value in zip(("0.mean", "0.std"), self.stats):
                final[name] = value.expand(len(rows), -1)
        init = {k: v.float() for k, v in self.init.items()}
        optim = {}
        has_state = self.c.momentum > 0 if self.sgd else np.ones(len(rows), bool)
        for key, flat in self.opt_state.items():
            if not has_state.any():
                continue
            for name, value in net.layout.views(flat).items():
                value = value.cpu().numpy().copy()
                value[~has_state] = np.nan     # torch.optim.SGD keeps no buffer without momentum
                optim[f"{key}.{name}"] = value
        if self.grad_sum is not None:      # no_zero_grad's accumulated gradients: state too
            for name, value in net.layout.views(self.grad_sum).items():
                optim[f"grad_sum.{name}"] = value.cpu().numpy()
        for target, source in ((res.init, init), (res.final, final), (res.optim, optim)):
            for name, value in source.items():
                value = value.numpy() if torch.is_tensor(value) else value
                put_rows(target, name, rows, value, len(res.steps))


def group_rows(chunk: Chunk) -> list[np.ndarray]:
    """The chunk's runs grouped by architecture (hidden widths, activation), bug, input
    normalization and optimizer family (sgd, or adam/adamw): each group's run indices, in
    order; groups in order of their first run."""
    runs = chunk.runs
    by = ("hidden", "activation", "bug", "input_norm")
    if all(is_constant(runs.columns[k]) for k in (*by, "optimizer")):
        return [np.arange(len(runs))]             # one group: no sort over the runs
    key = np.zeros(len(runs), np.int64)
    for name in by:                  # a mixed-radix number of the columns' codes
        column = runs.columns[name]
        key = key * len(column.choices) + column.codes
    key = key * 2 + (runs.optimizer == "sgd")
    order = np.argsort(key, kind="stable")
    starts = np.flatnonzero(np.diff(key[order], prepend=-1))
    groups = np.split(order, starts[1:])
    return sorted(groups, key=lambda rows: rows[0])


# The torch backend's cost on the CPU, for auto's choice against a first numba compile
# (numba_backend.cold_compile_instead): a group's runs step in lockstep, each step a few
# dozen ops on small tensors (TORCH_STEP_S: 40 us for the line model, 100 to 140 us for
# digits' 64-16-10 and 64-16-16-10, one run, measured), plus its arithmetic (TORCH_FLOPS:
# digits' 72-run grid did 7.4e10 flops in 3.6 s on 2 threads, 6.8 s on one), plus
# the shuffled epochs' permutations (PERMUTATION_S a row: trainer/spec/order.py in numpy).
# A prediction for a choice, not a promise (bench/NOTES.md).
TORCH_STEP_S = 1e-4
TORCH_FLOPS = 1.5e10
PERMUTATION_S = 2e-7


def group_weights(chunk: Chunk, rows: np.ndarray) -> int:
    """The weights (in x out of each Linear) of the model of a group's runs ``rows``."""
    hidden = chunk.runs.row(int(rows[0])).hidden
    return sum(i * o for i, o in layer_sizes(chunk.data.n_features, hidden,
                                             chunk.data.n_outputs))


def predicted_seconds(chunk: Chunk, launches: int = 1) -> float:
    """The torch backend's predicted training time for the chunk on the CPU: per group,
    its longest run's steps times TORCH_STEP_S (times ``launches``: the chunk's runs train
    in that many parts one after the other, as cross-validation's splits do), plus the
    forward and backward arithmetic of every sample-step and evaluation (6 and 2 flops a
    weight) at TORCH_FLOPS, plus the permutations of the shuffled runs' (seed, epoch)
    pairs. Measured on a quiet machine: with other work on the cores, torch's threads
    wait on each other and it can take ten times longer."""
    runs, n = chunk.runs, chunk.data.n_train
    rows_eval = n + chunk.data.n_val
    seconds = 0.0
    for rows in group_rows(chunk):
        epochs = runs.epochs[rows].astype(np.float64)
        steps = epochs * steps_per_epoch(n, runs.batch_size[rows])
        weights = group_weights(chunk, rows)
        evaluations = epochs / chunk.eval_every + 1
        flops = weights * (6.0 * n * epochs + 2.0 * rows_eval * evaluations).sum()
        seconds += steps.max() * TORCH_STEP_S * launches + flops / TORCH_FLOPS
    shuffled = runs.shuffle.astype(bool)
    if shuffled.any():
        seeds = len(np.unique(runs.seed[shuffled]))
        seconds += seeds * float(runs.epochs[shuffled].max()) * n * PERMUTATION_S
    return float(seconds)


def train(chunk: Chunk, device="cpu", progress=None, group_class=None) -> ChunkResult:
    """Trains every run of the chunk, vectorized over runs, on ``device``, one group
    (``group_rows``) at a time; ``group_class`` (default _Group) trains a group."""
    group_class = group_class or _Group
    result = chunk.empty_result()
    with torch.no_grad():
        for rows in group_rows(chunk):
            group = group_class(chunk, rows, torch.device(device), result, progress)
            group.train()
            group.write_result()
    return result
