"""pytest-benchmark entry points for the CPU workloads, kept out of ``make test``
(pytest.ini collects tests/ only):

    pytest bench --benchmark-only                 # timings; --benchmark-compare for regressions

Each trains a workload of bench/run.py, scaled down as with --quick, with the torch backend
on the CPU, and checks that the training did something.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

from run import QUICK_EPOCHS, QUICK_RUNS, WORKLOADS, sub_chunk, workload_chunk  # noqa: E402
from contenders import spread  # noqa: E402

from tinysweep.trainer.backends.backend import evaluation_epochs  # noqa: E402
from tinysweep.trainer.pipeline.sweep import Plan, train_chunk  # noqa: E402


# (e) trains one epoch: it measures the time around training, and has no curve to check
@pytest.mark.parametrize("key", sorted(k for k in WORKLOADS if k != "e"))
def test_torch_backend_throughput(benchmark, key):
    chunk = workload_chunk(key)
    chunk = sub_chunk(chunk, spread(len(chunk.runs), QUICK_RUNS), QUICK_EPOCHS)
    chunk = dataclasses.replace(chunk, eval_every=1,       # a curve to check
                                eval_epochs=evaluation_epochs(chunk.runs, 1))
    plan = Plan(None, chunk, "torch", "cpu", len(chunk.runs))
    result = benchmark.pedantic(train_chunk, args=(plan, chunk), rounds=3, warmup_rounds=1)
    first, last = result.curves["train_loss"][:, 0], result.curves["train_loss"][:, -1]
    done = np.isfinite(first) & np.isfinite(last)
    assert done.any() and np.median(last[done]) < np.median(first[done])
