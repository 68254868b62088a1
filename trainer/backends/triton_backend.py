"""The triton backend: each group of runs trained by one fused kernel launch per evaluation
interval (kernels/mlp.py), with everything between launches left on the device.

Runs are grouped as in the torch backend (input normalization, optimizer family), whose
set-up (initial weights, standardized data, result writing) this backend shares; only the
training differs. Within a group, runs are sorted by batch size, shuffle and seed, so the
lanes of one program take steps of similar sizes and often read the same rows. A shuffled
run reads a copy of the training rows in its epoch's order, made once per (seed, epoch):
``order_kernel`` writes the permutations and torch gathers the rows, for the whole sweep
when the copies fit in ORDER_BYTES. Then, for each interval
between evaluation epochs, ``train_kernel`` trains the interval's epochs and evaluates the
runs due for an evaluation, writing their curves in place. State stays on the device
between launches, in per-program tiles (``to_tiles``).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from . import torch_backend
from .backend import Chunk, ChunkResult, evaluation_epochs, fused_unsupported, said_if_slow
from ..spec.order import half_bits, round_keys
from .torch_backend import _Group

MAX_DEPTH = 2
# A lane keeps its run's weights and gradients in registers, and its code grows with the
# weight entries of its padded layers (inputs x units, units x units, units x outputs, each
# dimension a power of two): compiled for sm_90 on the 2-core CPU, 4.9 s at 88 entries
# (2-8-8-1), 9.4 s at 192 (2-64-1), 12 to 16 s at 304 (2-10-10-1 to 2-16-16-1; 25 s on the
# H100's host), and past 384 parameters the weights spill (bench/sass.py, kernels/NOTES.md).
# Larger models go to the wide kernel (kernels/wide.py: one run per program, a batch's rows
# through tl.dot; 2 to 7 s for any shape), whose layers may be up to WIDE_MAX wide, inputs
# and outputs included; a model too wide for it stays in a lane up to MAX_PARAMS. Past
# LANE_SPILL padded weights, though, a lane's tensors go through shared memory at every
# row and its compile takes minutes: more than 64 inputs pad far (300 features and one
# output, 512 weights a lane: 2 min to compile on the 2-core CPU, a row loop of 5,946
# instructions with 276 LDS/STS against 997 and 84 at 65 features; bench/sass.py
# --inputs 300, kernels/NOTES.md), so ``--backend auto`` sends such a model to the torch
# backend (``oversized_lane``); ``--backend triton`` still trains it, slowly.
LANE_WEIGHTS = 128
MAX_PARAMS = 384
LANE_SPILL = 384
WIDE_MAX = 64
WIDE_WARPS = 4          # warps per program of the wide kernel (one run)
WIDE_ROWS = 16          # rows per tile of the wide kernel (tl.dot's smallest)
# The wide kernel's products: "ieee" (fp32, matches the reference) or "tf32" (an opt-in:
# TINYSWEEP_TF32=1; faster on tensor cores, 10-bit mantissas in the products).
PRECISION = "tf32" if os.environ.get("TINYSWEEP_TF32", "0") not in ("", "0") else "ieee"
BLOCK_R = 32            # lanes per program
NUM_WARPS = 1           # warps per program: BLOCK_R / (32 * NUM_WARPS) lanes per thread
UNROLL = 1              # unrolling of the kernel's loop over a batch's rows
# Lanes per run (kernels/mlp.py): None chooses them per group (split_for); a number forces
# it (tests, bench/kernels.py). A group of few runs leaves most of the GPU idle at one lane
# per run (1,000 runs: 32 warps for 132 SMs), and each lane's chain of dependent operations
# per row is latency-bound; several lanes per run share a batch's rows and sum their
# gradients once per step. split_for's thresholds are predictions (kernels/NOTES.md, v5):
# bench/kernels.py times mlp_1k at 1, 2, 4 and 8 lanes per run on a GPU.
SPLIT = None
MAX_SPLIT = 8
LANES_PER_SM = 64       # enough lanes: two warps per SM
ROWS_PER_LANE = 4       # each lane keeps at least this many rows of the smallest batch
ORDER_BLOCK = 1024
# The shuffled copies of the training rows ([seeds, epochs, n] rows of x and y) stay under
# this (256 MB): an evaluation interval whose copies do not fit is trained in several
# launches, each a few epochs or, where one epoch of every seed does not fit, a few seeds.
ORDER_BYTES = 1 << 28
METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
# A kernel variant's first launch in a process compiles it (5 to 15 s on the H100's host,
# kernels/NOTES.md) or loads it from Triton's cache (well under a second): past this many
# seconds, the progress bar's reader is told what the wait is.
COMPILE_NOTICE_S = 2.0
_LAUNCHED = set()       # the kernel variants launched in this process


def unsupported(chunk: Chunk) -> str | None:
    """Why the fused kernels cannot train this model, or None when they can."""
    common = fused_unsupported(chunk, "triton", MAX_DEPTH)
    if common:
        return common
    if chunk.data.n_train * chunk.data.n_features >= 2**31:
        return ("data: the triton backend indexes the training data with int32 "
                "(n x features must stay under 2**31)")
    batchnorm = bool((chunk.runs.input_norm == "batchnorm").any())
    d, k = chunk.data.n_features, chunk.data.n_outputs
    for hidden in chunk.runs.architectures():      # each group is launched on its own
        if kernel_for(d, hidden, batchnorm, k) is None:
            params = torch_backend.Layout.of(d, hidden, batchnorm, k).size
            return (f"model: the triton backend trains up to {MAX_PARAMS} parameters per run, "
                    f"or layers up to {WIDE_MAX} wide (inputs and outputs too); {d} features, "
                    f"hidden {list(hidden)} and {k} output{'s' * (k > 1)} make {params}")
    return None


def kernel_for(n_features: int, hidden, batchnorm: bool, n_outputs: int) -> str | None:
    """The kernel that trains this model: "lanes" (mlp.py, one lane per run) while its
    padded layers hold at most LANE_WEIGHTS weights, else "wide" (wide.py) while every layer
    is at most WIDE_MAX wide, else "lanes" up to MAX_PARAMS parameters; None past that."""
    if padded_weights(n_features, hidden, n_outputs) <= LANE_WEIGHTS:
        return "lanes"
    if max(n_features, *hidden, n_outputs) <= WIDE_MAX:
        return "wide"
    params = torch_backend.Layout.of(n_features, hidden, batchnorm, n_outputs).size
    return "lanes" if params <= MAX_PARAMS else None


def padded_weights(n_features: int, hidden, n_outputs: int) -> int:
    """The weights a lane holds: each layer's inputs and outputs padded to a power of two."""
    dims = [_pow2(m) for m in (n_features, *hidden, n_outputs)]
    return sum(a * b for a, b in zip(dims, dims[1:]))


def oversized_lane(chunk: Chunk) -> str | None:
    """Why auto should not give this sweep to the triton backend although it can train it:
    a model that only a lane takes, with more than LANE_SPILL padded weights; else None."""
    d, k = chunk.data.n_features, chunk.data.n_outputs
    batchnorm = bool((chunk.runs.input_norm == "batchnorm").any())
    for hidden in chunk.runs.architectures():
        weights = padded_weights(d, hidden, k)
        if kernel_for(d, hidden, batchnorm, k) == "lanes" and weights > LANE_SPILL:
            return (f"{d} features, hidden {list(hidden)} and {k} output{'s' * (k > 1)} pad to "
                    f"{weights} weights a lane (over {LANE_SPILL}: a compile of minutes, and "
                    f"the rows through shared memory)")
    return None


def interpreted() -> bool:
    """Do Triton kernels run in Triton's interpreter (on the CPU) in this process?"""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def available() -> str | None:
    """Why triton cannot run here, or None when it can."""
    try:
        import triton  # noqa: F401  (only whether it imports)
    except ImportError:
        return "the triton package is not installed"
    return None


def split_for(runs: int, batch: int, multiprocessors: int) -> int:
    """Lanes per run for a group of ``runs`` runs whose smallest batch has ``batch`` rows on
    a GPU with this many multiprocessors (0: the interpreter, one lane per run): the fewest,
    a power of two up to MAX_SPLIT, that give LANES_PER_SM lanes per multiprocessor, while
    every lane keeps ROWS_PER_LANE rows of a batch."""
    split = 1
    while (split < MAX_SPLIT and runs * split < multiprocessors * LANES_PER_SM
           and batch >= 2 * split * ROWS_PER_LANE):
        split *= 2
    return split


def multiprocessors(device: torch.device) -> int:
    """The SMs of a CUDA device; 0 elsewhere (the interpreter)."""
    if device.type != "cuda":
        return 0
    return torch.cuda.get_device_properties(device).multi_processor_count


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


class _TritonGroup(_Group):
    """A group of runs trained by the fused kernels; state as in the torch backend."""

    def train(self):
        self.load()
        self.train_intervals()
        self.unload()

    def train_intervals(self):
        """Trains the loaded group through every evaluation interval."""
        e0 = self.chunk.start_epoch()
        for e1 in self.boundaries[self.boundaries > e0]:
            self.train_interval(e0, int(e1))
            e0 = int(e1)

    def load(self):
        """Moves the group's state into the kernels' layout: runs sorted into lanes, every
        state tensor [entries, runs] so a program reads its lanes' entries contiguously."""
        from ...kernels import mlp

        c, dev, chunk = self.c, self.device, self.chunk
        lanes = np.lexsort((c.seed, c.shuffle, c.batch))    # lane j trains group run lanes[j]
        self.lanes = lanes
        n_runs = len(lanes)
        d, k, loss = chunk.data.n_features, chunk.data.n_outputs, chunk.model.loss
        hidden = list(self.hidden)
        self.wide = kernel_for(d, hidden, self.running is not None, k) == "wide"
        # chosen from the whole sweep, so that chunking changes no bit
        whole = chunk.whole()
        self.split = 1 if self.wide else SPLIT or split_for(
            len(whole), int(min(whole.batch_size.min(), self.n)),
            multiprocessors(torch.device(dev)))
        runs_per_program = 1 if self.wide else BLOCK_R // self.split
        self.runs_per_program = runs_per_program
        padded = cdiv(n_runs, runs_per_program) * runs_per_program   # padding: no epoch
        idx = torch.from_numpy(lanes).to(dev)

        def lane_values(a, dtype, pad):
            out = np.full(padded, pad, dtype=np.float64)
            out[:n_runs] = np.asarray(a, dtype=np.float64)[lanes]
            return torch.tensor(out, dtype=dtype, device=dev)
        f32 = lambda a, pad=0.0: lane_values(a, torch.float32, pad)
        i32 = lambda a, pad=0: lane_values(a, torch.int32, pad)

        def rows(t: torch.Tensor, pad: float = 0.0) -> torch.Tensor:   # [R, k] -> tiles
            out = torch.full((padded, t.shape[1]), pad, dtype=t.dtype, device=dev)
            out[:n_runs] = t[idx]
            return to_tiles(out, runs_per_program, self.split)

        opt = [rows(v) for v in self.opt_state.values()]
        m, v = (opt[0], torch.zeros_like(opt[0])) if self.sgd else opt
        if self.running is not None:
            rmean, rvar = rows(self.running[0].squeeze(1)), rows(self.running[1].squeeze(1), 1.0)
        else:
            rmean = rvar = torch.zeros(1, device=dev)
        with np.errstate(divide="ignore"):      # gamma 0: log2 is -inf, the lr 0
            log2 = lambda a: np.log2(np.asarray(a, dtype=np.float64))
            no_adam = np.zeros(n_runs)
            self.state = dict(
                par=rows(self.params), m=m, v=v, rmean=rmean, rvar=rvar,
                steps=i32(self.steps), div=i32(np.zeros(n_runs), 1),   # steps: Chunk.start's
                bs=i32(c.batch, 1), ep=i32(c.epochs), lr=f32(c.lr), log2g=f32(log2(c.gamma)),
                ssize=i32(np.where(c.scheduled, c.step_size, 0)),
                b1=f32(c.beta1), b2=f32(c.beta2),
                log2b1=f32(no_adam if self.sgd else log2(c.beta1), -1.0),
                log2b2=f32(no_adam if self.sgd else log2(c.beta2), -1.0),
                eps=f32(c.eps, 1.0), mom=f32(c.momentum), nest=i32(c.nesterov),
                wdc=f32(c.wd_coupled), wdd=f32(c.wd_decoupled))
            self.padded = padded
        self.boundaries = evaluation_epochs(chunk.runs[self.rows], chunk.eval_every)
        self._table = None      # the shuffled copies in use: (seeds, x, y, first, end epoch)
        self._lane_tables = {}  # _tables_of's answers
        self.curves = torch.full((4, padded, len(chunk.eval_epochs)), float("nan"), device=dev)

        layout = self.net.layout
        offset = dict(zip(layout.names, layout.offsets))
        widths = hidden + [k]                  # the layers' outputs: A, B (depth >= 1), C
        oa, ob = widths[0], (widths[1] if len(widths) > 1 else 1)
        yk = k if loss == "mse" else 1         # y [n, k] targets, or [n] classes or labels
        # the wide kernel's hidden layers are at least 16 wide (tl.dot's smallest tile), and
        # mse's targets as wide as the outputs
        hid = (lambda m: max(16, _pow2(m))) if self.wide else _pow2
        oap = hid(oa) if len(hidden) >= 1 else _pow2(oa)
        obp = hid(ob) if len(hidden) >= 2 else _pow2(ob)
        kp = _pow2(k)
        self.spec = dict(
            P=layout.size, D=d, DP=_pow2(d), OA=oa, OAP=oap, OB=ob, OBP=obp,
            K=k, KP=kp, YK=yk, YKP=kp if self.wide and loss == "mse" else _pow2(yk),
            DEPTH=len(hidden),
            OFF_N=offset.get("0.weight", 0), OFF_A=offset["1.weight"],
            OFF_B=offset.get("3.weight", 0), OFF_C=offset.get("5.weight", 0),
            ACT={"sigmoid": mlp.ACT_SIGMOID, "tanh": mlp.ACT_TANH, "relu": mlp.ACT_RELU}[
                self.activation],
            LOSS={"mse": mlp.LOSS_MSE, "bce_with_logits": mlp.LOSS_BCE,
                  "cross_entropy": mlp.LOSS_CE}[loss],
            OPT=mlp.OPT_SGD if self.sgd else mlp.OPT_ADAM,
            BN=self.running is not None)
        self.spec.update(dict(BLOCK_M=WIDE_ROWS, PRECISION=PRECISION) if self.wide else
                         dict(UNROLL=UNROLL, SPLIT=self.split, BLOCK_R=BLOCK_R,
                              SHUFFLED=bool(c.shuffle.any())))
        self.data = [self.x.contiguous(), self.y.contiguous(), self.x_val.contiguous(),
                     self.y_val.contiguous()]
        if len(self.x_val) == 0:   # a pointer the kernel never reads
            self.data[2:] = [torch.zeros(1, d, device=dev), torch.zeros(1, device=dev)]

    def train_interval(self, e0: int, e1: int):
        """Trains epochs e0..e1-1 and evaluates the runs due after epoch e1: one launch
        (several only if the shuffled copies of the rows would pass ORDER_BYTES)."""
        from ...kernels import mlp, wide as wide_kernels

        c, s, padded = self.c, self.state, self.padded
        col = int(self.chunk.column(e1))
        kernel = wide_kernels.train_wide_kernel if self.wide else mlp.train_kernel
        warps = WIDE_WARPS if self.wide else NUM_WARPS
        for lo, hi, seeds, first in self._launches(e0, e1):
            x, y, o_lo, o_hi = self._rows(lo, hi, seeds, mlp)
            oq, trains = self._tables_of(seeds, first)
            args = (
                s["par"], s["m"], s["v"], s["rmean"], s["rvar"], s["steps"], s["div"],
                s["bs"], s["ep"], s["lr"], s["log2g"], s["ssize"], s["b1"], s["b2"],
                s["log2b1"], s["log2b2"], s["eps"], s["mom"], s["nest"], s["wdc"], s["wdd"],
                oq, x, y, *self.data[2:], o_lo, o_hi - o_lo,
                self.curves, col if hi == e1 else -1, self.curves.shape[2],
                padded, self.n, self.chunk.data.n_val, lo, hi, self.chunk.eval_every)
            self.compiled = launch(kernel, (padded // self.runs_per_program,), self.spec,
                                   self._shape(), *args, num_warps=warps)
            if self.progress is not None:
                left = np.clip(np.minimum(hi, c.epochs) - lo, 0, None)
                self.progress(int((left * c.spe)[trains].sum()))

    def unload(self):
        """Copies the lanes' state back into the group's tensors and the result's curves."""
        s, lanes, split = self.state, self.lanes, self.split
        idx, n_runs = torch.from_numpy(lanes).to(self.device), len(lanes)
        self.params[idx] = from_tiles(s["par"], split)[:n_runs]
        for full, part in zip(self.opt_state.values(), [s["m"], s["v"]]):
            full[idx] = from_tiles(part, split)[:n_runs]
        if self.running is not None:
            self.running[0][idx] = from_tiles(s["rmean"], split)[:n_runs].unsqueeze(1)
            self.running[1][idx] = from_tiles(s["rvar"], split)[:n_runs].unsqueeze(1)
        self.steps[lanes] = s["steps"][:n_runs].cpu().numpy()
        self.diverged[lanes] = s["div"][:n_runs].cpu().numpy() != 0
        curves = self.curves[:, :n_runs].cpu().numpy()
        for k, name in enumerate(METRICS):
            if name in self.result.curves:
                self.result.curves[name][self.rows[lanes]] = curves[k]

    def _shape(self) -> str:
        """The model, as the compile notice names it: 2-64-64-1, bce_with_logits."""
        data = self.chunk.data
        dims = [data.n_features, *self.hidden, data.n_outputs]
        return "-".join(map(str, dims)) + ", " + self.chunk.model.loss

    def _launches(self, e0: int, e1: int):
        """The launches that train epochs [e0, e1): (lo, hi, seeds, first) each, ``seeds``
        the sorted seeds whose shuffled runs train in it, ``first`` whether the runs in
        order do. One launch unless the shuffled copies of the rows would pass ORDER_BYTES:
        then fewer epochs each, and fewer seeds where one epoch of them all does not fit."""
        c = self.c
        seeds = np.unique(c.seed[c.shuffle & (c.epochs > e0)])
        fit = max(1, ORDER_BYTES // self._copy_bytes())   # (seed, epoch) copies a launch holds
        per = max(1, min(len(seeds), fit))                 # seeds a launch
        span = max(1, fit // per)                          # epochs a launch
        return [(lo, min(lo + span, e1), seeds[i:i + per], i == 0)
                for lo in range(e0, e1, span) for i in range(0, max(1, len(seeds)), per)]

    def _copy_bytes(self) -> int:
        """Bytes of one (seed, epoch)'s copy of the training rows, x and y."""
        return self.n * (self.x[:1].numel() + self.y[:1].numel()) * 4

    def _tables_of(self, seeds: np.ndarray, first: bool):
        """Each lane's copy of the rows in a launch, int32 [padded]: its seed's index in
        ``seeds`` (shuffled), -1 (in order: runs in order, in the ``first`` launch of an
        epoch range), -2 (not trained in this launch); and which runs train in it."""
        key = (seeds.tobytes(), first)
        if key in self._lane_tables:
            return self._lane_tables[key]
        c = self.c
        q = np.searchsorted(seeds, c.seed)
        mine = c.shuffle & (q < len(seeds))
        mine[mine] = seeds[q[mine]] == c.seed[mine]
        oq = np.where(mine, q, np.where(c.shuffle | (not first), -2, -1))
        lanes = np.full(self.padded, -2)
        lanes[:len(self.lanes)] = oq[self.lanes]
        self._lane_tables[key] = (torch.tensor(lanes, dtype=torch.int32, device=self.device),
                                  oq > -2)
        return self._lane_tables[key]

    def _rows(self, lo: int, hi: int, seeds: np.ndarray, mlp):
        """The kernels' x and y: the training rows, then, for each of ``seeds`` and each
        epoch o_lo..o_hi-1, a copy of them in that epoch's order (the int32 permutations
        ``order_kernel`` writes, gathered once), covering epochs lo..hi-1 and as many later
        ones as fit in ORDER_BYTES (usually the whole sweep: one copy per group); and
        (o_lo, o_hi)."""
        if not len(seeds):
            return self.data[0], self.data[1], lo, hi
        cached = self._table
        if (cached is not None and np.array_equal(cached[0], seeds) and cached[3] <= lo
                and hi <= cached[4]):
            return cached[1:]
        self._table = None                  # the old copies go before the new ones are made
        dev, n = self.device, self.n
        last = int(self.c.epochs.max())
        hi = max(hi, min(last, lo + ORDER_BYTES // (len(seeds) * self._copy_bytes())))
        epochs = np.arange(lo, hi)
        keys = round_keys(np.repeat(seeds, len(epochs)), np.tile(epochs, len(seeds)))
        keys = torch.tensor(keys.astype(np.int64), device=dev)
        table = torch.empty(len(keys), n, dtype=torch.int32, device=dev)
        half = half_bits(n)
        mlp.order_kernel[mlp.order_grid(len(keys), n, ORDER_BLOCK)](
            keys, table, n, half, (1 << half) - 1, BLOCK=ORDER_BLOCK)
        index = table.view(-1)
        copies = []
        for t in self.data[:2]:
            out = torch.empty((n + len(index), *t.shape[1:]), dtype=t.dtype, device=dev)
            out[:n] = t
            torch.index_select(t, 0, index, out=out[n:])
            copies.append(out)
        self._table = (seeds, *copies, lo, hi)
        return self._table[1:]


def launch(kernel, grid: tuple, spec: dict, shape: str, *args, **kwargs):
    """kernel[grid](*args, **spec, **kwargs). The first launch of a variant in this process
    compiles it (or loads it from Triton's cache); past COMPILE_NOTICE_S a line on stderr
    (above a progress bar) says so."""
    key = (id(kernel), tuple(sorted(spec.items())))
    if key in _LAUNCHED or interpreted():
        return kernel[grid](*args, **spec, **kwargs)
    with said_if_slow(COMPILE_NOTICE_S, f"tinysweep: compiling the triton kernel for {shape} "
                                        f"(5 to 15 s, once per model shape and machine)"):
        out = kernel[grid](*args, **spec, **kwargs)
    _LAUNCHED.add(key)
    return out


def to_tiles(rows: torch.Tensor, runs: int, split: int = 1) -> torch.Tensor:
    """[programs * runs, k] -> [programs, k, split * runs]: each program's state one tile in
    which an entry of its lanes is consecutive floats (constant strides in-kernel), a copy
    per lane: lane j = c * runs + r holds copy c of run r (kernels/mlp.py)."""
    tiles = rows.view(-1, runs, rows.shape[1]).transpose(1, 2)
    return tiles.repeat(1, 1, split).contiguous()


def from_tiles(tiles: torch.Tensor, split: int = 1) -> torch.Tensor:
    """The inverse of to_tiles: each run's state from its first lane's copy."""
    return lane_copies(tiles, split)[0]


def lane_copies(tiles: torch.Tensor, split: int) -> torch.Tensor:
    """[programs, k, split * runs] -> [split, programs * runs, k]: every lane's copy of its
    run's state (all equal, bit for bit, when the lanes of a run stayed in step)."""
    programs, k, lanes = tiles.shape
    return tiles.view(programs, k, split, lanes // split).permute(2, 0, 3, 1).reshape(
        split, -1, k)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def train(chunk: Chunk, device="cuda", progress=None) -> ChunkResult:
    """Trains every run of the chunk with the fused kernels on ``device`` (cuda, or the CPU
    under TRITON_INTERPRET=1)."""
    return torch_backend.train(chunk, device, progress, group_class=_TritonGroup)
