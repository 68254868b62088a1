"""The torch backend: all runs of a chunk trained together, with ordinary PyTorch ops.

Every run's parameters live in one row of a flat ``[R, P]`` tensor (views give each layer's
``[R, out, in]`` weight and ``[R, out]`` bias); gradients and optimizer state are ``[R, P]``
too, and every per-run hyperparameter is an ``[R, 1]`` tensor, so one optimizer step of all
runs is a handful of ops whatever the depth.

Runs step in lockstep: global step ``t`` is every active run's step ``t + 1``. Run ``r``'s
step ``t`` is batch ``t % spe_r`` of epoch ``t // spe_r`` (``spe_r = ceil(n / batch_size_r)``),
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

Steps are processed in blocks: the batch rows, per-step learning rates and bias
corrections of a block are computed in a few vectorized ops before its steps run, the
evaluation snapshots taken in a block are evaluated together at its end, and a run is
checked for divergence at each block end (and frozen from then on).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from .backend import Chunk, ChunkResult
from .config import RunParams
from .model import layer_sizes, linear_names, pointwise_loss, seeded_model
from .order import permutations

BN_EPS, BN_MOMENTUM = 1e-5, 0.1      # nn.BatchNorm1d's defaults
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
    def of(n_features: int, hidden, batchnorm: bool) -> Layout:
        names, shapes = [], []
        if batchnorm:
            names += ["0.weight", "0.bias"]
            shapes += [(n_features,), (n_features,)]
        for name, (fan_in, fan_out) in zip(linear_names(len(hidden) + 1),
                                           layer_sizes(n_features, hidden)):
            names += [f"{name}.weight", f"{name}.bias"]
            shapes += [(fan_out, fan_in), (fan_out,)]
        sizes = [math.prod(s) for s in shapes]
        offsets = list(np.cumsum([0] + sizes[:-1]))
        return Layout(names, shapes, [int(o) for o in offsets], int(sum(sizes)))

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """name -> view [R, *shape] of a flat [R, P] tensor."""
        return {name: flat[:, off:off + math.prod(shape)].view(flat.shape[0], *shape)
                for name, shape, off in zip(self.names, self.shapes, self.offsets)}


class Net:
    """The vectorized MLP: forward and hand-written backward over stacked runs."""

    def __init__(self, chunk: Chunk, input_norm: str):
        self.hidden = chunk.model.hidden
        self.activation = chunk.model.activation
        self.loss = chunk.model.loss
        self.batchnorm = input_norm == "batchnorm"
        self.layout = Layout.of(chunk.data.n_features, self.hidden, self.batchnorm)
        self.linears = linear_names(len(self.hidden) + 1)

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

    def forward(self, p: dict[str, torch.Tensor], x: torch.Tensor,
                norm: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Outputs [K, B] and the activations the backward pass needs.

        p: views [K, ...] of the parameters; x: [K, B, d] (or [B, d], shared by all K).
        norm: batchnorm only: (weights [K, B] for batch statistics) in training, or
        (running_mean, running_var), each [K, d], in eval mode (see ``batch_stats``).
        """
        k = next(iter(p.values())).shape[0]
        if x.dim() == 2:
            x = x.expand(k, *x.shape)
        xhat = None
        if self.batchnorm:
            mean, var = norm
            xhat = (x - mean.unsqueeze(1)) * torch.rsqrt(var + BN_EPS).unsqueeze(1)
            x = xhat * p["0.weight"].unsqueeze(1) + p["0.bias"].unsqueeze(1)
        acts = [x]
        for i, name in enumerate(self.linears):
            z = torch.baddbmm(p[f"{name}.bias"].unsqueeze(1), acts[-1],
                              p[f"{name}.weight"].transpose(1, 2))
            if i < len(self.linears) - 1:
                acts.append(self._act(z))
        return z.squeeze(-1), acts, xhat

    def backward(self, p: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
                 dout: torch.Tensor, acts: list[torch.Tensor], xhat: torch.Tensor | None):
        """Writes dL/dparam into ``grads`` (views [K, ...]); dout: dL/dout [K, B]."""
        dz = dout.unsqueeze(-1)
        for i in reversed(range(len(self.linears))):
            name = self.linears[i]
            torch.bmm(dz.transpose(1, 2), acts[i], out=grads[f"{name}.weight"])
            torch.sum(dz, dim=1, out=grads[f"{name}.bias"])
            if i > 0:
                dz = torch.bmm(dz, p[f"{name}.weight"]) * self._act_grad(acts[i])
            elif self.batchnorm:
                dh = torch.bmm(dz, p[f"{name}.weight"])
                torch.sum(dh * xhat, dim=1, out=grads["0.weight"])
                torch.sum(dh, dim=1, out=grads["0.bias"])

    def output_grad(self, out: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """dL/dout of the weighted batch mean: w [K, B] is 1/rows on real rows, 0 on padding."""
        if self.loss == "mse":
            return (out - y).mul_(w).mul_(2)
        return (torch.sigmoid(out) - y).mul_(w)


def batch_stats(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and biased variance over rows: x [K, B, d], w [K, B] summing to 1."""
    mean = torch.einsum("kb,kbd->kd", w, x)
    var = torch.einsum("kb,kbd->kd", w, (x - mean.unsqueeze(1)) ** 2)
    return mean, var


class _Runs:
    """Per-run constants of a group of runs, as numpy arrays [R] and device tensors [R, 1]."""

    def __init__(self, runs: list[RunParams], n_train: int, device):
        self.runs = runs
        col = lambda name, dtype=np.float64: np.array([getattr(r, name) for r in runs], dtype)
        self.batch = col("batch_size", np.int64)
        self.epochs = col("epochs", np.int64)
        self.spe = -(-n_train // self.batch)            # steps per epoch, ceil
        self.total = self.epochs * self.spe
        self.seed = col("seed", np.int64)
        self.shuffle = col("shuffle", bool)
        self.lr = col("lr")
        self.gamma = col("gamma")
        self.step_size = col("step_size", np.int64)
        self.scheduled = np.array([r.lr_schedule == "step" for r in runs])
        self.beta1, self.beta2 = col("beta1"), col("beta2")
        self.momentum = col("momentum")
        wd = col("weight_decay")
        adamw = np.array([r.optimizer == "adamw" for r in runs])
        self.wd_coupled = np.where(adamw, 0.0, wd)      # added to the gradient (sgd, adam)
        self.wd_decoupled = np.where(adamw, wd, 0.0)    # p *= 1 - lr * wd (adamw)
        self.nesterov = col("nesterov", bool)
        tensor = lambda a: torch.tensor(a, dtype=torch.float32, device=device).unsqueeze(1)
        self.t_beta1, self.t_beta2 = tensor(1 - self.beta1), tensor(self.beta2)   # lerp weight, beta2
        self.t_eps, self.t_momentum = tensor(col("eps")), tensor(self.momentum)
        self.t_wd = tensor(self.wd_coupled)
        self.t_nesterov = torch.tensor(self.nesterov, device=device).unsqueeze(1)

    def lr_at(self, steps: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Learning rate [S, R'] of runs ``rows`` at global steps ``steps`` [S] (StepLR)."""
        epoch = steps[:, None] // self.spe[rows]
        decays = np.where(self.scheduled[rows], epoch // self.step_size[rows], 0)
        return self.lr[rows] * self.gamma[rows] ** decays


def _eval_metrics(net: Net, p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                  norm) -> dict[str, torch.Tensor]:
    """Loss (and accuracy) of K models on all rows of (x [N, d], y [N]): tensors [K]."""
    out, _, _ = net.forward(p, x, norm)
    metrics = {"loss": pointwise_loss(out, y, net.loss).mean(dim=1)}
    if net.loss == "bce_with_logits":
        metrics["accuracy"] = ((out > 0).to(y.dtype) == y).to(y.dtype).mean(dim=1)
    return metrics


class _Group:
    """The runs of a chunk that share input_norm and optimizer family, trained together."""

    def __init__(self, chunk: Chunk, rows: np.ndarray, device, result: ChunkResult,
                 progress=None):
        self.chunk, self.rows, self.device = chunk, rows, device
        self.result, self.progress = result, progress
        runs = [chunk.runs[i] for i in rows]
        self.input_norm = runs[0].input_norm
        self.sgd = runs[0].optimizer == "sgd"
        self.net = Net(chunk, self.input_norm)
        data = chunk.data
        self.n = data.n_train
        self.c = _Runs(runs, self.n, device)
        self.stats = data.standardization() if self.input_norm == "standardize" else None
        x_train, x_val = data.x_train, data.x_val
        if self.stats is not None:   # the same op as model.Standardize, so the same values
            x_train = (x_train - self.stats[0]) / self.stats[1]
            x_val = (x_val - self.stats[0]) / self.stats[1]
        to = lambda t: t.to(device=device, dtype=torch.float32)
        self.x, self.y = to(x_train), to(data.y_train)
        self.x_val, self.y_val = to(x_val), to(data.y_val)
        self._perms: dict[tuple[int, int], torch.Tensor] = {}

        # Full-size state, [R, ...]; the active runs' rows are copied out and back.
        self.init_states = self._initial_states(runs)
        layout = self.net.layout
        self.params = torch.stack([torch.cat([s[n].reshape(-1) for n in layout.names])
                                   for s in self.init_states]).to(device)
        zeros = lambda: torch.zeros_like(self.params)
        self.opt_state = {"momentum_buffer": zeros()} if self.sgd else \
            {"exp_avg": zeros(), "exp_avg_sq": zeros()}
        d = data.n_features
        self.running = (torch.zeros(len(runs), d, device=device),
                        torch.ones(len(runs), d, device=device)) if self.net.batchnorm else None
        self.steps = np.zeros(len(runs), dtype=np.int64)
        self.diverged = np.zeros(len(runs), dtype=bool)

    def _initial_states(self, runs: list[RunParams]) -> list[dict[str, torch.Tensor]]:
        """Each run's initial state_dict: nn.Linear's init from its seed, one model per seed."""
        spec, data = self.chunk.model, self.chunk.data
        by_seed = {}
        for r in runs:
            if r.seed not in by_seed:
                model = seeded_model(r.seed, data.n_features, spec.hidden, spec.activation,
                                     self.input_norm, self.stats)
                by_seed[r.seed] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return [by_seed[r.seed] for r in runs]

    # ---- data order -------------------------------------------------------------------
    def _perm_table(self, seeds: np.ndarray, epochs: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Permutations of the (seed, epoch) pairs given ([M] each): a table [Q, n] and
        each pair's row in it [M]. Permutations are cached until their epoch is past."""
        pairs = list(zip(seeds.tolist(), epochs.tolist()))
        missing = sorted(set(p for p in pairs if p not in self._perms))
        if missing:
            s, e = zip(*missing)
            table = torch.from_numpy(permutations(np.array(s), np.array(e), self.n)).to(self.device)
            self._perms.update(zip(missing, table))
        keys = sorted(set(pairs))
        index = {k: i for i, k in enumerate(keys)}
        table = torch.stack([self._perms[k] for k in keys])
        low = int(epochs.min())
        for k in [k for k in self._perms if k[1] < low]:
            del self._perms[k]
        return table, np.array([index[p] for p in pairs], dtype=np.int64)

    def _gather(self, t0: int, t1: int, act: np.ndarray):
        """Batches of global steps t0..t1-1 for active runs ``act``.

        Returns x [S, A, B, d], y [S, A, B], the row weights w [S, A, B] (1/rows on a
        batch's rows, 0 on padding) and the rows in each batch [S, A, 1]."""
        c, dev = self.c, self.device
        steps = np.arange(t0, t1)
        spe, batch = c.spe[act], c.batch[act]
        width = int(min(batch.max(), self.n))
        epoch = steps[:, None] // spe                                   # [S, A]
        start = torch.from_numpy((steps[:, None] % spe) * batch).to(dev)
        count = torch.clamp(self.n - start, max=torch.from_numpy(batch).to(dev))
        j = torch.arange(width, device=dev)
        valid = j < count.unsqueeze(-1)                                 # [S, A, B]
        pos = torch.where(valid, start.unsqueeze(-1) + j, 0)
        shuffled = c.shuffle[act]
        if shuffled.any():
            seeds = np.broadcast_to(c.seed[act], epoch.shape)
            sel = np.broadcast_to(shuffled, epoch.shape)
            table, which = self._perm_table(seeds[sel], epoch[sel])
            pair = np.zeros(epoch.shape, dtype=np.int64)
            pair[sel] = which
            pair = torch.from_numpy(pair).to(dev).unsqueeze(-1)
            permuted = table[pair, pos]
            pos = torch.where(torch.from_numpy(shuffled).to(dev)[None, :, None], permuted, pos)
        count = count.to(torch.float32).unsqueeze(-1)
        return self.x[pos], self.y[pos], valid.to(torch.float32) / count, count

    # ---- training -----------------------------------------------------------------------
    def train(self):
        c, act = self.c, np.arange(len(self.rows))
        t = 0
        while act.size:
            state = self._take(act)
            elements = len(act) * int(min(c.batch[act].max(), self.n))
            block = max(1, min(MAX_BLOCK_STEPS, BLOCK_ELEMENTS // elements))
            t_end = min(t + block, int(c.total[act].min()))
            snaps = self._run_block(state, act, t, t_end)
            self._put(act, state)
            self.steps[act] = t_end
            bad = ~torch.isfinite(state["params"]).all(dim=1).cpu().numpy()
            bad |= self._evaluate(snaps)[act] if snaps else False
            self.diverged[act[bad]] = True
            if self.progress is not None:
                self.progress(int(len(act) * (t_end - t)))
            t = t_end
            act = act[(c.total[act] > t) & ~self.diverged[act]]

    def _take(self, act: np.ndarray) -> dict:
        """The active runs' state, copied out of the full-size tensors."""
        idx = torch.from_numpy(act).to(self.device)
        state = {"params": self.params[idx], "grads": torch.zeros_like(self.params[idx])}
        state.update({k: v[idx] for k, v in self.opt_state.items()})
        if self.running is not None:
            state["running"] = tuple(r[idx] for r in self.running)
        return state

    def _put(self, act: np.ndarray, state: dict):
        idx = torch.from_numpy(act).to(self.device)
        self.params[idx] = state["params"]
        for k, v in self.opt_state.items():
            v[idx] = state[k]
        if self.running is not None:
            for full, part in zip(self.running, state["running"]):
                full[idx] = part

    def _schedule(self, t0: int, t1: int, act: np.ndarray) -> dict[str, torch.Tensor]:
        """Per-step, per-run optimizer factors [S, A, 1] (float64 math, as torch.optim's)."""
        c, steps = self.c, np.arange(t0, t1)
        lr = c.lr_at(steps, act)
        k = (steps + 1)[:, None]                                   # the optimizer's step count
        to = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(self.device).unsqueeze(-1)
        out = {"decay": to(1 - lr * c.wd_decoupled[act])}
        if self.sgd:
            out["neg_lr"] = to(-lr)
        else:
            bc1, bc2 = 1 - c.beta1[act] ** k, 1 - c.beta2[act] ** k
            out["neg_step_size"] = to(-lr / bc1)
            out["bc2_sqrt"] = to(np.sqrt(bc2))
        return out

    def _eval_points(self, t0: int, t1: int, act: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """step -> (active positions, epoch columns) of the runs evaluated after that step."""
        c, steps = self.c, np.arange(t0, t1)
        done = (steps[:, None] + 1) % c.spe[act] == 0
        epoch = (steps[:, None] + 1) // c.spe[act]
        is_eval = done & ((epoch % self.chunk.eval_every == 0) | (epoch == c.epochs[act]))
        points = {}
        for s in np.nonzero(is_eval.any(axis=1))[0]:
            where = np.nonzero(is_eval[s])[0]
            points[int(s)] = (where, epoch[s, where] - 1)
        return points

    def _run_block(self, state: dict, act: np.ndarray, t0: int, t1: int) -> list:
        net, c = self.net, self.c
        xs, ys, ws, counts = self._gather(t0, t1, act)
        sched = self._schedule(t0, t1, act)
        points = self._eval_points(t0, t1, act)
        params, grads = state["params"], state["grads"]
        p, g = net.layout.views(params), net.layout.views(grads)
        ca = {k: v[torch.from_numpy(act).to(self.device)] for k, v in
              (("beta1", c.t_beta1), ("beta2", c.t_beta2), ("eps", c.t_eps),
               ("momentum", c.t_momentum), ("wd", c.t_wd), ("nesterov", c.t_nesterov))}
        ca["one_minus_beta2"] = 1 - ca["beta2"]
        coupled = bool(c.wd_coupled[act].any())
        decoupled = bool(c.wd_decoupled[act].any())
        nesterov = bool(c.nesterov[act].any())
        snaps = []
        for s in range(t1 - t0):
            x, y, w = xs[s], ys[s], ws[s]
            norm = batch_stats(x, w) if net.batchnorm else None
            out, acts, xhat = net.forward(p, x, norm)
            net.backward(p, g, net.output_grad(out, y, w), acts, xhat)
            if net.batchnorm:
                mean, var, rows = *norm, counts[s]
                state["running"][0].lerp_(mean, BN_MOMENTUM)
                state["running"][1].lerp_(var * rows / (rows - 1), BN_MOMENTUM)
            if coupled:
                grads.addcmul_(params, ca["wd"])
            if decoupled:
                params.mul_(sched["decay"][s])
            if self.sgd:
                buf = state["momentum_buffer"]
                buf.mul_(ca["momentum"]).add_(grads)
                step = torch.where(ca["nesterov"], grads + ca["momentum"] * buf, buf) \
                    if nesterov else buf
                params.addcmul_(step, sched["neg_lr"][s])
            else:
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(grads, ca["beta1"])
                v.mul_(ca["beta2"]).addcmul_(grads, grads * ca["one_minus_beta2"])
                denom = v.sqrt().div_(sched["bc2_sqrt"][s]).add_(ca["eps"])
                params.addcdiv_(m * sched["neg_step_size"][s], denom)
            if s in points:
                where, cols = points[s]
                idx = torch.from_numpy(where).to(self.device)
                running = tuple(r[idx] for r in state["running"]) if net.batchnorm else None
                snaps.append((params[idx], running, act[where], cols))
        return snaps

    def _evaluate(self, snaps: list) -> np.ndarray:
        """Evaluates the snapshots of a block into the curves; returns a bool array [R] of
        the runs whose evaluated training loss was not finite."""
        net = self.net
        params = torch.cat([s[0] for s in snaps])
        running = tuple(torch.cat([s[1][i] for s in snaps]) for i in range(2)) \
            if net.batchnorm else None
        runs = np.concatenate([s[2] for s in snaps])
        cols = np.concatenate([s[3] for s in snaps])
        width = max([self.chunk.data.n_features, *self.chunk.model.hidden])
        bad = np.zeros(len(self.rows), dtype=bool)
        for split, x, y in (("train", self.x, self.y), ("val", self.x_val, self.y_val)):
            if len(x) == 0:
                continue
            per = max(1, EVAL_ELEMENTS // (len(x) * width))
            for lo in range(0, len(params), per):
                hi = min(lo + per, len(params))
                p = net.layout.views(params[lo:hi])
                norm = tuple(r[lo:hi] for r in running) if running is not None else None
                for metric, value in _eval_metrics(net, p, x, y, norm).items():
                    value = value.cpu().numpy()
                    self.result.curves[f"{split}_{metric}"][self.rows[runs[lo:hi]], cols[lo:hi]] = value
                    if split == "train" and metric == "loss":
                        bad[runs[lo:hi][~np.isfinite(value)]] = True
        return bad

    # ---- results ------------------------------------------------------------------------
    def write_result(self):
        res, rows, net = self.result, self.rows, self.net
        res.diverged[rows] = self.diverged
        res.steps[rows] = self.steps
        final = {k: v.cpu() for k, v in net.layout.views(self.params).items()}
        if self.running is not None:
            final["0.running_mean"], final["0.running_var"] = (r.cpu() for r in self.running)
            final["0.num_batches_tracked"] = torch.from_numpy(self.steps.astype(np.float32))
        if self.stats is not None:
            for name, value in zip(("0.mean", "0.std"), self.stats):
                final[name] = value.expand(len(rows), -1)
        init = {k: torch.stack([s[k].float() for s in self.init_states]) for k in self.init_states[0]}
        optim = {}
        for key, flat in self.opt_state.items():
            keep = self.c.momentum > 0 if self.sgd else np.ones(len(rows), bool)
            for name, value in net.layout.views(flat).items():
                value = value.cpu().numpy().copy()
                value[~keep] = np.nan
                optim[f"{key}.{name}"] = value
        for target, source in ((res.init, init), (res.final, final), (res.optim, optim)):
            for name, value in source.items():
                value = value.numpy() if torch.is_tensor(value) else value
                if name not in target:
                    target[name] = np.full((len(res.steps), *value.shape[1:]), np.nan, np.float32)
                target[name][rows] = value


def train(chunk: Chunk, device="cpu", progress=None) -> ChunkResult:
    """Trains every run of the chunk, vectorized over runs, on ``device``."""
    n_runs = len(chunk.runs)
    result = ChunkResult(
        curves={m: np.full((n_runs, chunk.max_epochs), np.nan, np.float32) for m in chunk.metrics()},
        diverged=np.zeros(n_runs, dtype=bool), steps=np.zeros(n_runs, dtype=np.int64),
        init={}, final={}, optim={})
    groups = defaultdict(list)
    for i, run in enumerate(chunk.runs):
        groups[(run.input_norm, run.optimizer == "sgd")].append(i)
    with torch.no_grad():
        for rows in groups.values():
            group = _Group(chunk, np.array(rows), torch.device(device), result, progress)
            group.train()
            group.write_result()
    return result
