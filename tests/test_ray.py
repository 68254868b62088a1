"""--executor ray on a local Ray instance of 2 CPUs: the same results as the local executor,
a lost worker retried, a chunk that keeps failing reported while every other is kept."""

from __future__ import annotations

import os
import sys

import pytest

import tinysweep
from tinysweep.trainer import cli
from tinysweep.trainer.pipeline import sweep
from tinysweep.trainer.pipeline.store import ChunkStore

from conftest import assert_same_runs

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # task bodies below
    yield
    ray.shutdown()


SWEEP = {"params": {"batch_size": [4, 9, 20], "seed": [0, 1]}}


def test_ray_executor_gives_the_local_results(write_config, tmp_path, local_ray):
    path = write_config(sweep=SWEEP)
    local = tinysweep.run(path, chunk_runs=2)       # the backend the command picks (auto)
    out = tmp_path / "out"
    assert cli.main(["run", str(path), "--out", str(out), "--executor", "ray",
                     "--chunk-runs", "2"]) == 0
    assert_same_runs(tinysweep.load(out), local, rtol=0, atol=0)
    assert_same_runs(tinysweep.run(path, backend="torch", chunk_runs=2, executor="ray"),
                     tinysweep.run(path, backend="torch", chunk_runs=2), rtol=0, atol=0)


def test_lost_worker_is_retried_and_a_failing_chunk_is_reported(write_config, tmp_path,
                                                                 local_ray):
    path = write_config(sweep=SWEEP)
    died = tmp_path / "died"

    def flaky(plan, lo, hi):
        if lo == 0 and not died.exists():
            died.touch()
            os._exit(1)                           # the worker process dies mid-chunk
        if lo == 2:
            raise RuntimeError("this chunk always fails")
        return sweep.train_slice(plan, lo, hi)

    plan = sweep.prepare(path, backend="torch", device="cpu", chunk_runs=2)
    out = tmp_path / "out"
    store = ChunkStore(out)
    with pytest.raises(sweep.ChunkFailures) as failure:
        sweep.execute(plan, store=store, executor="ray", task_fn=flaky)
    assert [(lo, hi) for lo, hi, _ in failure.value.failed] == [(2, 4)]
    assert "this chunk always fails" in failure.value.failed[0][2]
    assert died.exists()                          # chunk 0 ran again after its worker died
    assert sorted(p.name for p in store.dir.glob("chunk-*.npz")) == \
        ["chunk-000000000.npz", "chunk-000000004.npz"]
    # the kept chunks and --resume finish the sweep as if nothing had failed
    assert cli.main(["run", str(path), "--out", str(out), "--chunk-runs", "2", "--resume",
                     "--backend", "torch"]) == 0
    assert_same_runs(tinysweep.load(out), tinysweep.run(path, backend="torch", chunk_runs=2),
                     rtol=0, atol=0)
