"""The triton backend against the reference, run by run, as the torch backend is checked.

Without a GPU the kernels run in Triton's interpreter (conftest.py sets TRITON_INTERPRET),
which costs about 0.2 ms per operation per loop iteration: the sweeps here are small (few
rows, few epochs), yet cover every configuration class of test_torch_backend.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tinysweep
from tinysweep.trainer.spec.errors import UserError

from conftest import MIXED, assert_same_runs, optimizer_sweep

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")
from tinysweep.kernels.mlp import curve_offset  # noqa: E402  (needs triton)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(params=["lanes", "wide"])
def kernel(request, monkeypatch):
    """Which kernel trains the test's small models: one lane per run (mlp.py), or, with every
    model counted as too large for a lane, the wide kernel (wide.py: one program per run)."""
    if request.param == "wide":
        from tinysweep.trainer.backends import triton_backend
        monkeypatch.setattr(triton_backend, "LANE_WEIGHTS", 0)
    return request.param


def both(path, **kw):
    return (tinysweep.run(path, backend="triton", device=DEVICE, **kw),
            tinysweep.run(path, backend="reference", **kw))


# conftest's sweep on 13 training rows: batch sizes 5 and 7 leave short last batches (3 and
# 6 rows), 16 is one batch of everything.
MIXED_13 = {**MIXED, "batch_size": [5, 7, 16]}


@pytest.mark.parametrize("hidden, activation, loss, source", [
    ([], "sigmoid", "mse", "line"),
    ([5], "tanh", "bce_with_logits", "moons"),
    ([4, 3], "relu", "mse", "line"),
    ([3, 2], "sigmoid", "bce_with_logits", "heart_rate"),
])
def test_mixed_sweep_matches_reference(write_config, hidden, activation, loss, source):
    path = write_config(
        data={"source": source, "params": {"n": 13}, "seed": 3},
        model={"hidden": hidden, "activation": activation, "loss": loss},
        train={"epochs": 2, "lr": 0.03, "momentum": 0.5, "seed": 11},
        sweep={"params": MIXED_13})
    triton_res, ref = both(path)
    assert len(ref.table) == 54
    assert not ref.table.diverged.any()
    assert_same_runs(triton_res, ref)


@pytest.mark.parametrize("split", [1, 2, 8])
def test_lanes_per_run_change_nothing_but_rounding(write_config, monkeypatch, split):
    """Each run's batch rows shared by 1, 2 or 8 lanes (more than some batches have rows),
    with batchnorm, shuffles and a validation split: all match the reference."""
    from tinysweep.trainer.backends import triton_backend
    monkeypatch.setattr(triton_backend, "SPLIT", split)
    path = write_config(
        data={"source": "moons", "params": {"n": 14}, "seed": 3, "val_fraction": 0.2},
        model={"hidden": [5], "activation": "tanh", "loss": "bce_with_logits"},
        train={"epochs": 2, "lr": 0.03, "momentum": 0.5, "seed": 11},
        sweep={"params": {"input_norm": ["none", "batchnorm"], "optimizer": ["sgd", "adam"],
                          "batch_size": [4, 3, 16], "shuffle": [True, False]}})
    triton_res, ref = both(path)
    assert_same_runs(triton_res, ref)


@pytest.mark.parametrize("copies, launches", [
    (2, [(0, 1, [0, 1]), (1, 2, [0, 1]), (2, 3, [0, 1]), (3, 4, [0, 1])]),
    (1, [(0, 1, [0]), (0, 1, [1]), (1, 2, [0]), (1, 2, [1]), (2, 3, [0]), (2, 3, [1]),
         (3, 4, [0]), (3, 4, [1])]),
])
def test_long_intervals_are_split_when_shuffled_copies_would_not_fit(
        write_config, monkeypatch, kernel, copies, launches):
    """Room for the shuffled copies of 10 rows (x and y) of two seeds for one epoch, or of
    one: an evaluation interval of 3 epochs takes 3 launches, or 6, one seed at a time (runs
    in order in the first); nothing changes."""
    from tinysweep.trainer.backends import triton_backend
    path = write_config(data={"source": "line", "params": {"n": 10}},
                        train={"epochs": 4, "lr": 0.05, "eval_every": 3},
                        sweep={"params": {"batch_size": [3, 4], "seed": [0, 1],
                                          "shuffle": [True, False]}})
    whole = tinysweep.run(path, backend="triton", device=DEVICE)
    monkeypatch.setattr(triton_backend, "ORDER_BYTES", copies * 10 * 2 * 4)
    seen = []
    real = triton_backend._TritonGroup._rows

    def rows(self, lo, hi, seeds, mlp):
        seen.append((lo, hi, seeds.tolist()))
        return real(self, lo, hi, seeds, mlp)
    monkeypatch.setattr(triton_backend._TritonGroup, "_rows", rows)
    split = tinysweep.run(path, backend="triton", device=DEVICE)
    assert seen == launches
    assert split.table.equals(whole.table)
    assert_same_runs(split, tinysweep.run(path, backend="reference"))


def test_optimizer_settings_and_schedules_match(write_config, kernel):
    """Per-run momentum, nesterov, betas, eps, weight decay, StepLR, epochs, seeds and a
    validation split, in one launch per evaluation interval."""
    path = write_config(**optimizer_sweep(15, 3, [1, 3, 4], 4))
    triton_res, ref = both(path)
    table = ref.table
    assert set(table.epochs) == {1, 3, 4} and table.lr_schedule.nunique() == 2
    assert "final_val_loss" in table and "final_val_accuracy" in table
    assert list(ref.curves["epoch"]) == [1, 2, 3, 4]
    assert_same_runs(triton_res, ref)


@pytest.mark.parametrize("eval_every", [1, 2])
def test_diverging_runs_are_flagged_and_isolated(write_config, eval_every, kernel):
    params = {"lr": [0.01, 1e6, 1e12], "batch_size": [3, 11]}
    model = {"hidden": [3], "activation": "tanh", "loss": "mse"}
    train = {"epochs": 3, "optimizer": "sgd", "eval_every": eval_every}
    path = write_config(data={"source": "line", "params": {"n": 11}}, model=model, train=train,
                        sweep={"params": params})
    triton_res, ref = both(path)
    bad = ref.table.lr > 100
    assert list(ref.table.diverged) == list(bad)
    assert_same_runs(triton_res, ref)
    assert triton_res.table.final_train_loss[bad].isna().all()
    # the healthy runs are exactly what they are in a sweep without the diverging ones
    calm = tinysweep.run(write_config("calm.yaml", data={"source": "line", "params": {"n": 11}},
                                      model=model, train=train,
                                      sweep={"params": {"lr": [0.01], "batch_size": [3, 11]}}),
                         backend="triton", device=DEVICE)
    for name, value in calm.params.items():
        np.testing.assert_array_equal(triton_res.params[name][~bad.to_numpy()], value,
                                      err_msg=name)


def test_chunk_size_changes_nothing(write_config, monkeypatch, kernel):
    """Each run is computed on its own lanes (two per run here), or its own program in the
    wide kernel: chunking changes no bit."""
    from tinysweep.trainer.backends import triton_backend
    monkeypatch.setattr(triton_backend, "SPLIT", 2)
    path = write_config(data={"source": "line", "params": {"n": 9}},
                        model={"hidden": [4], "activation": "sigmoid", "loss": "mse"},
                        train={"epochs": 2, "lr": 0.05},
                        sweep={"params": {"batch_size": [3, 5], "shuffle": [True, False],
                                          "input_norm": ["none", "batchnorm"]}})
    whole = tinysweep.run(path, backend="triton", device=DEVICE)
    for chunk_runs in (1, 3):
        part = tinysweep.run(path, backend="triton", device=DEVICE, chunk_runs=chunk_runs)
        assert part.table.equals(whole.table)
        for name in whole.params:
            np.testing.assert_array_equal(part.params[name], whole.params[name], err_msg=name)


@pytest.mark.parametrize("runs, batch, sms, split", [
    (10_000, 100, 132, 1),      # mlp_10k fills the H100 with one lane per run
    (5_000, 100, 132, 2),
    (1_000, 100, 132, 8),       # mlp_1k
    (100, 100, 132, 8),         # at most MAX_SPLIT
    (1_000, 16, 132, 4),        # every lane keeps 4 rows of a batch
    (1_000, 7, 132, 1),
    (1_000, 100, 0, 1),         # the interpreter
])
def test_lanes_per_run_fill_the_gpu_with_few_runs(runs, batch, sms, split):
    from tinysweep.trainer.backends import triton_backend
    assert triton_backend.split_for(runs, batch, sms) == split


def test_lanes_per_run_are_chosen_from_the_whole_sweep(write_config, monkeypatch):
    """On a (pretended) GPU that 16 lanes fill, a sweep of 10 runs trains with 2 lanes per
    run, and so does each chunk of 3 runs (which alone would take 8): the table does not
    change by a bit, and matches the reference."""
    from tinysweep.trainer.backends import triton_backend
    monkeypatch.setattr(triton_backend, "multiprocessors", lambda device: 1)
    monkeypatch.setattr(triton_backend, "LANES_PER_SM", 16)
    splits = []
    load = triton_backend._TritonGroup.load

    def spy(group):
        load(group)
        splits.append(group.split)
    monkeypatch.setattr(triton_backend._TritonGroup, "load", spy)
    path = write_config(data={"source": "moons", "params": {"n": 40}, "seed": 2},
                        model={"hidden": [3], "activation": "tanh", "loss": "bce_with_logits"},
                        train={"epochs": 2, "lr": 0.05, "optimizer": "adam", "shuffle": True},
                        sweep={"params": {"batch_size": [32, 40], "seed": [0, 1, 2, 3, 4]}})
    whole, ref = both(path)
    assert splits == [2]
    part = tinysweep.run(path, backend="triton", device=DEVICE, chunk_runs=3)
    assert splits[1:] == [2] * 4
    assert part.table.equals(whole.table)
    assert_same_runs(whole, ref)


def test_order_kernel_matches_the_reference_permutations():
    from tinysweep.kernels import mlp
    from tinysweep.trainer.spec.order import half_bits, permutations, round_keys

    for n in (1, 2, 7, 64, 100, 1000):
        seeds = np.array([0, 1, 2**40 + 3, 12345])
        epochs = np.array([0, 5, 1, 99])
        keys = torch.tensor(round_keys(seeds, epochs).astype(np.int64), device=DEVICE)
        out = torch.full((len(seeds), n), -1, dtype=torch.int32, device=DEVICE)
        half = half_bits(n)
        mlp.order_kernel[(len(seeds), -(-n // 256))](keys, out, n, half, (1 << half) - 1,
                                                      BLOCK=256)
        np.testing.assert_array_equal(out.cpu().numpy(), permutations(seeds, epochs, n),
                                      err_msg=f"n={n}")


def test_models_too_large_for_the_kernels_are_refused(write_config):
    path = write_config(model={"hidden": [4, 4, 4], "loss": "mse"})
    with pytest.raises(UserError, match="triton backend fuses up to 2 hidden layers"):
        tinysweep.run(path, backend="triton", device=DEVICE)
    path = write_config(model={"hidden": [80, 4], "loss": "mse"})
    with pytest.raises(UserError, match=r"layers up to 64 wide \(inputs and outputs too\); 1 "
                                        r"features, hidden \[80, 4\] and 1 output make 489; "):
        tinysweep.run(path, backend="triton", device=DEVICE)
    # auto falls back to the torch backend for them
    assert len(tinysweep.run(path, backend="auto", device=DEVICE).table) == 1


def test_triton_on_the_cpu_needs_the_interpreter(write_config, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(UserError, match="needs --device cuda"):
        tinysweep.run(write_config(), backend="triton", device="cpu")
    # auto never picks triton on the CPU: numba where it is installed, else torch
    from tinysweep.trainer.backends import numba_backend
    from tinysweep.trainer.pipeline.sweep import prepare
    cpu = "torch" if numba_backend.available() else "numba"
    assert prepare(write_config(), backend="auto", device="cpu").backend == cpu


@pytest.mark.parametrize("spec", [
    dict(DEPTH=0, OA=1, OAP=1, OB=1, OBP=1, P=4, OFF_A=2, BN=True, OPT=0, SHUFFLED=True),
    dict(DEPTH=1, OA=16, OAP=16, OB=1, OBP=1, P=49, LOSS=1, UNROLL=2),
    dict(DEPTH=2, OA=5, OAP=8, OB=3, OBP=4, P=52, OFF_B=15, OFF_C=33, ACT=2, SPLIT=4),
    dict(DEPTH=2, OA=5, OAP=8, OB=3, OBP=4, K=3, KP=4, P=62, OFF_B=15, OFF_C=33, LOSS=2),
    dict(DEPTH=1, OA=4, OAP=4, OB=2, OBP=2, K=2, KP=2, YK=2, YKP=2, P=22, OFF_B=8, LOSS=0),
    dict(wide=True, DEPTH=2, D=3, DP=4, OA=64, OAP=64, OB=64, OBP=64, K=3, KP=4, P=4621,
         OFF_A=6, OFF_B=262, OFF_C=4422, ACT=2, LOSS=2, BN=True),
])
def test_kernels_compile_for_an_h100(spec):
    """The interpreter skips Triton's compiler, which rejects things the interpreter
    accepts (a non-constexpr global, say): compile for sm_90 too, in a process without
    TRITON_INTERPRET. No GPU needed."""
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("compile_kernels.py")),
                           json.dumps(spec)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    kernel = "train_wide_kernel" if spec.get("wide") else "train_kernel"
    assert done.stdout.startswith(f"{kernel} order_kernel ")


def test_each_architecture_of_a_sweep_is_its_own_launch_and_matches_the_reference(write_config):
    path = write_config(
        data={"source": "moons", "params": {"n": 13}, "seed": 3},
        model={"loss": "bce_with_logits"}, train={"epochs": 2, "lr": 0.03},
        sweep={"params": {"hidden": [[], [3], [2, 3]], "activation": ["tanh", "relu"],
                          "batch_size": [5, 16], "shuffle": [True, False]}})
    triton_res, ref = both(path)
    assert set(ref.table.hidden) == {"none", "3", "2-3"}
    assert_same_runs(triton_res, ref)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_k_outputs_match_the_reference(loss, kernel):
    """Three classes, or two regression targets: the output layer of every depth is K wide
    (padded to a power of two for three), with batchnorm, both optimizer families, a
    validation split, short last batches, shuffled and not."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 2)).astype(np.float32)
    if loss == "cross_entropy":
        y = (x[:, 0] > 0) + (x[:, 1] > 0.5).astype(np.float32)            # classes 0, 1, 2
    else:
        y = np.stack([x[:, 0] - 2 * x[:, 1], x[:, 0] * x[:, 1]], axis=1)
    config = {"model": {"loss": loss}, "data": {"val_fraction": 0.25},
              "train": {"epochs": 2, "lr": 0.05, "momentum": 0.5},
              "sweep": {"params": {"hidden": [[], [3], [2, 3]], "optimizer": ["sgd", "adam"],
                                   "input_norm": ["none", "batchnorm"], "batch_size": [5, 16],
                                   "shuffle": [True, False]}}}
    triton_res, ref = both(config, data=(x, y.astype(np.float32)))
    assert ref.n_outputs(0) == ref.n_outputs(47) == (3 if loss == "cross_entropy" else 2)
    assert not ref.table.diverged.any()
    assert_same_runs(triton_res, ref)


@pytest.mark.parametrize("hidden, activation, loss, source", [
    ([], "sigmoid", "mse", "line"),
    ([4, 3], "tanh", "bce_with_logits", "moons"),
])
def test_the_wide_kernel_trains_the_mixed_sweep(write_config, monkeypatch, hidden, activation,
                                                 loss, source):
    """Every model through the wide kernel: batch sizes below, at and above its 16-row tile,
    every optimizer and input norm in one sweep."""
    from tinysweep.trainer.backends import triton_backend
    monkeypatch.setattr(triton_backend, "LANE_WEIGHTS", 0)
    path = write_config(
        data={"source": source, "params": {"n": 37}, "seed": 3},
        model={"hidden": hidden, "activation": activation, "loss": loss},
        train={"epochs": 2, "lr": 0.03, "momentum": 0.5, "seed": 11},
        sweep={"params": {**MIXED, "batch_size": [5, 16, 37]}})
    triton_res, ref = both(path)
    assert_same_runs(triton_res, ref)


def test_two_hidden_layers_of_64_train_on_the_triton_backend(write_config):
    """The issue's widest model, 1-64-64-1 (4,353 parameters), and 3 classes from 64-wide
    layers: the wide kernel, and `auto` sends them there on CUDA."""
    from tinysweep.trainer.backends import triton_backend
    from tinysweep.trainer.pipeline.sweep import prepare
    path = write_config(
        data={"source": "line", "params": {"n": 25}, "val_fraction": 0.2},
        model={"hidden": [64, 64], "activation": "tanh", "loss": "mse"},
        train={"epochs": 2, "lr": 0.01, "optimizer": "adam"},
        sweep={"params": {"input_norm": ["standardize", "batchnorm"], "batch_size": [6, 18],
                          "shuffle": [True, False]}})
    plan = prepare(path, backend="triton", device=DEVICE)
    assert triton_backend.kernel_for(1, (64, 64), True, 1) == "wide" and plan.chunk.runs.architectures() == [(64, 64)]
    triton_res, ref = both(path)
    assert_same_runs(triton_res, ref)
    if DEVICE == "cuda":
        assert prepare(path, backend="auto", device="cuda").backend == "triton"
    too_wide = write_config("wide.yaml", model={"hidden": [65, 64], "loss": "mse"})
    with pytest.raises(UserError, match=r"up to 384 parameters per run, or layers up to 64 "
                                        r"wide \(inputs and outputs too\); 1 features, hidden "
                                        r"\[65, 64\] and 1 output make 4419; "):
        tinysweep.run(too_wide, backend="triton", device=DEVICE)


def test_bench_sass_finds_the_row_loop_of_the_kernel_for_an_h100(tmp_path):
    """bench/sass.py compiles the line workload's kernel for sm_90 (no GPU) and finds its
    loop over a batch's rows: loads of x and y, a multiply-add, no spills."""
    bench = Path(__file__).resolve().parents[1] / "bench" / "sass.py"
    out = tmp_path / "sass.json"
    done = subprocess.run([sys.executable, str(bench), "--workloads", "b", "--json", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (b,) = json.loads(out.read_text())
    assert b["kernel"] == "train_kernel" and b["local_bytes"] == 0 and b["registers"] > 0
    loop = b["row_loop"]
    assert loop["LDG"] >= 2 and loop["FFMA"] >= 1 and 10 < loop["instructions"] < 200
    assert b["predicted_issue_s"] > 0


def test_a_slow_first_launch_says_it_is_compiling(monkeypatch, capsys):
    """On a GPU a kernel variant's first launch compiles it: past COMPILE_NOTICE_S, a line
    on stderr names the model; a second launch of the variant, and a fast one, say nothing."""
    import time

    from tinysweep.trainer.backends import triton_backend
    monkeypatch.setattr(triton_backend, "interpreted", lambda: False)
    monkeypatch.setattr(triton_backend, "COMPILE_NOTICE_S", 0.05)
    monkeypatch.setattr(triton_backend, "_LAUNCHED", set())
    calls = []

    class Kernel:       # kernel[grid](*args, **kwargs), slow the first time
        def __getitem__(self, grid):
            def run(*args, **kwargs):
                calls.append((grid, args, kwargs))
                time.sleep(0.3 if len(calls) == 1 else 0)
                return "compiled"
            return run

    kernel, spec = Kernel(), {"DEPTH": 2, "BN": True}
    out = triton_backend.launch(kernel, (4,), spec, "2-64-64-1, mse", "x", num_warps=4)
    assert out == "compiled"
    assert calls == [((4,), ("x",), {"DEPTH": 2, "BN": True, "num_warps": 4})]
    err = capsys.readouterr().err
    assert "compiling the triton kernel for 2-64-64-1, mse" in err
    triton_backend.launch(kernel, (4,), spec, "2-64-64-1, mse", "x", num_warps=4)
    triton_backend.launch(kernel, (4,), {"DEPTH": 1}, "1-16-1, mse", "x", num_warps=4)
    assert len(calls) == 3 and capsys.readouterr().err == ""


# ---- issue 30: what the interpreter cannot show on its own ------------------------------
@pytest.mark.parametrize("split, input_norm", [(4, "batchnorm"), (8, "none")])
def test_the_lanes_of_a_run_end_with_bitwise_identical_state(write_config, monkeypatch,
                                                             split, input_norm):
    """Every lane of a run keeps its own copy of the run's state (weights, m, v, running
    statistics) and takes the same steps: at the end the copies are equal bit for bit,
    shuffled and not, with short last batches, sgd with momentum and adam."""
    from tinysweep.trainer.backends import triton_backend
    monkeypatch.setattr(triton_backend, "SPLIT", split)
    seen = []
    unload = triton_backend._TritonGroup.unload

    def spy(group):
        seen.append({name: triton_backend.lane_copies(group.state[name], group.split)
                     for name in ("par", "m", "v", "rmean", "rvar") if group.state[name].dim() == 3})
        unload(group)
    monkeypatch.setattr(triton_backend._TritonGroup, "unload", spy)
    path = write_config(
        data={"source": "moons", "params": {"n": 23}, "seed": 1, "val_fraction": 0.2},
        model={"hidden": [3], "activation": "tanh", "loss": "bce_with_logits"},
        train={"epochs": 3, "lr": 0.05, "momentum": 0.9, "input_norm": input_norm},
        sweep={"params": {"optimizer": ["sgd", "adam"], "batch_size": [5, 18],
                          "shuffle": [True, False], "seed": [0, 1]}})
    triton_res, ref = both(path)
    assert_same_runs(triton_res, ref)
    assert len(seen) == 2 and all(len(state) == (5 if input_norm == "batchnorm" else 3)
                                  for state in seen)
    for state in seen:
        for name, copies in state.items():
            assert copies.shape[0] == split
            for c in range(1, split):
                assert torch.equal(copies[c], copies[0]), f"{name}: lane copy {c} differs"
    # the check sees a lane that strays by one bit
    copies = seen[0]["par"].clone()
    copies[split - 1, 0, 0] = torch.nextafter(copies[split - 1, 0, 0], torch.tensor(1.0))
    assert not torch.equal(copies[split - 1], copies[0])


@triton.jit
def offset_kernel(out_ptr, metric, RS, n_cols, run, col):
    tl.store(out_ptr, curve_offset(metric, RS, n_cols, run, col))


def test_curve_offsets_are_int64_past_2_31():
    """curves[metric, run, col] at 2,000,000 runs x 1,100 columns is 8.8e9 floats in: the
    offset the kernels store to, computed on scalars by the interpreter, has no wrap."""
    out = torch.zeros(1, dtype=torch.int64)
    runs, cols = 2_000_000, 1_100
    for metric, run, col in [(0, 0, 0), (1, 12_345, 7), (3, runs - 1, cols - 1)]:
        offset_kernel[(1,)](out, metric, runs, cols, run, col)
        assert int(out[0]) == (metric * runs + run) * cols + col


def test_the_order_kernel_loops_when_rows_pass_the_grid_limit(monkeypatch):
    """Past 65,535 blocks of rows (67,107,840 rows at 1,024 a block) the grid's second axis
    is capped and each program loops: with the cap set to 3, 5,000 rows in blocks of 256
    (20 blocks) give the reference permutations."""
    from tinysweep.kernels import mlp
    from tinysweep.trainer.spec.order import half_bits, permutations, round_keys

    assert mlp.order_grid(4, 67_107_840, 1024) == (4, 65_535)
    assert mlp.order_grid(4, 67_107_841, 1024) == (4, 65_535)
    assert mlp.order_grid(2, 1, 1024) == (2, 1)
    monkeypatch.setattr(mlp, "ORDER_GRID_Y", 3)
    n, seeds, epochs = 5_000, np.array([0, 7]), np.array([2, 0])
    grid = mlp.order_grid(len(seeds), n, 256)
    assert grid == (2, 3)
    keys = torch.tensor(round_keys(seeds, epochs).astype(np.int64), device=DEVICE)
    out = torch.full((len(seeds), n), -1, dtype=torch.int32, device=DEVICE)
    half = half_bits(n)
    mlp.order_kernel[grid](keys, out, n, half, (1 << half) - 1, BLOCK=256)
    np.testing.assert_array_equal(out.cpu().numpy(), permutations(seeds, epochs, n))


def test_no_per_launch_integer_specializes_the_kernels():
    """Triton specializes an int argument equal to 1 or a multiple of 16 unless told not
    to: each value class would compile the kernel again (8 to 13 s a variant on the H100's
    host) with no notice. Every int argument of the three kernels, bound at 1, 16 and 17
    by the launcher's own binder for sm_90, specializes the same way."""
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("compile_kernels.py")),
                           "--specialization"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout)
    assert set(seen) == {"train_kernel", "train_wide_kernel", "order_kernel"}
    assert "RS" in seen["train_kernel"] and "n" in seen["order_kernel"]
    for kernel, ints in seen.items():
        for name, bound in ints.items():
            assert len(set(bound)) == 1, f"{kernel}({name}=...) specializes: {bound}"


def test_auto_sends_models_too_large_for_a_lane_to_torch(write_config, monkeypatch):
    """More than 64 inputs: no wide kernel, and a lane of 300 features and one output holds
    512 padded weights (2 min to compile for sm_90 here, its rows through shared memory).
    auto gives it to the torch backend on CUDA; --backend
    triton still takes it; 65 features and one output (128 weights) stay on triton."""
    from tinysweep.trainer.backends import triton_backend
    from tinysweep.trainer.pipeline.sweep import prepare, resolve_backend
    assert triton_backend.padded_weights(300, [], 1) == 512
    assert triton_backend.kernel_for(300, [], False, 1) == "lanes"
    chunks = {}
    for d in (300, 65):
        x = np.random.default_rng(0).normal(size=(20, d)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.float32)
        path = write_config(f"d{d}.yaml", model={"hidden": [], "loss": "bce_with_logits"})
        chunks[d] = prepare(path, backend="torch", device="cpu", data=(x, y)).chunk
    assert "300 features, hidden [] and 1 output pad to 512 weights" in triton_backend.oversized_lane(
        chunks[300])
    assert triton_backend.oversized_lane(chunks[65]) is None
    monkeypatch.setattr(triton_backend, "interpreted", lambda: True)
    assert resolve_backend("auto", "cuda", chunks[300]) == "torch"
    assert resolve_backend("triton", "cuda", chunks[300]) == "triton"
    assert resolve_backend("auto", "cuda", chunks[65]) == "triton"
