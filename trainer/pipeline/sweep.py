"""Running a sweep: config -> runs -> chunks -> a backend -> Results.

``prepare`` does every check that can refuse a sweep (config, search space, data, backend,
device) before anything is trained or written; ``run`` trains and, given ``out``, saves.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..backends.backend import (Chunk, ChunkResult, count_evaluation_epochs, evaluation_epochs,
                      steps_per_epoch)
from ..spec.config import BACKENDS, DEVICES, Config, load_config
from ..spec.errors import UserError
from ..spec.space import MAX_RUNS, expand

if TYPE_CHECKING:               # results.py imports pandas: not needed to check a config
    from ..spec.folds import Folds
    from .results import Results

# Runs x evaluation epochs, per curve: 1e8 float32 values are 400 MB each (train_loss,
# val_loss, accuracies), the most a sweep should hold in memory before writing.
MAX_CURVE_POINTS = 100_000_000


@dataclass(frozen=True)
class Plan:
    """A checked sweep, ready to train."""

    config: Config
    chunk: Chunk            # all runs of the sweep
    backend: str            # reference | torch | triton | numba
    device: str             # cpu | cuda
    chunk_runs: int         # runs per launch
    # data.cv: the splits (repeat, fold), each a contiguous range of runs with a Dataset of
    # its own (folds.py says why); chunk.data is split 0's. None: one Dataset for all runs.
    folds: Folds | None = None

    def bounds(self) -> list[tuple[int, int]]:
        """The sweep's chunks as (first run, last run + 1): chunk_runs at a time, and with
        folds never across two splits."""
        if self.folds is not None:
            return self.folds.bounds(self.chunk_runs)
        n = len(self.chunk.runs)
        return [(lo, min(lo + self.chunk_runs, n)) for lo in range(0, n, self.chunk_runs)]

    def sub_chunk(self, lo: int, hi: int) -> Chunk:
        """Runs lo..hi-1 (one split's, with folds) as a Chunk on their own Dataset."""
        runs, start = self.chunk.runs, self.chunk.start
        sub = dataclasses.replace(self.chunk, runs=runs[lo:hi], sweep=runs,
                                  start=None if start is None else start.take(slice(lo, hi)))
        if self.folds is not None:
            sub = dataclasses.replace(sub, data=self.folds.dataset(self.folds.split_of(lo)))
        return sub

    def n_train(self):
        """The training rows of each run: an int, or with folds int64 [runs]."""
        if self.folds is None:
            return self.chunk.data.n_train
        return np.repeat(self.folds.n_train(), self.folds.settings)


def check_batchnorm_batches(chunk: Chunk, n: int | None = None, first: int = 0) -> None:
    """BatchNorm1d cannot train on a batch of one row: refuse such runs up front. ``n``:
    the runs' training rows (default the chunk's data's); ``first``: the run_id of the
    chunk's first run."""
    n, runs = chunk.data.n_train if n is None else n, chunk.runs
    batch = runs.batch_size
    last = n - (steps_per_epoch(n, batch) - 1) * batch
    bad = (runs.input_norm == "batchnorm") & ((np.minimum(batch, n) == 1) | (last == 1))
    if bad.any():
        run_id = first + int(np.argmax(bad))
        raise UserError(
            f"sweep: run {run_id} (input_norm batchnorm, batch_size {batch[run_id]}) "
            f"would train on a batch of one row ({n} training rows); BatchNorm1d needs >= 2")


def check_bugs(chunk: Chunk) -> None:
    """double_sigmoid is a sigmoid before BCE-with-logits: refused with another loss;
    target_broadcast with cross_entropy, whose class targets do not broadcast (torch
    raises)."""
    needs = {"double_sigmoid": ("bce_with_logits",), "target_broadcast": ("mse", "bce_with_logits")}
    for bug, losses in needs.items():
        bad = chunk.runs.bug == bug
        if chunk.model.loss not in losses and bad.any():
            run_id = int(np.argmax(bad))
            raise UserError(f"bug: run {run_id} has bug {bug}, which needs model.loss "
                            f"{' or '.join(losses)}, not {chunk.model.loss}")


# Without --chunk-runs, a launch holds at most this many floats of one step's batches and
# activations ([runs, widest batch, widest layer]): 2**24 floats, 64 MB, so a sweep of any
# size stays within a few GB. Throughput is flat past a few thousand runs (line study on the
# 2-core CPU: 3.4e7 sample-steps/s at 200 runs, 3.7e7 at 10,000).
SLAB_FLOATS = 1 << 24
# And a chunk's state uses at most this share of the memory free on its device.
MEMORY_SHARE = 0.5


def available_bytes(device: str) -> int:
    """Memory free for a chunk: the CUDA device's free memory, or the CPU's available RAM
    (/proc/meminfo's MemAvailable; 4 GiB where that cannot be read)."""
    if device == "cuda":
        import torch
        return int(torch.cuda.mem_get_info()[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def bytes_per_run(chunk: Chunk, backend: str) -> int:
    """A run's memory in a chunk, about: its parameters, gradients and optimizer state (and
    the torch backend's snapshots and per-run slab of one step), and its curves."""
    n, k = chunk.data.n_train, chunk.data.n_outputs
    widths = [chunk.data.n_features, *max(chunk.runs.architectures(), key=_size), k]
    params = max(_size(h, chunk.data.n_features, k) for h in chunk.runs.architectures())
    curves = 4 * len(chunk.eval_epochs)
    if backend == "triton":    # state in tiles and in the group's tensors: 2 copies of 3
        return 4 * (6 * params + curves + 32)
    if backend == "numba":     # the same, and 144 bytes of per-run constants and state
        return 4 * (7 * params + curves) + 144
    widest_batch = min(int(chunk.runs.batch_size.max()), n)
    slab = widest_batch * max(widths) * (len(widths) + 2)
    return 4 * (8 * params + curves + slab)


def _size(hidden, n_features: int = 1, n_outputs: int = 1) -> int:
    """Parameters of an architecture (with batchnorm's two per feature): its memory."""
    widths = [n_features, *hidden, n_outputs]
    return sum(i * o + o for i, o in zip(widths[:-1], widths[1:])) + 2 * widths[0]


def default_chunk_runs(chunk: Chunk, backend: str = "torch", device: str = "cpu") -> int:
    """Runs per chunk without --chunk-runs: as many as fit in MEMORY_SHARE of the device's
    free memory, and for the torch backend no more than keep one step's slab within
    SLAB_FLOATS."""
    fit = int(MEMORY_SHARE * available_bytes(device)) // bytes_per_run(chunk, backend)
    runs = min(len(chunk.runs), max(1, fit))
    if backend not in ("triton", "numba"):
        widest_batch = min(int(chunk.runs.batch_size.max()), chunk.data.n_train)
        widest_layer = max(chunk.data.n_features,
                           *(max(h, default=1) for h in chunk.runs.architectures()))
        runs = min(runs, max(1, SLAB_FLOATS // (widest_batch * widest_layer)))
    return runs


def resolve_device(device: str | None) -> str:
    import torch
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in DEVICES:
        raise UserError(f"--device: expected one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device: cuda was asked for, but torch sees no CUDA device")
    return device


_SAID = set()


def said_once(line: str) -> None:
    """``line`` on stderr, once per process (a tune study prepares many sweeps)."""
    if line not in _SAID:
        _SAID.add(line)
        print(line, file=sys.stderr, flush=True)


def resolve_backend(backend: str, device: str, chunk: Chunk, launches: int = 1) -> str:
    """The backend that trains the sweep. ``auto``: on a CUDA device triton when the fused
    kernels can train the model in a lane of reasonable size or a wide program
    (triton_backend.oversized_lane), else torch; on the CPU numba when it is installed and
    can train the model, unless the torch backend is predicted clearly faster, its compile
    counted (numba_backend.torch_instead: few runs, or a fresh machine), else torch.
    Raises UserError when the backend asked for cannot run."""
    if backend not in BACKENDS:
        raise UserError(f"--backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "numba" or (backend == "auto" and device == "cpu"):
        from ..backends import numba_backend
        why = numba_backend.available() or numba_backend.unsupported(chunk)
        if backend == "auto":
            if why:
                return "torch"
            instead, why_torch = numba_backend.torch_instead(chunk, launches)
            if why_torch:
                said_once(why_torch)
            return "torch" if instead else "numba"
        if why:
            raise UserError(f"--backend numba: {why}; use --backend torch")
        return backend
    if backend not in ("auto", "triton"):
        return backend
    from ..backends import triton_backend
    why = triton_backend.available() or triton_backend.unsupported(chunk)
    if device == "cpu" and not triton_backend.interpreted():
        why = why or "the triton backend needs --device cuda (or TRITON_INTERPRET=1 on the CPU)"
    if backend == "auto":
        too_large = triton_backend.oversized_lane(chunk)
        return "torch" if why or device != "cuda" or too_large else "triton"
    if why:
        raise UserError(f"--backend triton: {why}; use --backend torch")
    return backend


def prepare(config: str | Path | dict | Config, backend: str = "auto",
            device: str | None = None, chunk_runs: int | None = None, *, data=None,
            target: str | None = None) -> Plan:
    """Checks everything about a sweep; raises UserError naming the first problem. ``config``,
    ``data`` and ``target``: as for ``run``."""
    config = load_config(config, data, target)
    runs = expand(config)
    data = config_data(config, folds=True)
    folds = None
    if config.data.cv is not None:
        from ..spec.folds import Folds, make_assignment
        from ..spec.runs import tile_runs
        table = make_assignment(config.data.cv, data.y_train.numpy(), config.model.loss)
        folds = Folds(data, table, len(runs))
        if len(runs) * folds.splits > MAX_RUNS:
            raise UserError(f"data.cv: {len(runs):,} settings x {folds.splits} folds is more "
                            f"runs than a sweep holds ({MAX_RUNS:,})")
        runs = tile_runs(runs, folds.splits)
    evaluations = count_evaluation_epochs(runs, config.eval_every)
    if len(runs) * evaluations > MAX_CURVE_POINTS:
        raise UserError(f"train.eval_every: {len(runs):,} runs x {evaluations:,} evaluation "
                        f"epochs is more curve points than fit in memory "
                        f"({MAX_CURVE_POINTS:.0e}); evaluate less often")
    return plan_for(config, runs, data, backend, device, chunk_runs, folds)


def config_data(config: Config, folds: bool = False):
    """The config's dataset, loaded and checked. With data.cv (``folds``: the caller
    trains folds), every row is a training row (val_fraction is 0); a caller that trains
    no folds refuses data.cv."""
    from ..spec.data import load_data
    if config.data.cv is not None and not folds:
        raise UserError("data.cv: only `tinysweep run` (and tinysweep.run) train folds so "
                        "far; use data.val_fraction here")
    return load_data(config.data.source, config.data.params, seed=config.data.seed,
                     val_fraction=config.data.val_fraction, loss=config.model.loss,
                     base_dir=config.base_dir, memory=config.memory)


def plan_for(config: Config, runs, data, backend: str, device: str | None,
             chunk_runs: int | None, folds: Folds | None = None) -> Plan:
    """The plan that trains ``runs`` on ``data`` (with ``folds``, on its splits): the
    checks that need the runs, the device and the backend resolved, the chunk size."""
    chunk = Chunk(config.model, data if folds is None else folds.dataset(0), runs,
                  config.eval_every, evaluation_epochs(runs, config.eval_every))
    if folds is None:
        check_batchnorm_batches(chunk)
    else:                           # a split's runs are the settings: check each split's n
        settings = dataclasses.replace(chunk, runs=runs[:folds.settings])
        for split, n in enumerate(folds.n_train()):
            check_batchnorm_batches(settings, int(n), split * folds.settings)
    check_bugs(chunk)
    check_halving(config, runs)
    device = resolve_device(device)
    backend = resolve_backend(backend, device, chunk, 1 if folds is None else folds.splits)
    if backend in ("reference", "numba"):
        device = "cpu"          # both train on the CPU, whatever --device says
    if chunk_runs is None:
        chunk_runs = default_chunk_runs(chunk, backend, device)
    elif isinstance(chunk_runs, bool) or not isinstance(chunk_runs, int) or chunk_runs < 1:
        raise UserError(f"--chunk-runs: expected an integer >= 1, got {chunk_runs!r}")
    return Plan(config, chunk, backend, device, chunk_runs, folds)


def train_chunk(plan: Plan, chunk: Chunk, progress=None) -> ChunkResult:
    if plan.backend == "reference":
        from ..backends import reference
        return reference.train(chunk, progress=progress)
    if plan.backend == "triton":
        from ..backends import triton_backend
        return triton_backend.train(chunk, device=plan.device, progress=progress)
    if plan.backend == "numba":
        from ..backends import numba_backend
        return numba_backend.train(chunk, progress=progress)
    from ..backends import numba_backend, torch_backend
    if plan.device != "cpu":
        return torch_backend.train(chunk, device=plan.device, progress=progress)
    with numba_backend.torch_beside_warming():
        return torch_backend.train(chunk, device=plan.device, progress=progress)


class ChunkFailures(Exception):
    """Chunks that kept failing on the Ray executor: (first run_id, last + 1, error) each.
    Every other chunk was kept (in the store, when there is one)."""

    def __init__(self, failed: list[tuple[int, int, str]]):
        self.failed = failed
        super().__init__("; ".join(f"runs {lo}..{hi - 1}: {err}" for lo, hi, err in failed))


# A Ray task whose worker dies is restarted this many times; so is one that raises.
RAY_RETRIES = 2


def train_slice(plan: Plan, lo: int, hi: int) -> ChunkResult:
    """Runs lo..hi-1 of the plan, trained as one chunk (a Ray task's body)."""
    return train_chunk(plan, plan.sub_chunk(lo, hi))


def _train_on_ray(plan: Plan, todo: list[tuple[int, int]], done, task_fn=train_slice):
    """Trains chunks ``todo`` as Ray tasks on the cluster RAY_ADDRESS names (else a local
    instance), one GPU each on CUDA, one CPU otherwise; calls ``done(lo, hi, part)`` as each
    finishes. Raises ChunkFailures, after every other chunk is done, for those that failed
    RAY_RETRIES + 1 times."""
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray: ray is not installed; pip install 'tinysweep[ray]'")
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, log_to_driver=False,
                 include_dashboard=False)
    resources = {"num_gpus": 1} if plan.device == "cuda" else {"num_cpus": 1}
    task = ray.remote(max_retries=RAY_RETRIES, retry_exceptions=True, **resources)(task_fn)
    shared = ray.put(plan)
    pending = {task.remote(shared, lo, hi): (lo, hi) for lo, hi in todo}
    failed = []
    while pending:
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        lo, hi = pending.pop(ref)
        try:
            part = ray.get(ref)
        except ray.exceptions.RayError as e:
            cause = getattr(e, "cause", None) or e
            failed.append((lo, hi, f"{type(cause).__name__}: {str(cause).splitlines()[0][:200]}"))
            continue
        done(lo, hi, part)
    if failed:
        raise ChunkFailures(failed)


def execute(plan: Plan, progress: bool = False, store=None, executor: str = "local",
            task_fn=train_slice, raw: bool = False) -> Results:
    """Trains every chunk of the plan and assembles the results (_execute). Then, where
    auto trained on torch rather than wait for the numba kernels' first compile, has them
    compiled in the background for the next sweep (numba_backend.compile_pending): not
    before, where the compile would take the cores torch's threads train on."""
    results = _execute(plan, progress, store, executor, task_fn, raw)
    if not raw and plan.device == "cpu":
        from ..backends import numba_backend
        numba_backend.compile_pending()
    return results


def _execute(plan: Plan, progress: bool = False, store=None, executor: str = "local",
             task_fn=train_slice, raw: bool = False) -> Results:
    """Trains every chunk of the plan and assembles the results.

    With a ChunkStore, chunks already in it are loaded instead of trained, and each newly
    trained chunk is saved there as soon as it is done. ``executor``: "local" trains the
    chunks here, one after the other; "ray" as Ray tasks (``task_fn``: their body).
    With sweep.halving, the runs train in stages (_execute_halving). ``raw``: the merged
    ChunkResult, not assembled (a stage of halving).
    """
    if plan.config.sweep.halving is not None and not raw:
        return _execute_halving(plan, progress, executor, task_fn, store)
    if plan.config.sweep.hyperband is not None and not raw:
        return _execute_hyperband(plan, progress, executor, task_fn, store)
    if plan.config.sweep.pbt is not None and not raw:
        return _execute_pbt(plan, progress, executor, task_fn, store)
    from .results import assemble, merge_chunks
    runs = plan.chunk.runs
    begun = 0 if plan.chunk.start is None else plan.chunk.start.epoch
    steps = (runs.epochs - begun) * steps_per_epoch(plan.n_train(), runs.batch_size)
    by_run = plan.backend == "reference"   # the reference reports whole runs
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(runs) if by_run else int(steps.sum()), unit="run" if by_run else "step",
                   unit_scale=True, desc=plan.config.name, leave=False, dynamic_ncols=True)
    if store is not None:
        store.start(plan)
    parts: dict[int, ChunkResult] = {}

    def finished(lo: int, hi: int, part: ChunkResult, trained: bool = True) -> None:
        if trained and store is not None:
            store.save(lo, part)
        if bar is not None and (executor == "ray" or not trained):
            bar.update(hi - lo if by_run else int(steps[lo:hi].sum()))
        parts[lo] = part

    try:
        todo = []
        for lo, hi in plan.bounds():
            part = store.load(lo) if store is not None else None
            if part is not None:
                finished(lo, hi, part, trained=False)
            elif executor == "ray":
                todo.append((lo, hi))
            else:
                finished(lo, hi, train_chunk(plan, plan.sub_chunk(lo, hi),
                                             bar.update if bar is not None else None))
        if todo:
            _train_on_ray(plan, todo, finished, task_fn)
    finally:
        if bar is not None:
            bar.close()
    merged = merge_chunks([parts[k] for k in sorted(parts)])
    return merged if raw else assemble(plan.config.to_dict(), plan.chunk, merged,
                                       folds=plan.folds)


def check_halving(config: Config, runs) -> None:
    """The rungs fall within the runs' epochs: a rung at or past every run's last epoch
    would stop nothing. Hyperband's min_epochs is below the runs' one epochs budget."""
    hyperband = config.sweep.hyperband
    if hyperband is not None:
        if config.data.cv is not None:
            raise UserError("sweep.hyperband: not used with data.cv yet (a rung would compare "
                            "runs of different folds); drop one of them")
        budgets = runs.distinct("epochs")
        if len(budgets) > 1:
            raise UserError(f"sweep.hyperband: the runs' epochs are its largest budget and must "
                            f"be one value, got {budgets.tolist()}; do not sweep epochs")
        if hyperband["min_epochs"] >= budgets[0]:
            raise UserError(f"sweep.hyperband.min_epochs: {hyperband['min_epochs']} is not "
                            f"below the runs' epochs ({budgets[0]})")
        if hyperband["metric"] == "val_loss" and config.data.val_fraction == 0:
            raise UserError("sweep.hyperband.metric: val_loss needs a validation split "
                            "(data.val_fraction > 0)")
    if config.sweep.pbt is not None:
        check_pbt(config, runs)
    halving = config.sweep.halving
    if halving is None:
        return
    if config.data.cv is not None:
        raise UserError("sweep.halving: not used with data.cv yet (a rung would compare "
                        "runs of different folds); drop one of them")
    last = int(runs.distinct("epochs").max())
    if halving["rungs"][-1] >= last:
        raise UserError(f"sweep.halving.rungs: {halving['rungs'][-1]} is not before the last "
                        f"epoch ({last}); a rung stops runs before they end")
    if halving["metric"] == "val_loss" and config.data.val_fraction == 0:
        raise UserError("sweep.halving.metric: val_loss needs a validation split "
                        "(data.val_fraction > 0)")


class _Stages:
    """The stages of a schedule that continues runs (halving): each trains some runs from
    the epoch they reached to a later one, from the state they had there (Chunk.start),
    through ``execute``, and keeps every run's latest result in ``result``; with a chunk
    store, each stage's chunks in a folder of their own (.chunks/NAME), so that --resume
    retrains nothing."""

    def __init__(self, plan: Plan, progress: bool, executor: str, task_fn, store):
        self.plan, self.progress, self.executor, self.task_fn = plan, progress, executor, task_fn
        self.store = store
        if store is not None:
            store.start(plan)
        chunk = plan.chunk
        self.result = chunk.empty_result()
        self.reached = np.zeros(len(chunk.runs), np.int64)   # epochs each run trained
        self.steps_trained = 0                                 # optimizer steps executed

    def train(self, rows: np.ndarray, epochs, name: str) -> tuple[ChunkResult, Chunk]:
        """Trains runs ``rows`` (all at one epoch) on to ``epochs`` (int or int [rows]);
        returns the stage's result and its chunk."""
        from .store import ChunkStore
        plan, chunk = self.plan, self.plan.chunk
        e0 = int(self.reached[rows[0]])
        stage_runs = chunk.runs[rows].replace(
            epochs=np.broadcast_to(np.asarray(epochs, np.int64), (len(rows),)).copy())
        start = None
        if e0 > 0:
            start = self.result.state(self.reached).take(rows)
        sub = dataclasses.replace(chunk, runs=stage_runs, start=start,
                                  eval_epochs=evaluation_epochs(stage_runs, chunk.eval_every))
        store = None if self.store is None else ChunkStore(
            self.store.out, f"{self.store.dir.name}/{name}")
        part = execute(dataclasses.replace(plan, chunk=sub), self.progress, store,
                       self.executor, self.task_fn, raw=True)
        self.steps_trained += int((part.steps - (0 if start is None else start.steps)).sum())
        _put_runs(self.result, rows, part, sub, chunk, after=e0)
        self.reached[rows] = np.where(part.diverged, self.reached[rows], stage_runs.epochs)
        return part, sub


def _execute_halving(plan: Plan, progress: bool, executor: str, task_fn,
                     store=None) -> Results:
    """Successive halving (sweep.halving), as every backend runs it: the runs train to the
    first rung; among those of one epochs budget still training, the best ``keep`` fraction
    by the metric at the rung (ties: the lower run_id) go on, at least one, and the others
    stop there; and so on at each rung, the survivors then training to their last epoch.
    A run trained to a rung (its epochs set to the rung: a run's training up to an epoch
    does not depend on how many epochs follow, and the rung is one of its evaluations) is
    the run stopped there. The survivors go on from the state they reached (_Stages):
    nothing is trained twice, and the steps executed are the table's."""
    from .results import assemble
    halving, chunk = plan.config.sweep.halving, plan.chunk
    runs, n = chunk.runs, len(chunk.runs)
    epochs = np.asarray(runs.epochs)
    stages = _Stages(plan, progress, executor, task_fn, store)
    stopped = np.full(n, np.nan)
    alive = np.arange(n)
    metric = halving["metric"]
    for k, rung in enumerate(halving["rungs"]):
        stage = alive[epochs[alive] > rung]
        if not len(stage):
            continue
        part, sub = stages.train(stage, rung, f"stage-{k}")
        value = part.curves[metric][:, sub.column(rung)].astype(np.float64)
        out = np.isnan(value) | part.diverged              # diverged: done, not stopped
        go_on = np.zeros(len(stage), bool)
        budgets = epochs[stage]
        for budget in np.unique(budgets):                  # comparable runs: one budget
            group = np.flatnonzero((budgets == budget) & ~out)
            if not len(group):
                continue
            keep = max(1, math.ceil(halving["keep"] * len(group)))
            ranked = group[np.lexsort((stage[group], value[group]))]
            go_on[ranked[:keep]] = True
        done = ~go_on
        stopped[stage[done & ~out]] = rung
        alive = np.setdiff1d(alive, stage[done])
    # the survivors, and the runs whose budget ended before a rung, to their last epoch:
    # one stage per epoch they start from
    for e0 in np.unique(stages.reached[alive]):
        rows = alive[stages.reached[alive] == e0]
        stages.train(rows, epochs[rows], f"last-from-{e0}")
    return assemble(plan.config.to_dict(), chunk, stages.result, stopped=stopped,
                    steps_trained=stages.steps_trained)


def brackets(n_runs: int, epochs: int, min_epochs: int, eta: float, eval_every: int,
             seed: int = 0) -> tuple[np.ndarray, dict[int, list[int]]]:
    """Li et al.'s Hyperband brackets over a sweep's runs: s_max is the largest s with
    min_epochs * eta**s <= epochs; bracket s (s_max..0) starts n_s = ceil((s_max + 1) /
    (s + 1) * eta**s) settings at epochs * eta**-s and halves them s times, by eta, up to
    ``epochs``. The sweep's runs are its settings: they go to the brackets in proportion
    to n_s (largest remainders; at least one each while runs last), in the order of a
    permutation seeded by ``seed`` (a grid's neighbours do not share a bracket).

    Returns each run's bracket (int64 [runs]) and each bracket's rungs: its evaluation
    epochs below ``epochs`` (epochs * eta**(i - s), i < s, rounded to multiples of
    eval_every, repeats dropped)."""
    s_max = 0
    while min_epochs * eta ** (s_max + 1) <= epochs * (1 + 1e-9):
        s_max += 1
    levels = np.arange(s_max, -1, -1)
    n_s = np.ceil((s_max + 1) / (levels + 1) * float(eta) ** levels)
    share = n_runs * n_s / n_s.sum()
    counts = np.floor(share).astype(np.int64)
    for i in np.argsort(-(share - counts), kind="stable")[:n_runs - counts.sum()]:
        counts[i] += 1
    order = np.random.default_rng(seed).permutation(n_runs)
    bracket = np.empty(n_runs, np.int64)
    bracket[order] = np.repeat(levels, counts)
    rungs = {}
    for s in levels:
        at = [epochs * float(eta) ** (i - s) for i in range(s)]
        at = [max(eval_every, int(round(e / eval_every)) * eval_every) for e in at]
        rungs[int(s)] = sorted({e for e in at if e < epochs})
    return bracket, rungs


def _execute_hyperband(plan: Plan, progress: bool, executor: str, task_fn,
                       store=None) -> Results:
    """Hyperband (sweep.hyperband), as every backend runs it: the runs split into brackets
    (``brackets``); in each, successive halving: at each rung, the best 1/eta of the
    bracket's runs still training by the metric (ties: the lower run_id; at least one) go
    on from the state they reached, the others stop there. Every stage of every bracket
    goes through _Stages: nothing is trained twice."""
    from .results import assemble
    hb, chunk = plan.config.sweep.hyperband, plan.chunk
    runs, n = chunk.runs, len(chunk.runs)
    epochs = int(runs.distinct("epochs")[0])
    bracket, rungs = brackets(n, epochs, hb["min_epochs"], hb["eta"], chunk.eval_every,
                              plan.config.sweep.seed)
    stages = _Stages(plan, progress, executor, task_fn, store)
    stopped = np.full(n, np.nan)
    for s, at in rungs.items():
        alive = np.flatnonzero(bracket == s)
        for k, rung in enumerate(at):
            if not len(alive):
                break
            part, sub = stages.train(alive, rung, f"bracket-{s}-rung-{k}")
            value = part.curves[hb["metric"]][:, sub.column(rung)].astype(np.float64)
            ok = np.flatnonzero(~(np.isnan(value) | part.diverged))
            keep = max(1, int(len(alive) / hb["eta"] + 1e-9))
            go_on = ok[np.lexsort((alive[ok], value[ok]))][:keep]
            done = np.setdiff1d(np.arange(len(alive)), go_on)
            stopped[alive[np.intersect1d(done, ok)]] = rung
            alive = np.sort(alive[go_on])
        if len(alive):
            stages.train(alive, epochs, f"bracket-{s}-last")
    return assemble(plan.config.to_dict(), chunk, stages.result, stopped=stopped,
                    steps_trained=stages.steps_trained, columns={"bracket": bracket})


# What every member of a PBT population shares: a member copies another's weights and
# optimizer state (their shapes), and all rank at the same epochs.
PBT_SHARED = ("hidden", "activation", "input_norm", "optimizer", "bug", "epochs")
# Perturbed values of these stay below 1 (Adam's bias correction divides by 1 - beta**t,
# 0 in float32 at beta = 1 - 2**-25): a factor that would pass it gives this.
PBT_BELOW_ONE = 0.9999


def check_pbt(config: Config, runs) -> None:
    """PBT's checks that need the runs: no folds, one value of each PBT_SHARED column,
    rounds before the last epoch."""
    pbt = config.sweep.pbt
    if config.data.cv is not None:
        raise UserError("sweep.pbt: not used with data.cv yet (members of different folds "
                        "would copy each other); drop one of them")
    for name in PBT_SHARED:
        if len(runs.distinct(name)) > 1:
            raise UserError(f"sweep.pbt: members copy each other's state, so {name} must be "
                            f"one value; do not sweep it")
    epochs = int(runs.distinct("epochs")[0])
    if pbt["interval"] >= epochs:
        raise UserError(f"sweep.pbt.interval: {pbt['interval']} is not below the runs' "
                        f"epochs ({epochs})")


def _resample(config: Config, name: str, rng: np.random.Generator, default):
    """One value of ``name`` redrawn from the sweep's search space: a list's (or grid
    range's) value picked at random, a uniform or loguniform drawn; ``default`` (the run's
    own fixed value) where the space does not vary it."""
    from ..spec.config import check_run_value
    from ..spec.space import _RANDOM_FORMS, grid_axis
    space = config.sweep.params.get(name)
    if isinstance(space, dict) and any(k in _RANDOM_FORMS for k in space):
        form = next(k for k in space if k in _RANDOM_FORMS)
        lo, hi = space[form]
        value = rng.uniform(lo, hi) if form == "uniform" else \
            math.exp(rng.uniform(math.log(lo), math.log(hi)))
        value = round(value) if space.get("int") else value
    elif space is not None:
        values, _ = grid_axis(space, f"sweep.params.{name}")
        value = values[int(rng.integers(len(values)))]
        value = value.item() if hasattr(value, "item") else value
    else:
        value = default.item() if hasattr(default, "item") else default
    return check_run_value(name, value, f"sweep.params.{name}")


def _explore(config: Config, name: str, value, rng: np.random.Generator):
    """A parent's value of ``name`` explored: redrawn from the search space with
    resample_probability, else multiplied by one of the factors (batch_size: one of the
    choices), drawn uniformly; betas kept below 1."""
    pbt = config.sweep.pbt
    listed = pbt["perturb"][name]
    if rng.random() < pbt["resample_probability"]:
        return _resample(config, name, rng, value)
    pick = listed[int(rng.integers(len(listed)))]
    if name == "batch_size":
        return pick
    value = value * pick
    return min(value, PBT_BELOW_ONE) if name in ("beta1", "beta2") else value


def pbt_rounds(epochs: int, interval: int) -> list[int]:
    """The epochs where PBT exploits and explores: every ``interval`` epochs, before the
    last."""
    return list(range(interval, epochs, interval))


def _execute_pbt(plan: Plan, progress: bool, executor: str, task_fn,
                 store=None) -> Results:
    """Population based training (sweep.pbt), as every backend runs it. The runs are the
    population; they train ``interval`` epochs at a time through _Stages. At each round's
    epoch e, the members rank by the metric at e (lower is better; NaN and diverged last;
    ties: the lower run_id). With q = min(ceil(quantile * n), n // 2), each of the bottom q,
    in run_id order, exploits: it takes the state (weights, running statistics, optimizer
    state and step count) of a member of the top q drawn by np.random.default_rng((seed,
    round)), and the parent's values of the perturbed params; then explores: per perturbed
    param, in the config's order, redraws it from the search space with
    resample_probability, else multiplies it by a factor (batch_size: takes a choice) drawn
    from its list. Its other hyperparameters, and its own curves up to e, stay its own.
    A diverged member that is not exploited stays stopped.

    Results: results.csv has each member's final values; Results.history() a row per
    member at epoch 0 and at each round (run_id, epoch, the perturbed params from then on,
    parent: the run whose state it took, -1 none)."""
    import pandas as pd

    from .results import assemble
    config, chunk = plan.config, plan.chunk
    pbt, n = config.sweep.pbt, len(chunk.runs)
    names = list(pbt["perturb"])
    epochs = int(chunk.runs.distinct("epochs")[0])
    values = {k: np.array(getattr(chunk.runs, k), copy=True) for k in names}
    stages = _Stages(plan, progress, executor, task_fn, store)
    q = min(math.ceil(pbt["quantile"] * n), n // 2)
    ids = np.arange(n)
    history = [pd.DataFrame({"run_id": ids, "epoch": 0, **{k: v.copy() for k, v in
                                                           values.items()}, "parent": -1})]
    e0 = 0
    rounds = pbt_rounds(epochs, pbt["interval"])
    for k, e in enumerate([*rounds, epochs]):
        rows = np.flatnonzero(stages.reached == e0)
        if len(rows):
            stages.train(rows, e, f"pbt-{k}")
        if e == epochs:
            break
        result = stages.result
        metric = result.curves[pbt["metric"]][:, chunk.column(e)].astype(np.float64)
        metric[result.diverged | ~(stages.reached == e)] = np.nan
        ranked = ids[np.lexsort((ids, np.nan_to_num(metric, nan=np.inf)))]
        parent = np.full(n, -1)
        if q > 0:
            top, bottom = ranked[:q], np.sort(ranked[n - q:])
            rng = np.random.default_rng((config.sweep.seed, k))
            for child in bottom:
                source = int(top[rng.integers(q)])
                parent[child] = source
                for name in names:
                    values[name][child] = _explore(config, name, values[name][source], rng)
            children = bottom
            sources = parent[bottom]
            for state in (result.final, result.optim):
                for table in state.values():
                    table[children] = table[sources]
            result.steps[children] = result.steps[sources]
            result.diverged[children] = False
            stages.reached[children] = e
        chunk = dataclasses.replace(chunk, runs=chunk.runs.replace(**values))
        stages.plan = dataclasses.replace(stages.plan, chunk=chunk)
        history.append(pd.DataFrame({"run_id": ids, "epoch": e, **{
            k: v.copy() for k, v in values.items()}, "parent": parent}))
        e0 = e
    return assemble(config.to_dict(), chunk, stages.result, steps_trained=stages.steps_trained,
                    history=pd.concat(history, ignore_index=True))


def _put_runs(result: ChunkResult, rows: np.ndarray, part: ChunkResult, sub: Chunk,
              chunk: Chunk, after: int = 0) -> None:
    """Writes a stage's runs (``part``, curves on ``sub``'s evaluation epochs) into the
    whole sweep's ``result`` at ``rows``: the curves after epoch ``after`` (where the
    stage started), the rest whole."""
    from ..backends.backend import put_rows
    later = sub.eval_epochs > after
    columns = chunk.column(sub.eval_epochs[later])
    for name, values in part.curves.items():
        result.curves[name][np.ix_(rows, columns)] = values[:, later]
    result.diverged[rows] = part.diverged
    result.steps[rows] = part.steps
    for target, source in ((result.init, part.init), (result.final, part.final),
                           (result.optim, part.optim)):
        for name, value in source.items():
            put_rows(target, name, rows, value, len(result.steps))


def run(config: str | Path | dict | Config, backend: str = "auto", device: str | None = None,
        out: str | Path | None = None, chunk_runs: int | None = None,
        progress: bool = False, executor: str = "local", *, data=None,
        target: str | None = None, save_data: bool = False, resume: bool = False) -> Results:
    """Trains a sweep and returns its Results.

    config: a YAML or JSON file's path, a dict of the same schema, or a Config. Without
        ``name``, a file's sweep is named after the file, a dict's ``sweep``.
    data: data in memory, replacing the config's data source: an ``(X, y)`` pair of numpy
        arrays or torch tensors (X [n] or [n, d], y [n] or [n, 1]), or a pandas DataFrame
        whose column ``target`` holds y and whose other numeric columns are the features.
        The resolved config records its shape and a content hash, not the data.
    out: a results directory to write (as ``tinysweep run --out``; results already in it
        are replaced), held locked against other runs while the sweep trains and writes.
        Finished chunks are kept there, so that ``resume=True`` finishes an interrupted
        sweep. ``save_data``: also write the in-memory data there as data.npz, so that
        ``tinysweep run DIR/config.yaml --out DIR --resume`` can find it.
    backend, device, chunk_runs, executor: as the command's --backend, --device,
        --chunk-runs and --executor. progress: a progress bar on stderr.

    Raises UserError for a bad config or bad data (before anything is written), WriteError
    when a result file cannot be written.
    """
    if executor not in ("local", "ray"):
        raise UserError(f"executor: expected local or ray, got {executor!r}")
    plan = prepare(config, backend, device, chunk_runs, data=data, target=target)
    if save_data and (out is None or plan.config.memory is None):
        raise UserError("save_data: only used with data=... and out=...")
    if out is None:
        return execute(plan, progress=progress, executor=executor)
    from . import outdir
    out = Path(out)
    outdir.check_out(out, "out")
    with outdir.locked(out, "out"):
        store = outdir.prepare_out(out, plan, resume, overwrite=not resume, flag="out")
        if store is None:                  # resume=True on a finished sweep
            from .results import load
            return load(out)
        results = execute(plan, progress=progress, store=store, executor=executor)
        write_results(results, plan, out, save_data=save_data)
        store.clear()
    return results


def write_results(results: Results, plan: Plan, out: Path, save_data: bool = False) -> None:
    """Writes the results directory; with ``save_data``, the in-memory data beside it first.
    (The command's plots and reports: report.save_with_report, which writes the results
    too.)"""
    if save_data:
        from ..spec.data import SAVED_DATA
        from .results import atomic_write
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / SAVED_DATA, plan.config.memory.save)
    results.save(out)
