"""The numba backend: each group of runs trained on the CPU by compiled kernels
(kernels/numba_mlp.py), one call per window of epochs and range of blocks: the CPU twin of
the triton backend.

Runs are grouped as in the torch backend (input normalization, optimizer family), whose
set-up (initial weights, standardized data, result writing) this backend shares: one
``_NumbaGroup`` trains one group, one architecture (``load`` reads it: layers, activation,
loss, input normalization), so that grouping runs by architecture is a loop over groups.
Within a group, runs are
sorted by shuffle, seed, epochs and batch size, so that the ``LANES`` runs of a block
usually read the same rows (one order: broadcast loads) and end their batches together.
The permutations the shuffled runs need are written by ``order_tables`` (one table per
(seed, epoch)), as many epochs at a time as fit in ORDER_BYTES; the group's kernel (one
per depth and output kind: ``numba_mlp.train_blocks``) then trains those epochs,
evaluating each run when due, with the state in per-block tiles between calls.

The blocks are spread over ``numba.get_num_threads()`` threads (``numba.set_num_threads``
sets it), each calling the kernel, which releases the GIL, on ranges of blocks taken in
turn. A run's arithmetic is its lane's alone, so the results do not depend on the number of
threads. (numba's prange did the same, but its parallel region re-optimized the whole
kernel once more: 31 s of compilation against 13 for the block function alone.)

numba is imported only when a kernel runs (``available`` asks importlib), so checking a
config or importing tinysweep never loads it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

from . import torch_backend
from .backend import (Chunk, ChunkResult, fused_unsupported, said_if_slow, steps_per_epoch,
                      stepped_lr)
from ..spec.order import half_bits, round_keys
from .torch_backend import _Group

MAX_DEPTH = 2
# Permutation tables (int32 [seeds, epochs, n]) stay under this (64 MB); a window holds
# as many epochs as fit.
ORDER_BYTES = 1 << 26
# A window of epochs (a kernel call per range of blocks) lasts about this long at most, as
# LANE_WEIGHT_S predicts it, so that the progress bar moves: about a second of the 2-core
# Xeon on the 1-16-1 MLP, whose rows take twice the prediction, 0.4 s on the line model.
# A window costs each block its set-up (its workspace, lanes' constants, state in and
# out: about 2.3 us), and the line headline's windows of one epoch (1e9 sample-steps, the
# cap before) took 1.73 s for 200,000 runs where windows of 10 epochs took 1.15 to 1.19 s.
WINDOW_S = 0.4
CURVES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")   # the kernel's order
# Ranges of blocks per thread and call: enough that a thread whose blocks end early takes
# more, few enough that a call's dispatch (tens of us) stays out of sight.
RANGES_PER_THREAD = 4
ROWS_RANGES = 16
# A block's optimizer step costs about as much as this many of its rows (the line model
# at 64 lanes: 234 ns a step, 4.9 ns a row), for ranges of blocks of equal cost.
STEP_ROWS = 48
# Groups of up to this many blocks a thread may train side by side (side_by_side).
SIDE_BY_SIDE_BLOCKS = 4
# A kernel variant not yet on this machine compiles in 9 to 13 s (bench/NOTES.md), one from
# numba's cache loads in about 0.5: past this many seconds of preparing a kernel, the
# progress bar's reader is told what the wait is.
COMPILE_NOTICE_S = 2.0
# A variant's first compile on this machine, for auto's choice (torch_instead), by its
# outputs (multi): 7.0 s for one output, 11.2 for K (their tiles of rows) at 8 lanes,
# measured on the 2-core Xeon, quiet, 2026-12-06 (bench/NOTES.md); less 8% and 10% since
# the helpers have no Python wrapper (a cold process each, old and new in turns,
# 2026-12-07: 8.5 -> 7.8 s and 13.5 -> 12.1 s on a slower day).
COLD_COMPILE_S = {False: 6.4, True: 9.9}
# The kernel one run at a time, one for every model: 5.6 s to compile in a process that has
# numba loaded, and SweepSearchCV's first fit on digits in a new process with an empty
# cache took 7.8 to 9.0 s on it against 0.6 s warm (2-core Xeon, quiet, 2026-12-06); 18%
# less since (8.5 -> 7.0 s in a cold process, 2026-12-07; the first fit 8.25 s on that
# slower day).
ROWS_COMPILE_S = 6.5


# Lanes a block, per group (kernels/numba_mlp.py: with_lanes): 64, or NARROW where the
# group's runs fill 64-lane blocks poorly. A narrow lane costs NARROW_COST wide ones, the
# middle of what was measured one thread, full blocks (2-core Xeon, 2026-12-06): 1.0 for
# digits' 64-wide models, 1.6 for the batchnorm 2-32-32-1, 2.0 for the 1-16-1 MLP (the
# per-row bookkeeping is shared by 8 runs, not 64). So a group of 40 keeps 64, one run
# takes 8. Models with K outputs take 8 whatever their runs: their rows go through the
# layers in tiles (numba_mlp's TILE), whose vectors of 64 lanes no longer fit the
# registers. Per lane-row, digits with 16 hidden units: 126 cpu-ns at 8 lanes against
# 169 at 64; 32 units: 224 against 322; 16 and 16: 164 against 195 (full blocks, 5 epochs,
# batch 128, taken one after the other, 2026-12-06).
WIDE, NARROW = 64, 8
NARROW_COST = 1.6
# A narrow lane of a K-output model, its rows in tiles, against LANE_WEIGHT_S: digits' 72-run
# grid trained in 0.60 s against 1.03 predicted at NARROW_COST, one run of 64-32-10 in 0.127
# s against 0.244 (2-core Xeon, warm, 2026-12-06).
TILED_COST = 0.9
FORCE_LANES: int | None = None      # tests: every group at this width

# One run at a time (numba_mlp.train_rows, "rows as lanes"): a group of a wide model whose
# runs would leave lanes idle, or whose weights per block outgrow L1, trains each run
# alone, the units of a layer as the lanes of ROWS_W-wide vectors. Its variant is
# (0, False, ROWS): one kernel for every depth and output kind. Its cost, one thread, per
# run: ROWS_ROW_S + ROWS_WEIGHT_S a weight, a row; ROWS_STEP_S a weight, an optimizer step
# (digits' 64-16-10 and 64-32-10 at batch 128 and 32 on the 2-core Xeon, 2026-12-06:
# about 70 and 120 ns a row at batch 128, 80 and 145 at 32; bench/NOTES.md). The lanes
# kernel costs 117 and 234 ns a run-row there, full blocks of 8 (LANE_WEIGHT_S, TILED_COST).
ROWS = 0
ROWS_W = 16
ROWS_ROW_S = 20e-9
ROWS_WEIGHT_S = 0.04e-9
ROWS_STEP_S = 0.4e-9
FORCE_ROWS: bool | None = None      # tests: every group one run at a time (True) or in lanes


def lanes_for(runs: int, multi: bool = False) -> int:
    """The lanes a block for a group of ``runs`` runs: the width that pads the fewest
    lane-equivalents (NARROW ones cost NARROW_COST); NARROW for K outputs (multi)."""
    if FORCE_LANES is not None:
        return FORCE_LANES
    if multi:
        return NARROW
    padded = lambda w: -(-runs // w) * w
    return NARROW if padded(NARROW) * NARROW_COST < padded(WIDE) else WIDE


def group_lanes(chunk: Chunk, rows: np.ndarray, launches: int = 1) -> int:
    """The lanes a block of the group of runs ``rows`` takes (lanes_for), or ROWS where it
    trains one run at a time: no batchnorm, and predicted cheaper in CPU time than its
    blocks of lanes (_rows_seconds against _lanes_blocks)."""
    runs = -(-len(rows) // launches)                       # a launch's runs
    lanes = lanes_for(runs, is_multi(chunk))
    if chunk.runs.row(int(rows[0])).input_norm == "batchnorm":
        return lanes
    if FORCE_ROWS is not None:
        return ROWS if FORCE_ROWS else lanes
    if FORCE_LANES is not None:
        return lanes
    blocks, block = _lanes_blocks(chunk, rows, lanes, launches)
    return ROWS if runs * _rows_seconds(chunk, rows) < blocks * block else lanes


def is_multi(chunk: Chunk) -> bool:
    """Whether the chunk's model has K outputs (the kernels' multi variants)."""
    return chunk.model.loss == "cross_entropy" or chunk.data.n_outputs > 1


def kernels_for(lanes: int):
    """kernels/numba_mlp.py compiled for blocks of ``lanes`` runs, or for ROWS (vectors of
    ROWS_W units)."""
    from ...kernels import numba_mlp
    return numba_mlp.with_lanes(ROWS_W if lanes == ROWS else lanes)


def kernel_of(depth: int, multi: bool, lanes: int):
    """The compiled kernel (a numba dispatcher) of a variant (depth, multi, lanes)."""
    nk = kernels_for(lanes)
    return nk.train_rows if lanes == ROWS else nk.train_blocks(depth, multi)


def cold_compile_s(variant) -> float:
    """A variant's first compile on this machine, predicted (COLD_COMPILE_S)."""
    depth, multi, lanes = variant
    return ROWS_COMPILE_S if lanes == ROWS else COLD_COMPILE_S[multi]


def threads() -> int:
    """Threads the kernels use: numba's setting (NUMBA_NUM_THREADS, set_num_threads)."""
    import numba
    return numba.get_num_threads()


def parallel(fn, count: int, n_threads: int | None = None, cost=None,
             per_thread: int = RANGES_PER_THREAD, costliest_first: bool = False) -> None:
    """Calls fn(lo, hi) on ranges covering 0..count-1, from ``n_threads`` threads (default:
    threads()): ``per_thread`` ranges a thread, of as many items each, or with ``cost``
    (float [count], an item's predicted cost) of about the same cost each, in order or
    (``costliest_first``: ranges of one item each, whose costs differ) the costliest
    first, so that the last one a thread takes is the cheapest."""
    n_threads = max(1, min(n_threads or threads(), count))
    parts = n_threads * per_thread
    if cost is None or count <= parts:      # few items: one a range (the line study's 4
        # blocks, in 3 ranges of about equal cost, took 18.6 ms against 15.0)
        step = max(1, -(-count // parts))
        ranges = [(lo, min(lo + step, count)) for lo in range(0, count, step)]
    else:
        total = np.cumsum(cost, dtype=np.float64)
        ends = np.searchsorted(total, total[-1] * np.arange(1, parts) / parts, side="right")
        bounds = np.unique(np.concatenate([[0], ends, [count]]))
        ranges = [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]
        if costliest_first:
            ranges.sort(key=lambda r: -(total[r[1] - 1] - (total[r[0] - 1] if r[0] else 0.0)))
    if n_threads == 1:
        for lo, hi in ranges:
            fn(lo, hi)
        return
    for _ in _pool(n_threads).map(lambda r: fn(*r), ranges):   # re-raises a thread's error
        pass


_POOLS: dict = {}
_POOLS_LOCK = threading.Lock()


def _pool(n_threads: int) -> ThreadPoolExecutor:
    """A pool of ``n_threads`` threads kept for the process: starting two threads per call
    took 11 ms of digits' 0.32 s (three groups, four calls)."""
    with _POOLS_LOCK:
        if n_threads not in _POOLS:
            _POOLS[n_threads] = ThreadPoolExecutor(n_threads, thread_name_prefix="tinysweep-numba")
        return _POOLS[n_threads]


def prepare(kernel, args: tuple, kwargs: dict, variant: str, seconds: float) -> None:
    """Compiles ``kernel`` for these arguments' types, or loads it from numba's cache;
    past COMPILE_NOTICE_S says on stderr (above a progress bar) what the wait is: the
    kernel for ``variant``, about ``seconds`` (cold_compile_s)."""
    import inspect

    import numba
    bound = inspect.signature(kernel.py_func).bind(*args, **kwargs)
    signature = tuple(numba.typeof(value) for value in bound.arguments.values())
    with _PREPARING:            # groups trained side by side wait for one compile
        _prepare(kernel, signature, variant, seconds)


_PREPARING = threading.Lock()


class CompileFailed(Exception):
    """A kernel variant could not be compiled or cached here (numba or LLVM refused it, the
    cache's disk was full): the chunk trains on the torch backend instead."""


def _prepare(kernel, signature: tuple, variant: str, seconds: float) -> None:
    if signature in kernel.overloads:
        return
    with said_if_slow(COMPILE_NOTICE_S, f"tinysweep: compiling the numba kernel for {variant}, "
                                        f"once per machine (about {seconds:.0f} s)"):
        try:
            _compile(kernel, signature)
        except Exception as e:  # numba's and LLVM's errors have no common base; OSError too
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise CompileFailed(f"{type(e).__name__}: {first}") from e


def _compile(kernel, signature: tuple) -> None:
    kernel.compile(signature)


def variants(chunk: Chunk, launches: int = 1) -> list[tuple[int, bool, int]]:
    """The kernel variants (depth, multi, lanes) that train the chunk (in ``launches``
    parts): one per depth of its groups and the lanes each group's size takes."""
    multi = is_multi(chunk)
    out = set()
    for rows in torch_backend.group_rows(chunk):
        lanes = group_lanes(chunk, rows, launches)
        depth = len(chunk.runs.row(int(rows[0])).hidden)
        out.add((0, False, ROWS) if lanes == ROWS else (depth, multi, lanes))
    return sorted(out)


def _signature(kernel, depth: int, multi: bool) -> tuple:
    """The numba types a variant's kernel is called with (train_window's arguments: the
    types, not the sizes, matter)."""
    import inspect

    import numba
    f32 = lambda *shape: np.zeros(shape, np.float32)
    args = (0, 1, f32(1, 1, 1), np.zeros((1, 1)), np.zeros((1, 1), np.int64), f32(1, 1),
            f32(1, 1), f32(1, 1), f32(1, 1), np.zeros((1, 1, 1), np.int32), 0,
            f32(1, 1), f32(1, 1), f32(1, 1), f32(1, 1), np.zeros(1, np.int64), 1)
    kwargs = dict(e0=0, e1=1, layers=np.zeros((depth + 1, 6), np.int64), d=1, n_par=1,
                  gamma=0, act=0, loss=0, opt=0, bn=False)
    bound = inspect.signature(kernel.py_func).bind(*args, **kwargs)
    return tuple(numba.typeof(value) for value in bound.arguments.values())


def cached(depth: int, multi: bool, lanes: int = WIDE) -> bool | None:
    """Whether this machine has the variant compiled: in this process, or in numba's disk
    cache for this CPU (its first call then loads it, about half a second, instead of
    compiling it, 6 to 13 s). None where numba's cache cannot be read this way (its index
    is numba's own, not a public API): counted as compiled, the behaviour before the
    check."""
    kernel = kernel_of(depth, multi, lanes)
    try:
        return _in_cache(kernel, _signature(kernel, depth, multi))
    except Exception:       # another numba's cache layout
        return None


def _in_cache(kernel, signature: tuple) -> bool:
    """Whether ``kernel`` (a numba dispatcher) holds ``signature`` compiled, in this process
    or in its disk cache; raises where numba's cache is laid out otherwise."""
    if signature in kernel.overloads:
        return True
    cache = kernel._cache
    key = cache._index_key(signature, kernel.targetctx.codegen())
    return key in cache._cache_file._load_index()


# Chunks of at least this many runs load their kernels from a thread (_preload) while
# their groups are built; a smaller chunk's groups are built in less than the thread's own
# cost (the line study's 200 runs: 1 ms of its 17).
PRELOAD_RUNS = 10_000


def _preload(chunk: Chunk) -> threading.Thread:
    """Starts a thread that loads the chunk's kernels from numba's disk cache (those it
    holds: a compile stays where prepare says so), and the batch orders' where runs
    shuffle, while the groups are built. The loads are LLVM's, which releases the GIL:
    the first in a process took 0.25 s and the kernel's 0.27 s, for the line headline
    beside 0.5 s of building its group. A load that fails here is left to prepare, which
    says why."""
    from ..spec.order import half_bits, round_keys

    def load():
        try:
            shuffles = bool(np.asarray(chunk.runs.shuffle).any())
            for depth, multi, lanes in variants(chunk):
                nk = kernels_for(lanes)
                kernel = kernel_of(depth, multi, lanes)
                signature = _signature(kernel, depth, multi)
                if not _in_cache(kernel, signature):
                    continue
                with _PREPARING:
                    _compile(kernel, signature)
                if shuffles:        # a call of 2 tiny tables (its types are the calls')
                    nk.order_tables(round_keys(np.zeros(2, np.int64), np.zeros(2, np.int64)),
                                    2, half_bits(2), np.zeros((2, 2), np.int32))
        except Exception:
            pass
    thread = threading.Thread(target=load, name="tinysweep-preload", daemon=True)
    thread.start()
    return thread


# The kernels' cost, for auto's choice between them and the torch backend: a block of
# LANES runs steps through every row of its longest run's epochs whatever its lanes hold,
# at LANE_WEIGHT_S per lane, row and weight of the model (digits on a quiet 2-core Xeon,
# 2026-12-06: 0.096 ns for the 72-run grid, 0.12 for one run of 64-32-10; 1-16-1: 7.9 to
# 8.7 ns a lane-row for 32 weights; 2-32-32-1 with batchnorm: 281 ns for 1,120;
# bench/NOTES.md).
LANE_WEIGHT_S = 0.11e-9
# auto trains on torch only where it is predicted this much faster: both predictions are
# rough, and numba's time is the steadier under load.
TORCH_MARGIN = 1.5
# TINYSWEEP_AUTO_PREDICT=0 keeps auto's choice by what the backends can train alone (the
# tests set it, so that no choice depends on what ran before or on the machine's load).
AUTO_PREDICT = os.environ.get("TINYSWEEP_AUTO_PREDICT", "1") not in ("", "0")


def _blocks(chunk: Chunk, rows: np.ndarray, launches: int = 1,
            lanes: int | None = None) -> tuple[int, float]:
    """A group's blocks (per launch: the chunk trains in ``launches`` parts) and each
    block's predicted seconds (``lanes``, default group_lanes: of lanes, _lanes_blocks, or
    of one run, _rows_seconds)."""
    lanes = group_lanes(chunk, rows, launches) if lanes is None else lanes
    if lanes == ROWS:
        return -(-len(rows) // launches), _rows_seconds(chunk, rows)
    return _lanes_blocks(chunk, rows, lanes, launches)


def _rows_seconds(chunk: Chunk, rows: np.ndarray) -> float:
    """One run's predicted seconds in the kernel one run at a time: its longest run's rows
    (training, and evaluations at a third of the cost) at ROWS_ROW_S + ROWS_WEIGHT_S a
    weight, and its steps (its smallest batch's) at ROWS_STEP_S a weight."""
    runs, n = chunk.runs, chunk.data.n_train
    weights = torch_backend.group_weights(chunk, rows)
    epochs = float(runs.epochs[rows].max())
    evaluations = epochs / chunk.eval_every + 1
    steps = epochs * float(steps_per_epoch(n, int(runs.batch_size[rows].min())))
    return ((ROWS_ROW_S + ROWS_WEIGHT_S * weights)
            * (epochs * n + evaluations * (n + chunk.data.n_val) / 3)
            + ROWS_STEP_S * weights * steps)


def _lanes_blocks(chunk: Chunk, rows: np.ndarray, lanes: int,
                  launches: int = 1) -> tuple[int, float]:
    """A group's blocks of ``lanes`` runs and each block's predicted seconds: its lanes x
    its longest run's rows (training, and evaluations at a third of the cost) x the
    model's weights x LANE_WEIGHT_S (narrow lanes: x NARROW_COST, or TILED_COST for K
    outputs)."""
    runs, n, multi = chunk.runs, chunk.data.n_train, is_multi(chunk)
    cost = (TILED_COST if multi else NARROW_COST) if lanes == NARROW else 1.0
    weights = torch_backend.group_weights(chunk, rows) * cost
    epochs = float(runs.epochs[rows].max())
    evaluations = epochs / chunk.eval_every + 1
    block = lanes * weights * LANE_WEIGHT_S * (
        epochs * n + evaluations * (n + chunk.data.n_val) / 3)
    return -(-len(rows) // (lanes * launches)), block


def predicted_seconds(chunk: Chunk, launches: int = 1) -> float:
    """The kernels' predicted training time for the chunk, compiled: per group, its blocks
    (_blocks, in each of ``launches`` parts) spread over the threads."""
    n_threads = threads()
    seconds = 0.0
    for rows in torch_backend.group_rows(chunk):
        blocks, block = _blocks(chunk, rows, launches)
        seconds += launches * -(-blocks // n_threads) * block
    return seconds


def torch_instead(chunk: Chunk, launches: int = 1) -> tuple[bool, str | None]:
    """Whether ``auto`` should train this chunk on the torch backend rather than on these
    kernels, and a line to say when that is for the kernels' first compile (None
    otherwise): where torch is predicted TORCH_MARGIN times faster, counting the compile
    of every variant not yet on this machine (few runs leave most of a block's 64 lanes
    idle: one run of digits' 64-32-10 takes about 3.4 s here, 0.4 s on torch; and a small
    sweep on a fresh machine would wait 6 to 10 s a variant for the compile), and the
    cores are not busy with other work. ``launches``: the parts the chunk trains in (the
    splits of cross-validation).

    Busy cores: the torch backend's many tiny ops each wake its threads, which then wait
    on each other; with other jobs on the 2 cores (load average 3 to 8) digits' 72-run
    grid took 88 to 121 s on it against 3.6 s on a quiet machine, and numba's kernels,
    one call per window of epochs, slowed by 2x at most (bench/NOTES.md). A background
    compile (compile_pending, in any process) is not other work: it runs at nice 19, and
    torch trains beside it on one thread (sweep.train_chunk: torch_beside_warming).
    Counted as busy, it made SweepSearchCV's refit on a fresh machine compile the kernel a
    second time, in the fit (18 s). Its variants count at its seconds left (compile_left):
    where the kernels then win, auto waits for it rather than compile them again."""
    if not AUTO_PREDICT:
        return False, None
    left = compile_left()
    compiling = left is not None
    cold = [v for v in variants(chunk, launches) if cached(*v) is False]
    compile_s = sum(cold_compile_s(v) for v in cold)
    if compiling and cold:
        seconds, doing = left
        compile_s = seconds + sum(cold_compile_s(v) for v in cold if v not in doing)
    numba_s = predicted_seconds(chunk, launches) + compile_s
    torch_s = torch_backend.predicted_seconds(chunk, launches)
    if torch_s * TORCH_MARGIN >= numba_s or (not compiling and busy()):
        if compiling and cold:
            _wait_for_warming()
        return False, None
    if not cold or compiling and WARM and set(cold) <= _WARMING:
        return True, None          # said when this process passed them over first
    if WARM:
        _PENDING.update(cold)
    return True, (f"tinysweep: training on the torch backend (predicted {torch_s:.1f} s) "
                  f"rather than compiling the numba kernels for this model first (about "
                  f"{compile_s:.0f} s, once per machine; "
                  + ("they compile in the background after this sweep, for the next)" if WARM
                     else "--backend numba compiles them)"))


# auto trains a small sweep on a fresh machine on torch rather than wait for the kernels'
# compile; without this, nothing would ever compile them there, and every later sweep would
# stay on torch (SweepSearchCV on digits: 5.7 s warm on torch, 1.9 s on the kernels).
# TINYSWEEP_WARM=0 turns the background compile off.
WARM = os.environ.get("TINYSWEEP_WARM", "1") not in ("", "0")
_PENDING: set = set()       # variants auto passed over, to compile once the sweep is done
_WARMING: set = set()       # those a background process was started for
_WARM_PROCS: list = []      # those processes
# The process holds an exclusive flock on warm_lock() from its first line to its end (the
# OS lets go of it when the process ends, however it ends): another tinysweep process
# waits on it before choosing (_wait_for_warming).
_WARM_CODE = ("import sys\n"
              "try:\n"
              "    import fcntl\n"
              "    lock = open(sys.argv[2], 'a')\n"
              "    fcntl.flock(lock, fcntl.LOCK_EX)\n"
              "except (ImportError, OSError):\n"
              "    pass\n"
              "import ast, os\n"
              "os.nice(19)\n"
              "from tinysweep.trainer.backends.numba_backend import compile_variants\n"
              "compile_variants(ast.literal_eval(sys.argv[1]))\n")
# The longest another process waits on a background compile before choosing anyway.
WARM_WAIT_S = 120.0


def compile_pending() -> None:
    """Compiles the variants (depth, multi, lanes) auto passed over into numba's disk cache,
    in a process of its own at the lowest priority, detached (it outlives this one); once
    per variant and process. sweep.execute calls it once the sweep is trained: a compile
    beside torch's threads took the digits grid from 6.5 to 18.5 s."""
    todo = sorted(_PENDING - _WARMING)
    _PENDING.clear()
    if not WARM or not todo:
        return
    import subprocess
    try:
        with open(warm_lock(), "w") as f:       # what compile_left reads
            f.write(repr((time.time(), todo)))
        _WARM_PROCS.append(subprocess.Popen(
            [sys.executable, "-c", _WARM_CODE, repr(todo), warm_lock()],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
    except OSError:
        return
    _WARMING.update(todo)


def warm_lock() -> str:
    """The lock file of the background compiles into this numba cache (NUMBA_CACHE_DIR, or
    the package's own __pycache__): one per cache, in the temporary folder."""
    import hashlib
    import tempfile

    from ... import kernels
    where = f"{os.environ.get('NUMBA_CACHE_DIR', '')}|{os.path.realpath(kernels.__path__[0])}"
    key = hashlib.sha1(where.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"tinysweep-numba-warm-{key}.lock")


def warming() -> bool:
    """Whether a background compile into this numba cache runs now: one this process
    started (compile_pending), or another process's (it holds warm_lock())."""
    if any(p.poll() is None for p in _WARM_PROCS):
        return True
    try:
        import fcntl
        with open(warm_lock(), "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(lock, fcntl.LOCK_UN)
    except (ImportError, OSError):      # no flock here, or no temporary folder
        pass
    return False


def compile_left() -> tuple[float, list] | None:
    """None where no background compile into this numba cache runs (warming()); else its
    predicted seconds left and its variants: COLD_COMPILE_S of each, less the time since
    compile_pending started it (both in warm_lock()), at least 1 s."""
    if not warming():
        return None
    import ast
    try:
        with open(warm_lock()) as f:
            started, todo = ast.literal_eval(f.read())
        total = sum(cold_compile_s(v) for v in todo)
        return max(1.0, total - (time.time() - started)), [tuple(v) for v in todo]
    except (OSError, ValueError, SyntaxError, TypeError, KeyError):
        return max(COLD_COMPILE_S.values()), []


@contextmanager
def torch_beside_warming():
    """Torch on one thread while a background compile runs (warming()): its pool of two
    waited on the compile at every op (digits' SweepSearchCV refit on a fresh machine, one
    run: 7.4 s, against 5.9 s for the whole fit with it on one thread)."""
    if not warming():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _wait_for_warming() -> None:
    """Waits for the background compiles into this numba cache (warming()): those this
    process started, and another process's (at most WARM_WAIT_S), so that the kernels
    they compile load from the cache instead of compiling again here."""
    notice = "tinysweep: waiting for the numba kernels compiling in the background (once " \
             "per machine)"
    alive = [p for p in _WARM_PROCS if p.poll() is None]
    if alive:
        with said_if_slow(COMPILE_NOTICE_S, notice):
            for p in alive:
                p.wait()
    _WARM_PROCS.clear()
    deadline = time.monotonic() + WARM_WAIT_S
    if warming():                       # another process's: its lock, polled
        with said_if_slow(COMPILE_NOTICE_S, notice):
            while warming() and time.monotonic() < deadline:
                time.sleep(0.05)


def compile_variants(variants) -> None:
    """Compiles (or loads from numba's cache) each (depth, multi, lanes) kernel variant."""
    for depth, multi, lanes in variants:
        kernel = kernel_of(depth, multi, lanes)
        signature = _signature(kernel, depth, multi)
        if signature not in kernel.overloads:
            _compile(kernel, signature)


BUSY_SAMPLE_S = 0.1


def busy() -> bool:
    """Whether other work keeps this machine's cores busy now: the cores' working share of
    the next BUSY_SAMPLE_S (Linux's /proc/stat; this process sleeps meanwhile) at least the
    cores less half a core. Elsewhere the last minute's load average, which lags: right
    after a job ends it still says busy (bench/digits.py's fresh process, started after
    scikit-learn's, saw 1.5 and compiled for 16 s), and as one starts it still says quiet.
    False where the OS says neither."""
    cores = os.cpu_count() or 1
    try:
        before = _cpu_times()
        time.sleep(BUSY_SAMPLE_S)
        after = _cpu_times()
        total, idle = after[0] - before[0], after[1] - before[1]
        return total > 0 and (total - idle) / total * cores >= cores - 0.5
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.getloadavg()[0] >= cores - 0.5
    except (AttributeError, OSError):
        return False


def _cpu_times() -> tuple[int, int]:
    """(all, idle) jiffies of every core so far: /proc/stat's first line (idle and iowait
    count as idle)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return sum(fields[:8]), fields[3] + fields[4]


def available() -> str | None:
    """Why numba cannot run here, or None when it can (without importing it)."""
    if importlib.util.find_spec("numba") is None:
        return "the numba package is not installed (pip install numba)"
    return None


def unsupported(chunk: Chunk) -> str | None:
    """Why the compiled kernels cannot train this model, or None when they can."""
    return fused_unsupported(chunk, "numba", MAX_DEPTH)


def _layers(layout: torch_backend.Layout, n_features: int, hidden, n_outputs: int) -> np.ndarray:
    """int64 [depth + 1, 6]: (in, out, weight row, bias row, 0, 0) of each Linear layer."""
    from ..spec.model import layer_sizes, linear_names
    offset = dict(zip(layout.names, layout.offsets))
    sizes = layer_sizes(n_features, hidden, n_outputs)
    out = np.zeros((len(sizes), 6), np.int64)
    for k, (name, (fan_in, fan_out)) in enumerate(zip(linear_names(len(sizes)), sizes)):
        out[k, :4] = fan_in, fan_out, offset[f"{name}.weight"], offset[f"{name}.bias"]
    return out


# The last permutation tables written (_orders), by (rows, seeds, epochs): the groups of a
# chunk shuffle by the same seeds, and digits' three groups wrote the same tables three
# times (6 to 9 ms each). One entry, at most ORDER_BYTES.
_ORDERS: dict = {}
_ORDERS_LOCK = threading.Lock()


class _NumbaGroup(_Group):
    """A group of runs trained by the compiled kernels; state as in the torch backend."""

    threads: int | None = None      # threads its kernel calls use (None: threads())

    def train(self):
        self.lanes_kind = group_lanes(self.chunk, self.rows)
        nk = self.nk = kernels_for(self.lanes_kind)
        self.L = 1 if self.lanes_kind == ROWS else nk.LANES     # runs a block
        self.load(nk)
        e0, last = self.chunk.start_epoch(), int(self.c.epochs.max())
        while e0 < last:
            e1 = self._window(e0, last)
            self.train_window(nk, e0, e1)
            e0 = e1
        self.unload(nk)

    def load(self, nk):
        """Moves the group's state into the kernel's layout: runs sorted into lanes, each
        block's parameters and optimizer state one tile [rows, LANES]."""
        c, chunk = self.c, self.chunk
        lanes = np.lexsort((c.batch, c.epochs, np.where(c.shuffle, c.seed, -1), c.shuffle))
        self.lanes = lanes
        n_runs, L = len(lanes), self.L
        self.blocks = -(-n_runs // L)
        padded = self.blocks * L
        d = chunk.data.n_features
        P = self.net.layout.size

        def tiles(rows: np.ndarray) -> np.ndarray:     # [R, k] -> [blocks, k, LANES]
            out = np.zeros((padded, rows.shape[1]), np.float32)
            out[:n_runs] = rows[lanes]
            return out.reshape(self.blocks, L, -1).transpose(0, 2, 1)

        opt = [v.numpy() for v in self.opt_state.values()]
        m, v = (opt[0], np.zeros_like(opt[0])) if self.sgd else opt
        if self.running is not None:
            rmean, rvar = (r.squeeze(1).numpy() for r in self.running)
        else:
            rmean, rvar = np.zeros((n_runs, d), np.float32), np.ones((n_runs, d), np.float32)
        self.ws_state = np.ascontiguousarray(np.concatenate(
            [tiles(self.params.numpy()), tiles(m), tiles(v), tiles(rmean), tiles(rvar)], axis=1))
        assert self.ws_state.shape[1] == nk.state_rows(P, d)

        def per_lane(values, dtype, pad):
            out = np.full(padded, pad, dtype=dtype)
            out[:n_runs] = np.asarray(values)[lanes]
            return out
        fhp = np.zeros((nk.F_ROWS, padded), np.float64)
        fhp[nk.F_LR] = per_lane(c.lr, np.float64, 0.0)
        fhp[nk.F_GAMMA] = per_lane(c.gamma, np.float64, 1.0)
        fhp[nk.F_BETA1] = per_lane(c.beta1, np.float64, 0.0)
        fhp[nk.F_BETA2] = per_lane(c.beta2, np.float64, 0.0)
        fhp[nk.F_EPS] = per_lane(c.eps, np.float64, 1.0)
        fhp[nk.F_MOM] = per_lane(c.momentum, np.float64, 0.0)
        fhp[nk.F_WDC] = per_lane(c.wd_coupled, np.float64, 0.0)
        fhp[nk.F_WDD] = per_lane(c.wd_decoupled, np.float64, 0.0)
        # where the runs start (Chunk.start; else epoch 0, no step): the lr StepLR gave the
        # epoch before (the kernel steps it as each epoch begins), Adam's beta ** steps
        e0, k0 = self.chunk.start_epoch(), self.steps
        fhp[nk.F_LR] = per_lane(stepped_lr(c.lr, c.gamma, c.step_size, c.scheduled, e0 - 1),
                                np.float64, 0.0)
        fhp[nk.F_B1T] = per_lane(c.beta1 ** k0, np.float64, 1.0)
        fhp[nk.F_B2T] = per_lane(c.beta2 ** k0, np.float64, 1.0)
        ihp = np.zeros((nk.I_ROWS, padded), np.int64)
        ihp[nk.I_BS] = per_lane(c.batch, np.int64, 1)
        ihp[nk.I_EPOCHS] = per_lane(c.epochs, np.int64, 0)      # padding: never trains
        ihp[nk.I_SSIZE] = per_lane(np.where(c.scheduled, c.step_size, 0), np.int64, 0)
        ihp[nk.I_NEST] = per_lane(c.nesterov, np.int64, 0)
        # each shuffled run's table: its seed's among the group's (one table per (seed,
        # epoch), written per window by _orders); -1: rows in order. Once per group: per
        # window, np.unique over a million runs' seeds took 40 ms, 4 s of the line headline's
        # 100 windows, on one core while the other waited.
        self.order_seeds = np.unique(c.seed[c.shuffle])
        which = np.where(c.shuffle, np.searchsorted(self.order_seeds, c.seed), -1)
        ihp[nk.I_ORDER] = per_lane(which, np.int64, -1)
        ihp[nk.I_ROW] = per_lane(self.rows, np.int64, 0)
        ihp[nk.I_ACTIVE] = per_lane(np.ones(n_runs), np.int64, 0)
        ihp[nk.I_STEPS] = per_lane(k0, np.int64, 0)
        self.fhp, self.ihp = fhp, ihp

        # the kernel writes the chunk's curves in place ([1, 1] stand-ins for those the
        # sweep has not: it never writes them)
        res = self.result.curves
        self.curves = [res.get(k, np.zeros((1, 1), np.float32)) for k in CURVES]
        spec = chunk.model
        self.layers = _layers(self.net.layout, d, self.hidden,     # the group's architecture
                              chunk.data.n_outputs)
        offsets = dict(zip(self.net.layout.names, self.net.layout.offsets))
        self.spec = dict(
            layers=self.layers, d=d, n_par=P, gamma=offsets.get("0.weight", 0),
            act={"sigmoid": nk.ACT_SIGMOID, "tanh": nk.ACT_TANH, "relu": nk.ACT_RELU}[self.activation],
            loss={"mse": nk.LOSS_MSE, "bce_with_logits": nk.LOSS_BCE,
                  "cross_entropy": nk.LOSS_CE}[spec.loss],
            opt=nk.OPT_SGD if self.sgd else nk.OPT_ADAM, bn=self.running is not None)
        # the kernel of this depth and output kind, or one run at a time (compiled once
        # per machine)
        self.kernel = kernel_of(len(self.hidden), is_multi(chunk), self.lanes_kind)
        # targets [n, k]: k regression outputs, or one column (bce's label, the class)
        k = chunk.data.n_outputs if spec.loss == "mse" else 1
        self.data = [np.ascontiguousarray(t.numpy(), np.float32) for t in
                     (self.x, self.y.reshape(self.n, k), self.x_val.reshape(-1, d),
                      self.y_val.reshape(-1, k))]

    def _window(self, e0: int, last: int) -> int:
        """The end of the window of epochs that starts at e0: as many epochs as keep the
        permutation tables under ORDER_BYTES and the call's predicted time under WINDOW_S
        (an epoch of each block still training, at _blocks' prediction, over the threads)."""
        c, n = self.c, self.n
        _, block = _blocks(self.chunk, self.rows, lanes=self.lanes_kind)    # all epochs
        training = -(-int((c.epochs > e0).sum()) // self.L)
        epoch_s = training * block / max(1, int(c.epochs.max())) / (self.threads or threads())
        span = ORDER_BYTES // max(1, len(self.order_seeds) * n * 4)
        span = min(span, int(WINDOW_S / max(epoch_s, 1e-12)))
        return min(last, e0 + max(1, span))

    def _orders(self, e0: int, e1: int) -> np.ndarray:
        """Permutation tables int32 [Q, e1 - e0, n] of epochs e0..e1-1 for the group's Q
        shuffled seeds (a lane's q: ihp[I_ORDER], set by load)."""
        nk = self.nk
        n, seeds = self.n, self.order_seeds
        if len(seeds) == 0:
            return np.zeros((1, 1, 1), np.int32)
        key = (n, seeds.tobytes(), e0, e1)
        with _ORDERS_LOCK:
            if _ORDERS.get("key") == key:       # the group before had the same tables
                return _ORDERS["table"]
        epochs = np.arange(e0, e1)
        keys = round_keys(np.repeat(seeds, len(epochs)), np.tile(epochs, len(seeds)))
        table = np.empty((len(keys), n), np.int32)
        half = half_bits(n)
        parallel(lambda lo, hi: nk.order_tables(keys[lo:hi], n, half, table[lo:hi]), len(keys),
                 self.threads)
        table = table.reshape(len(seeds), len(epochs), n)
        with _ORDERS_LOCK:
            _ORDERS.update(key=key, table=table)
        return table

    def train_window(self, nk, e0: int, e1: int):
        """Trains epochs e0..e1-1 of every run, evaluating when due."""
        order = self._orders(e0, e1)
        x, y, xv, yv = self.data
        eval_epochs = self.chunk.eval_epochs.astype(np.int64)
        args = lambda lo, hi: (lo, hi, self.ws_state, self.fhp, self.ihp, x, y, xv, yv, order,
                               e0, *self.curves, eval_epochs, self.chunk.eval_every)
        kwargs = dict(e0=e0, e1=e1, **self.spec)
        # compiled (or loaded) here, before the threads call it: a compile that takes long
        # is said above the progress bar, and one that fails raises CompileFailed
        prepare(self.kernel, args(0, 0), kwargs, *self._variant())
        # one run at a time: a range a run, up to ROWS_RANGES a thread (a call costs
        # tens of us; digits' ranges of 3 runs left a thread idle 12 to 25% of a group)
        rows = self.lanes_kind == ROWS
        parallel(lambda lo, hi: self.kernel(*args(lo, hi), **kwargs), self.blocks, self.threads,
                 self._block_cost(e0, e1), ROWS_RANGES if rows else RANGES_PER_THREAD, rows)
        if self.progress is not None:
            c = self.c
            left = np.clip(np.minimum(e1, c.epochs) - e0, 0, None)
            self.progress(int((left * c.spe).sum()))

    def _block_cost(self, e0: int, e1: int) -> np.ndarray:
        """Each block's predicted cost in epochs e0..e1-1, for ranges of blocks of about
        the same cost (parallel): its rows and, at STEP_ROWS rows each (one run at a time:
        as the ROWS_ costs have it, 8 for digits' 64-16-10), its steps (those of its
        smallest batch), in the epochs its runs train. The line headline's blocks, by
        batch size 10 to 500, cost 0.44 to 0.08 cpu-ns a lane-row; in ranges of as many
        blocks its windows' threads waited for each other 13% of the time."""
        bs = self.ihp[self.nk.I_BS].reshape(self.blocks, -1).min(axis=1)
        epochs = self.ihp[self.nk.I_EPOCHS].reshape(self.blocks, -1).max(axis=1)
        trained = np.clip(np.minimum(epochs, e1) - e0, 0, None)
        step_rows = STEP_ROWS
        if self.lanes_kind == ROWS:      # a step of one run against one of its rows
            weights = torch_backend.group_weights(self.chunk, self.rows)
            step_rows = ROWS_STEP_S * weights / (ROWS_ROW_S + ROWS_WEIGHT_S * weights)
        return trained * (self.n + step_rows * -(-self.n // np.minimum(bs, self.n)))

    def _variant(self) -> tuple[str, float]:
        """What the group's kernel is compiled for, in words, and its first compile's
        predicted seconds (cold_compile_s), for prepare's notice."""
        depth, multi = len(self.hidden), is_multi(self.chunk)
        seconds = cold_compile_s((depth, multi, self.lanes_kind))
        if self.lanes_kind == ROWS:
            return "one run at a time", seconds
        return f"{depth} hidden layers, {'K outputs' if multi else 'one output'}", seconds

    def unload(self, nk):
        """Copies the lanes' state back into the group's tensors."""
        lanes, n_runs = self.lanes, len(self.lanes)
        P, d = self.net.layout.size, self.chunk.data.n_features
        state = self.ws_state.transpose(0, 2, 1).reshape(-1, self.ws_state.shape[1])[:n_runs]
        back = lambda lo, hi: torch.from_numpy(np.ascontiguousarray(state[:, lo:hi]))
        idx = torch.from_numpy(lanes)
        self.params[idx] = back(0, P)
        for full, k in zip(self.opt_state.values(), (1, 2)):     # m (or buf), v
            full[idx] = back(k * P, (k + 1) * P)
        if self.running is not None:
            self.running[0][idx] = back(3 * P, 3 * P + d).unsqueeze(1)
            self.running[1][idx] = back(3 * P + d, 3 * P + 2 * d).unsqueeze(1)
        self.steps[lanes] = self.ihp[nk.I_STEPS, :n_runs]
        self.diverged[lanes] = self.ihp[nk.I_ACTIVE, :n_runs] == 0


def _train_without_grad(group: _NumbaGroup) -> None:
    with torch.no_grad():           # grad mode is per thread
        group.train()


def train(chunk: Chunk, device="cpu", progress=None) -> ChunkResult:
    """Trains every run of the chunk with the compiled kernels on the CPU (``device`` is
    ignored: numba runs on the CPU); where a kernel cannot be compiled or cached here, on
    the torch backend, with one line on stderr saying so (its results match the reference
    as these do)."""
    try:
        return _train(chunk, progress)
    except CompileFailed as e:
        print(f"tinysweep: the numba kernels could not be compiled here ({e}); training on the "
              f"torch backend", file=sys.stderr, flush=True)
        return torch_backend.train(chunk, "cpu", progress)


def side_by_side(chunk: Chunk, groups: list, n_threads: int) -> list[int]:
    """The groups (indices) to train side by side, a thread each, in this order; the rest
    train one after the other, each on every thread. Candidates: the groups of at most
    SIDE_BY_SIDE_BLOCKS blocks a thread. Side by side, longest first, they end when the
    most loaded thread does; one after the other, each takes its blocks' rounds over the
    threads (a group of 3 blocks on 2 threads: 2 block-times, a thread idle half of the
    second). The faster of the two, as _blocks predicts them."""
    cost = {}
    for i, rows in enumerate(groups):
        blocks, block = _blocks(chunk, rows)
        if blocks <= SIDE_BY_SIDE_BLOCKS * n_threads:
            cost[i] = (blocks, block)
    together = sorted(cost, key=lambda i: -cost[i][0] * cost[i][1])
    loads = np.zeros(n_threads)
    for i in together:                    # a loop over groups: each goes to the idlest thread
        loads[np.argmin(loads)] += cost[i][0] * cost[i][1]
    apart = sum(-(-blocks // n_threads) * block for blocks, block in cost.values())
    return together if len(together) > 1 and loads.max() < apart else []


def _train(chunk: Chunk, progress) -> ChunkResult:
    """numba's training of the chunk. A group with many blocks trains on every thread, one
    group after the other; groups of few blocks (digits' grid: three of three; a sweep of
    many architectures with a few runs each) train side by side, a thread each, where
    that is predicted faster (side_by_side), so that no thread waits while another ends a
    group. A run's arithmetic is its lane's alone: the results are the same either way."""
    n_threads = threads()
    if len(chunk.runs) >= PRELOAD_RUNS:
        _preload(chunk)
    groups = torch_backend.group_rows(chunk)
    order = side_by_side(chunk, groups, n_threads)
    if not order:
        return torch_backend.train(chunk, "cpu", progress, group_class=_NumbaGroup)
    result = chunk.empty_result()
    with torch.no_grad():
        # Built here, one after the other: a group's initial weights come from torch's
        # global RNG (seeded_model), which threads would share.
        built, together = {}, set(order)
        for i, rows in enumerate(groups):
            group = _NumbaGroup(chunk, rows, torch.device("cpu"), result, progress)
            if i in together:
                group.threads = 1
                built[i] = group
                continue
            group.train()
            group.write_result()
        built = [built[i] for i in order]       # the longest first
        with ThreadPoolExecutor(min(n_threads, len(built))) as pool:
            for _ in pool.map(_train_without_grad, built):     # re-raises a thread's error
                pass
        for group in built:
            group.write_result()
    return result
