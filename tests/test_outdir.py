"""A results directory's manners: one writer at a time, write failures in one line, a closed
pipe ended quietly. Each case runs `tinysweep` in a second process, as users would."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import tinysweep
from tinysweep.trainer import cli
from tinysweep.trainer.pipeline.store import ChunkStore
from tinysweep.trainer.pipeline.sweep import execute, prepare

from conftest import assert_same_runs

# A process that runs `tinysweep run ARGS` but waits, holding the directory's lock, between
# its set-up and its training until the file GATE exists; it creates STARTED on the way.
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tinysweep.trainer import cli
    from tinysweep.trainer.pipeline import sweep
    started, gate, args = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    execute = sweep.execute
    def waiting(*a, **k):
        started.touch()
        while not gate.exists():
            time.sleep(0.05)
        return execute(*a, **k)
    sweep.execute = waiting
    sys.exit(cli.main(args))
""")


def start_holder(tmp_path, *args) -> tuple[subprocess.Popen, Path, Path]:
    started, gate = tmp_path / "started", tmp_path / "gate"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(started), str(gate),
                             *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not started.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first run never started training"
        time.sleep(0.05)
    return proc, started, gate


def sweep_config(write_config, runs: int = 6):
    return write_config(sweep={"params": {"lr": [0.01 * (i + 1) for i in range(runs)]}})


def test_a_second_run_on_a_directory_in_use_is_refused(write_config, tmp_path, capsys):
    config, out = sweep_config(write_config), tmp_path / "out"
    first, _, gate = start_holder(tmp_path, "run", config, "--out", out)
    try:
        assert cli.main(["run", str(config), "--out", str(out), "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert err == (f"tinysweep: error: --out: {out} is in use by another tinysweep run "
                       f"(pid {first.pid}); wait for it to finish or pick another --out\n")
        with pytest.raises(tinysweep.UserError, match=r"^out: .* is in use by another"):
            tinysweep.run(config, out=out)
    finally:
        gate.touch()
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    table = tinysweep.load(out).table                 # the first run's, whole
    assert list(table.run_id) == list(range(6)) and not table.final_train_loss.isna().any()
    # and once it is done, the directory is free again
    assert cli.main(["run", str(config), "--out", str(out), "--overwrite"]) == 0


def test_a_killed_run_does_not_block_resume(write_config, tmp_path):
    config, out = sweep_config(write_config), tmp_path / "out"
    first, _, _ = start_holder(tmp_path, "run", config, "--out", out, "--chunk-runs", "2")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert (out / ".lock").read_text().strip() == str(first.pid)     # the file stays
    assert cli.main(["run", str(config), "--out", str(out), "--resume", "--chunk-runs", "2"]) == 0
    assert len(tinysweep.load(out).table) == 6


def test_a_closed_stdout_ends_quietly_with_the_results_written(write_config, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "tinysweep", "run",
                             str(sweep_config(write_config)), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()                      # as `| head -n 0` would, before any line
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and stderr == ""
    assert len(tinysweep.load(out).table) == 6 and (out / "report.md").is_file()


def test_a_write_failure_is_one_line_and_resume_finishes_once_there_is_room(write_config,
                                                                            tmp_path):
    config = write_config(sweep={"params": {"lr": [0.001 * (i + 1) for i in range(60)]}},
                          train={"epochs": 3, "lr": 0.05, "optimizer": "sgd"})
    # the chunks' and the results' sizes, from a sweep written without a limit
    plan = prepare(config, chunk_runs=10)
    probe = ChunkStore(tmp_path / "probe")
    probe.start(plan)
    whole = execute(plan, store=probe)
    chunk_bytes = max(f.stat().st_size for f in probe.dir.glob("chunk-*.npz"))
    whole.save(tmp_path / "probe")
    limit = chunk_bytes + 256                # room for a chunk, not for every result file
    order = ["params.npz", "curves.npz", "config.yaml", "results.parquet", "results.csv"]
    too_big = [name for name in order if (tmp_path / "probe" / name).stat().st_size > limit]
    assert too_big, "every result file fits under the limit: nothing would fail"

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "tinysweep", "run", str(config), "--out",
                           str(out), "--chunk-runs", "10"], preexec_fn=limited,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stderr == (f"tinysweep: error: cannot write {out}/{too_big[0]}: File too large; "
                           f"finished chunks are kept, rerun with --resume once there is "
                           f"room\n")
    assert sorted(p.name for p in (out / ".chunks").glob("chunk-*.npz")) == [
        f"chunk-{lo:09d}.npz" for lo in range(0, 60, 10)]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not (out / "results.csv").exists()
    assert cli.main(["run", str(config), "--out", str(out), "--resume", "--chunk-runs", "10"]) == 0
    assert_same_runs(tinysweep.load(out), whole, rtol=0, atol=0)
    assert not (out / ".chunks").exists()


def test_write_error_names_the_file_and_survives_pickling(tmp_path):
    import pickle
    from tinysweep.trainer.pipeline.results import atomic_write

    def full(f):
        raise OSError(28, "No space left on device")
    with pytest.raises(tinysweep.WriteError) as info:
        atomic_write(tmp_path / "results.csv", full)
    assert str(info.value) == f"cannot write {tmp_path}/results.csv: No space left on device"
    assert os.listdir(tmp_path) == []
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value) and again.errno == 28
    assert isinstance(again, OSError)
