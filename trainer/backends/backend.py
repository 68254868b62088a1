"""What every backend is given and what it returns.

A backend trains a *chunk*: some runs of one sweep, which share the data, the architecture,
the loss and the evaluation interval, and may differ in every per-run hyperparameter.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

import numpy as np

from ..spec.config import ModelSpec, RunParams
from ..spec.runs import Runs

if TYPE_CHECKING:               # data.py builds torch tensors: not imported to check a config
    from ..spec.data import Dataset


def steps_per_epoch(n_train, batch_size):
    """Optimizer steps in one epoch, ceil(n_train / batch_size): the last batch is smaller.
    Ints or integer arrays."""
    return -(-n_train // batch_size)


def evaluation_epochs(runs: Runs, eval_every: int) -> np.ndarray:
    """The union of all runs' evaluation epochs (1-based), sorted: int64 [E]. A run is
    evaluated after every eval_every-th epoch and after its last."""
    last = runs.distinct("epochs")
    multiples = np.arange(eval_every, last.max() + 1, eval_every, dtype=np.int64)
    return np.union1d(multiples, last)


def count_evaluation_epochs(runs: Runs, eval_every: int) -> int:
    """len(evaluation_epochs(...)), without building it."""
    last = runs.distinct("epochs")
    return int(last.max() // eval_every + np.count_nonzero(last % eval_every))


@dataclass(frozen=True)
class Chunk:
    """A backend's input: ``runs`` (resolved, checked columns) on ``data`` with ``model``.

    eval_epochs: the whole sweep's evaluation epochs, sorted [E]: the curve columns.
    """

    model: ModelSpec
    data: Dataset
    runs: Runs
    eval_every: int                     # evaluate after every eval_every-th epoch and the last
    eval_epochs: np.ndarray
    # the runs of the whole sweep (or halving stage) that ``runs`` is a part of, for choices
    # a backend must make alike in every chunk; None: ``runs`` is the whole
    sweep: Runs | None = None
    # where each run goes on from (a row per run of ``runs``), trained from its epoch to the
    # run's ``epochs``; None: from epoch 0 and the seeded initial weights
    start: RunState | None = None

    def start_epoch(self) -> int:
        """The epoch the chunk's runs start from: 0, or the start state's (the fused
        backends train every run of a chunk through the same epochs: one start epoch)."""
        if self.start is None or not len(self.start.epoch):
            return 0
        epochs = np.unique(self.start.epoch)
        if len(epochs) > 1:
            raise ValueError(f"a chunk's runs start from one epoch, got {epochs.tolist()}")
        return int(epochs[0])

    def take(self, rows) -> Chunk:
        """The chunk of runs ``rows`` (a slice or an index array), start state included,
        as part of this chunk's sweep."""
        import dataclasses
        return dataclasses.replace(
            self, runs=self.runs[rows], sweep=self.whole(),
            start=None if self.start is None else self.start.take(rows))

    def whole(self) -> Runs:
        """The runs of the sweep this chunk is part of."""
        return self.runs if self.sweep is None else self.sweep

    def metrics(self) -> list[str]:
        """Names of the curves: train_loss, val_loss (with a validation split), and the
        accuracies for bce_with_logits and cross_entropy."""
        splits = ["train"] + (["val"] if self.data.n_val > 0 else [])
        kinds = ["loss"] + (["accuracy"] if self.model.loss != "mse" else [])
        return [f"{s}_{k}" for k in kinds for s in splits]

    def is_eval_epoch(self, epoch: int, run: RunParams) -> bool:
        """Is there an evaluation after ``epoch`` (1-based) of ``run``?"""
        return epoch % self.eval_every == 0 or epoch == run.epochs

    def column(self, epoch):
        """Curve column of evaluation epoch(s) ``epoch`` (1-based; int or int array)."""
        return np.searchsorted(self.eval_epochs, epoch)

    def empty_result(self) -> ChunkResult:
        """A result for every run of the chunk, to be filled in: NaN curves, no state."""
        n_runs = len(self.runs)
        return ChunkResult(
            curves={m: np.full((n_runs, len(self.eval_epochs)), np.nan, np.float32)
                    for m in self.metrics()},
            diverged=np.zeros(n_runs, dtype=bool), steps=np.zeros(n_runs, dtype=np.int64),
            init={}, final={}, optim={})


@dataclass
class ChunkResult:
    """A backend's output for a chunk of R runs (numpy, float32 unless said otherwise).

    curves: name -> [R, E]; column j holds the evaluation after epoch chunk.eval_epochs[j],
        NaN where the run has none. Names as in Chunk.metrics().
    diverged: bool [R]; steps: int64 [R], optimizer steps taken.
    init, final: state_dict name -> [R, ...], NaN rows for runs whose model lacks the entry.
    optim: optimizer state, 'STATE.NAME' -> [R, ...] (exp_avg, exp_avg_sq, momentum_buffer),
        NaN rows for runs whose optimizer lacks it.
    """

    curves: dict[str, np.ndarray]
    diverged: np.ndarray
    steps: np.ndarray
    init: dict[str, np.ndarray]
    final: dict[str, np.ndarray]
    optim: dict[str, np.ndarray] = field(default_factory=dict)


    def state(self, epoch) -> RunState:
        """Where the runs stand after ``epoch`` (int or int [R]), the epochs they were trained
        to: what a chunk whose ``start`` it is goes on from."""
        epoch = np.broadcast_to(np.asarray(epoch, np.int64), self.steps.shape).copy()
        return RunState(epoch=epoch, steps=self.steps.copy(), model=self.final,
                        optim=self.optim)


@dataclass
class RunState:
    """Runs as they stand after ``epoch`` epochs, to go on training from there (Chunk.start):
    what a backend needs to train epochs ``epoch``.. of a run as if it had never stopped.

    epoch: int64 [R], epochs trained; the schedule's position (StepLR's lr in epoch e is the
        run's lr times gamma at each multiple of step_size up to e, chained as torch's
        StepLR does: ``stepped_lr``) and the shuffle order of the next epoch follow from it.
    steps: int64 [R], optimizer steps taken (Adam's step count, its bias corrections).
    model: state_dict name -> [R, ...] (ChunkResult.final: weights, batchnorm's running
        statistics, standardize's buffers), NaN outside a run's own entries.
    optim: 'STATE.NAME' -> [R, ...] (ChunkResult.optim: exp_avg, exp_avg_sq,
        momentum_buffer; grad_sum for no_zero_grad's accumulated gradients), NaN rows for
        runs without that state.
    """

    epoch: np.ndarray
    steps: np.ndarray
    model: dict[str, np.ndarray]
    optim: dict[str, np.ndarray]

    def take(self, rows) -> RunState:
        """The state of runs ``rows`` (a slice, an index array or a bool mask)."""
        pick = lambda d: {k: v[rows] for k, v in d.items()}
        return RunState(self.epoch[rows], self.steps[rows], pick(self.model), pick(self.optim))

    def entry(self, part: str, name: str, i: int, shape: tuple) -> np.ndarray | None:
        """Run i's entry ``name`` of ``part`` (model or optim) in its own ``shape``; None
        where the state has no such entry, or (optim) it is NaN for this run: no state kept."""
        table = getattr(self, part).get(name)
        if table is None:
            return None
        value = np.ascontiguousarray(table[(i, *corner(shape))])
        return None if part == "optim" and np.isnan(value).all() else value


def stepped_lr(lr, gamma, step_size, scheduled, epoch) -> np.ndarray:
    """The learning rate torch's StepLR gives after ``epoch`` of its steps: lr multiplied by
    gamma at each multiple of step_size up to ``epoch``, one float64 product at a time as
    StepLR chains them (bit for bit). All arguments arrays [R] (or scalars); float64 [R]."""
    lr, gamma, step_size, scheduled, epoch = np.broadcast_arrays(
        *(np.atleast_1d(a) for a in (np.asarray(lr, np.float64), np.asarray(gamma, np.float64),
                                     step_size, scheduled, epoch)))
    decays = np.where(scheduled, np.maximum(epoch, 0) // np.maximum(step_size, 1), 0)
    lr = lr.copy()
    for k in range(int(decays.max(initial=0))):
        lr = np.where(decays > k, lr * gamma, lr)
    return lr


def stack_rows(rows: list[dict]) -> dict[str, np.ndarray]:
    """Stacks per-run dicts of tensors or arrays into name -> [R, ...] float32 arrays, NaN
    where a run lacks a name."""
    import torch
    shapes: dict[str, tuple] = {}
    for row in rows:
        for name, value in row.items():
            shapes[name] = widest(shapes.get(name, ()), np.shape(value))
    out = {}
    for name, shape in shapes.items():
        arr = np.full((len(rows), *shape), np.nan, dtype=np.float32)
        for i, row in enumerate(rows):
            if name in row:
                value = row[name]
                value = value.detach().cpu().numpy() if torch.is_tensor(value) else value
                arr[(i, *corner(np.shape(value)))] = value
        out[name] = arr
    return out


# A sweep whose runs differ in architecture keeps one array per state_dict name, as wide as
# the widest run's entry; a narrower run's entry fills its corner, NaN elsewhere.
def widest(a: tuple, b: tuple) -> tuple:
    """The shape that holds both shapes (elementwise max; the longer's extra dimensions)."""
    if len(a) < len(b):
        a, b = b, a
    return tuple(max(x, y) for x, y in zip(a, b)) + a[len(b):]


def corner(shape: tuple) -> tuple:
    """The index of an entry of ``shape`` in the corner of a wider array."""
    return tuple(slice(0, n) for n in shape)


def put_rows(target: dict, name: str, rows, value: np.ndarray, n_runs: int) -> None:
    """Writes ``value`` [len(rows), ...] into target[name] [n_runs, ...] at ``rows``, growing
    target[name] (NaN) when ``value`` is wider, filling its corner when narrower."""
    shape = tuple(value.shape[1:])
    have = target.get(name)
    if have is None or widest(have.shape[1:], shape) != have.shape[1:]:
        grown = np.full((n_runs, *widest(() if have is None else have.shape[1:], shape)),
                        np.nan, np.float32)
        if have is not None:
            grown[(slice(None), *corner(have.shape[1:]))] = have
        target[name] = have = grown
    have[(rows, *corner(shape))] = value


def fused_unsupported(chunk: Chunk, backend: str, max_depth: int) -> str | None:
    """What no fused backend (triton, numba) trains: a bug, or more than ``max_depth``
    hidden layers; None when the chunk has neither."""
    if bool((chunk.runs.bug != "none").any()):
        return "bug: the fused kernels train correct code only; the torch backend trains bugs"
    for hidden in chunk.runs.architectures():      # each group is trained on its own
        if len(hidden) > max_depth:
            return (f"hidden: the {backend} backend fuses up to {max_depth} hidden layers, "
                    f"got {len(hidden)}")
    return None


@contextmanager
def said_if_slow(seconds: float, message: str):
    """Runs the block; if it takes past ``seconds``, ``message`` goes to stderr (above a
    progress bar) while it goes on: a fused kernel's compile, say."""
    def say():
        from tqdm import tqdm
        tqdm.write(message, file=sys.stderr)
    timer = threading.Timer(seconds, say)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
