"""The numba backend against the reference, run by run, as the torch backend is checked; and
what only it has: per-run arithmetic that no chunking, window or thread count changes, the
Feistel order computed in compiled code, and auto's choice of it on the CPU.

The kernels compile once per machine (about half a minute, then numba's disk cache): the
first test to train pays for it.
"""

from __future__ import annotations

import importlib.util
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

import tinysweep
from tinysweep.trainer.spec.errors import UserError

from conftest import MIXED, assert_same_runs, optimizer_sweep

pytestmark = pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                reason="numba is not installed")


def both(path, **kw):
    return (tinysweep.run(path, backend="numba", **kw),
            tinysweep.run(path, backend="reference", **kw))


def assert_same_runs_diverged_aside(actual, expected):
    """assert_same_runs, except for the frozen state of diverged runs: both backends stop
    them at the same evaluation with non-finite state or loss, but which entries overflowed
    to inf and which became NaN there depends on the order of the operations that
    overflowed (the reference sums a layer's gradient in a matmul, the kernels row by
    row, with FMAs), so they are left out; the flags, steps and curves are compared."""
    bad = expected.table.diverged.to_numpy()
    masked = [SimpleNamespace(table=res.table, curves=res.curves,
                              params={k: np.where(bad.reshape(-1, *[1] * (v.ndim - 1)), np.nan, v)
                                      for k, v in res.params.items()})
              for res in (actual, expected)]
    assert_same_runs(*masked)


@pytest.fixture(params=[64, 8, "rows"], ids=["64 lanes", "8 lanes", "rows"])
def lanes(request, monkeypatch):
    """Every group in blocks of this many lanes (kernels/numba_mlp.py: with_lanes), or one
    run at a time (train_rows; a batchnorm group in lanes), whatever its size and model
    would choose."""
    from tinysweep.trainer.backends import numba_backend
    if request.param == "rows":
        monkeypatch.setattr(numba_backend, "FORCE_ROWS", True)
    else:
        monkeypatch.setattr(numba_backend, "FORCE_ROWS", False)
        monkeypatch.setattr(numba_backend, "FORCE_LANES", request.param)
    return request.param


def on_one_and_two_threads(path):
    """tinysweep.run of ``path`` on the numba backend with 1 thread, then 2 (or as many as
    numba has, if fewer)."""
    numba = pytest.importorskip("numba")
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = tinysweep.run(path, backend="numba")
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        return one, tinysweep.run(path, backend="numba")
    finally:
        numba.set_num_threads(before)


def assert_identical(a, b):
    """Two Results of the same sweep are equal bit for bit."""
    assert a.table.equals(b.table)
    for name in b.curves:
        np.testing.assert_array_equal(a.curves[name], b.curves[name], err_msg=name)
    for name in b.params:
        np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=name)


@pytest.mark.parametrize("hidden, activation, loss, source, val", [
    ([], "sigmoid", "mse", "line", 0.0),
    ([5], "tanh", "bce_with_logits", "moons", 0.2),
    ([4, 3], "relu", "mse", "line", 0.2),
    ([3, 2], "sigmoid", "bce_with_logits", "heart_rate", 0.0),
    ([7], "relu", "bce_with_logits", "xor", 0.0),
    ([2, 5], "tanh", "mse", "circles", 0.0),
])
def test_mixed_sweep_matches_reference(write_config, hidden, activation, loss, source, val,
                                       lanes):
    n = 46 if val else 37
    path = write_config(
        data={"source": source, "params": {"n": n}, "seed": 3, "val_fraction": val},
        model={"hidden": hidden, "activation": activation, "loss": loss},
        train={"epochs": 3, "lr": 0.03, "momentum": 0.5, "seed": 11},
        sweep={"params": MIXED})
    numba_res, ref = both(path)
    assert len(ref.table) == 54
    assert not ref.table.diverged.any()
    assert_same_runs(numba_res, ref)


def test_line_kernel_matches_reference(write_config, lanes):
    """The one-input, no-hidden-layer model (its segment keeps the weight, bias and their
    gradient sums in registers) for both one-output losses, shuffled blocks with lanes of
    different seeds (gathered rows) and unshuffled (broadcast rows)."""
    for loss, source in (("bce_with_logits", "heart_rate"), ("mse", "line")):
        path = write_config(
            data={"source": source, "params": {"n": 41}, "seed": 3, "val_fraction": 0.2},
            model={"hidden": [], "loss": loss},
            train={"epochs": 4, "lr": 0.03, "input_norm": "standardize"},
            sweep={"params": {"optimizer": ["sgd", "adam"], "batch_size": [1, 7, 64],
                              "shuffle": [True, False], "seed": [0, 1, 2]}})
        numba_res, ref = both(path)
        assert len(ref.table) == 36 and not ref.table.diverged.any()
        assert_same_runs(numba_res, ref)


def _two_targets():
    """37 rows of 2 features and 2 regression targets, in memory (y [n, 2])."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((37, 2))
    return x, np.stack([x @ [1.5, -2.0] + 0.5, np.sin(2 * x[:, 0])], 1)


# K outputs: every depth, sgd with momentum and adam, batchnorm and none, in one sweep of
# several groups (architecture x input_norm x optimizer family); batch sizes 5 and 16
# leave short last batches of 37 (or 30) rows.
K_OUTPUTS = {"hidden": [[], [4], [3, 5]], "optimizer": ["sgd", "adam"],
             "input_norm": ["none", "batchnorm"], "batch_size": [5, 16],
             "shuffle": [True, False]}


@pytest.mark.parametrize("task", ["cross_entropy", "mse2"])
def test_k_outputs_match_reference(task, lanes):
    if task == "cross_entropy":     # 3 classes, a validation split: loss and accuracy curves
        config = {"data": {"source": "blobs", "params": {"n": 38, "classes": 3, "features": 2},
                           "seed": 2, "val_fraction": 0.2},
                  "model": {"activation": "tanh", "loss": "cross_entropy"}}
        kw = {}
    else:                           # two regression targets
        config = {"model": {"activation": "sigmoid", "loss": "mse"}}
        kw = {"data": _two_targets()}
    config.update(train={"epochs": 3, "lr": 0.05, "momentum": 0.9, "eval_every": 2, "seed": 7},
                  sweep={"params": K_OUTPUTS})
    numba_res, ref = (tinysweep.run(config, backend=b, **kw) for b in ("numba", "reference"))
    assert len(ref.table) == 48 and not ref.table.diverged.any()
    if task == "cross_entropy":
        assert {"final_val_accuracy", "final_train_accuracy"} <= set(ref.table.columns)
        assert ref.params["final.1.bias"].shape[1] == 4 and ref.params["final.5.bias"].shape[1] == 3
    assert_same_runs(numba_res, ref)


def test_optimizer_settings_and_schedules_match(write_config, lanes):
    """Per-run momentum, nesterov, betas, eps, weight decay, StepLR, epochs and seeds, and a
    validation split, evaluated every other epoch and at each run's last."""
    path = write_config(**optimizer_sweep(41, 6, [2, 5, 6], 7))
    numba_res, ref = both(path)
    table = ref.table
    assert set(table.epochs) == {2, 5, 6} and table.lr_schedule.nunique() == 2
    assert "final_val_loss" in table and "final_val_accuracy" in table
    assert list(ref.curves["epoch"]) == [2, 4, 5, 6]
    assert_same_runs(numba_res, ref)


def test_sgd_without_momentum_keeps_no_buffer(write_config):
    path = write_config(train={"epochs": 2, "optimizer": "sgd", "lr": 0.1},
                        sweep={"params": {"momentum": [0.0, 0.9], "batch_size": [4, 37]}})
    numba_res, ref = both(path)
    assert_same_runs(numba_res, ref)
    no_momentum = (ref.table.momentum == 0).to_numpy()
    assert np.isnan(numba_res.params["optim.momentum_buffer.1.weight"][no_momentum]).all()


@pytest.mark.parametrize("eval_every", [1, 4])
def test_diverging_runs_are_flagged_and_isolated(write_config, eval_every, lanes):
    params = {"lr": [0.01, 300.0, 0.02, 1e6], "batch_size": [5, 9, 40]}
    model = {"hidden": [3], "activation": "tanh", "loss": "mse"}
    train = {"epochs": 6, "optimizer": "sgd", "eval_every": eval_every}
    path = write_config(model=model, train=train, sweep={"params": params})
    numba_res, ref = both(path)
    bad = ref.table.lr > 100
    assert list(ref.table.diverged) == list(bad)
    assert_same_runs_diverged_aside(numba_res, ref)
    assert numba_res.table.final_train_loss[bad].isna().all()
    assert (ref.table.steps[bad] < ref.table.steps[~bad].max()).all()   # stopped early
    # the healthy runs are exactly what they are in a sweep without the diverging ones,
    # whose lanes they shared
    calm = tinysweep.run(write_config("calm.yaml", model=model, train=train,
                                      sweep={"params": {"lr": [0.01, 0.02],
                                                        "batch_size": [5, 9, 40]}}),
                         backend="numba")
    for name, value in calm.params.items():
        np.testing.assert_array_equal(numba_res.params[name][~bad.to_numpy()], value,
                                      err_msg=name)


def test_diverging_cross_entropy_runs_match_reference(write_config, lanes):
    path = write_config(data={"source": "spirals", "params": {"n": 31, "classes": 4}},
                        model={"hidden": [5], "activation": "relu", "loss": "cross_entropy"},
                        train={"epochs": 4, "optimizer": "sgd", "eval_every": 2},
                        sweep={"params": {"lr": [0.1, 1e38], "batch_size": [4, 31]}})
    numba_res, ref = both(path)
    assert list(ref.table.diverged) == [False, False, True, True]
    assert_same_runs_diverged_aside(numba_res, ref)


def test_diverging_batchnorm_runs_match_reference(write_config):
    path = write_config(data={"source": "moons", "params": {"n": 30}},
                        model={"hidden": [4], "activation": "relu", "loss": "bce_with_logits"},
                        train={"epochs": 4, "optimizer": "sgd", "input_norm": "batchnorm"},
                        sweep={"params": {"lr": [0.05, 1e30], "batch_size": [6, 30]}})
    numba_res, ref = both(path)
    assert list(ref.table.diverged) == [False, False, True, True]
    assert_same_runs_diverged_aside(numba_res, ref)


def test_chunk_size_changes_nothing(write_config):
    """A run's arithmetic is its lane's own: chunking changes no bit."""
    path = write_config(model={"hidden": [4], "activation": "sigmoid", "loss": "mse"},
                        sweep={"params": {"batch_size": [5, 8, 20], "shuffle": [True, False],
                                          "input_norm": ["none", "batchnorm"],
                                          "seed": [0, 1]}})
    whole = tinysweep.run(path, backend="numba")
    for chunk_runs in (1, 5):
        assert_identical(tinysweep.run(path, backend="numba", chunk_runs=chunk_runs), whole)


@pytest.mark.parametrize("params", [
    {"lr": {"logspace": [-3, -1, 30]}, "batch_size": [7, 50], "seed": [0, 1]},   # one group
    {"hidden": [[], [3], [4, 2]], "activation": ["tanh", "relu"], "lr": [0.01, 0.1],
     "seed": [0, 1]},           # six groups of four runs: trained side by side on 2 threads
], ids=["blocks", "groups"])
def test_thread_count_changes_nothing(write_config, monkeypatch, params):
    numba = pytest.importorskip("numba")
    from tinysweep.trainer.backends import numba_backend
    path = write_config(data={"source": "moons", "params": {"n": 50}},
                        model={"hidden": [5], "activation": "tanh", "loss": "bce_with_logits"},
                        sweep={"params": params})
    side_by_side = []
    real = numba_backend._train_without_grad
    monkeypatch.setattr(numba_backend, "_train_without_grad",
                        lambda group: side_by_side.append(group.threads) or real(group))
    one, two = on_one_and_two_threads(path)
    assert_identical(two, one)
    if "hidden" in params and numba.config.NUMBA_NUM_THREADS >= 2:
        assert side_by_side == [1] * 6
    else:
        assert side_by_side == []


def test_groups_of_a_few_blocks_train_side_by_side(write_config, monkeypatch):
    """Two groups of three 8-lane blocks (24 runs of a K-output model each) on 2 threads:
    one after the other each leaves a thread idle for its third block, side by side they
    do not, so they train side by side, the longest first; the results are those of one
    thread."""
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    from tinysweep.trainer.backends import numba_backend, torch_backend
    from tinysweep.trainer.pipeline.sweep import prepare
    path = write_config(data={"source": "moons", "params": {"n": 40}},
                        model={"activation": "relu", "loss": "cross_entropy"},
                        train={"epochs": 2, "batch_size": 8},
                        sweep={"params": {"hidden": [[4], [6]],
                                          "lr": {"logspace": [-3, -1, 12]}, "seed": [0, 1]}})
    chunk = prepare(path, backend="numba").chunk
    groups = torch_backend.group_rows(chunk)
    assert [len(rows) for rows in groups] == [24, 24]
    assert numba_backend.side_by_side(chunk, groups, 2) == [1, 0]      # [6] costs more
    assert numba_backend.side_by_side(chunk, groups[:1], 2) == []      # one group alone
    assert numba_backend.side_by_side(chunk, groups, 1) == []
    together = []
    real = numba_backend._train_without_grad
    monkeypatch.setattr(numba_backend, "_train_without_grad",
                        lambda group: together.append(len(group.rows)) or real(group))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = tinysweep.run(path, backend="numba")
        assert together == []
        numba.set_num_threads(2)
        two = tinysweep.run(path, backend="numba")
    finally:
        numba.set_num_threads(before)
    assert together == [24, 24]
    assert_identical(two, one)


def test_one_run_at_a_time_is_chosen_for_wide_models_and_few_runs(write_config):
    """group_lanes: one run at a time where a model's weights are many or its runs few
    (digits' 64-32-10, a single run of 64-16-10), lanes for the line model and the 1-16-1
    MLP at scale, and for batchnorm whatever its size."""
    from tinysweep.trainer.backends import numba_backend, torch_backend
    from tinysweep.trainer.pipeline.sweep import prepare

    def kind(features, hidden, runs, input_norm="standardize", loss="cross_entropy"):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((200, features)).astype(np.float32)
        y = rng.integers(0, 10 if loss == "cross_entropy" else 2, 200)
        cfg = {"model": {"hidden": hidden, "loss": loss},
               "train": {"epochs": 5, "input_norm": input_norm, "batch_size": 32},
               "sweep": {"params": {"lr": {"logspace": [-3, -1, runs]}}}}
        chunk = prepare(cfg, backend="numba", data=(x, y.astype(np.float32))).chunk
        (rows,) = torch_backend.group_rows(chunk)
        return numba_backend.group_lanes(chunk, rows)

    rows = numba_backend.ROWS
    assert kind(64, [32], 24) == rows and kind(64, [16], 1) == rows
    assert kind(64, [16], 24, input_norm="batchnorm") != rows
    assert kind(1, [16], 1000, loss="bce_with_logits") == 64
    assert kind(1, [], 1000, loss="bce_with_logits") == 64


def test_one_run_at_a_time_changes_no_bit_with_threads_or_windows(write_config, monkeypatch):
    """The kernel one run at a time: the same bits on 1 and 2 threads and in windows of one
    epoch (its state kept between calls), shuffled and not, K outputs, a short last batch,
    StepLR; and the reference's results."""
    from tinysweep.trainer.backends import numba_backend
    monkeypatch.setattr(numba_backend, "FORCE_ROWS", True)
    path = write_config(data={"source": "spirals", "params": {"n": 43, "classes": 3},
                              "val_fraction": 0.2},
                        model={"hidden": [9, 5], "activation": "tanh", "loss": "cross_entropy"},
                        train={"epochs": 4, "lr": 0.05, "eval_every": 3, "lr_schedule": "step",
                               "step_size": 2, "gamma": 0.5, "optimizer": "adam"},
                        sweep={"params": {"batch_size": [5, 16], "seed": [0, 1],
                                          "shuffle": [True, False]}})
    one, two = on_one_and_two_threads(path)
    assert_identical(two, one)
    monkeypatch.setattr(numba_backend, "WINDOW_S", 1e-12)
    windows = []
    real = numba_backend._NumbaGroup.train_window
    monkeypatch.setattr(numba_backend._NumbaGroup, "train_window",
                        lambda self, nk, e0, e1: windows.append((e0, e1)) or real(self, nk, e0, e1))
    assert_identical(tinysweep.run(path, backend="numba"), one)
    assert windows == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert_same_runs(one, tinysweep.run(path, backend="reference"))


def test_windows_of_epochs_change_nothing(write_config, monkeypatch):
    """Permutation tables for one epoch at a time (several kernel calls, the state kept
    between them) give the same bits as the whole sweep in one call."""
    from tinysweep.trainer.backends import numba_backend
    path = write_config(data={"source": "line", "params": {"n": 10}},
                        train={"epochs": 4, "lr": 0.05, "eval_every": 3,
                               "lr_schedule": "step", "step_size": 1, "gamma": 0.5},
                        sweep={"params": {"batch_size": [3, 4], "seed": [0, 1],
                                          "shuffle": [True, False]}})
    whole = tinysweep.run(path, backend="numba")
    monkeypatch.setattr(numba_backend, "ORDER_BYTES", 2 * 10 * 4)   # two seeds, one epoch
    windows = []
    real = numba_backend._NumbaGroup.train_window
    monkeypatch.setattr(numba_backend._NumbaGroup, "train_window",
                        lambda self, nk, e0, e1: windows.append((e0, e1)) or real(self, nk, e0, e1))
    split = tinysweep.run(path, backend="numba")
    assert windows == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert_identical(split, whole)
    assert_same_runs(split, tinysweep.run(path, backend="reference"))
    # the windows' time budget splits them too: half an epoch's predicted time, one epoch
    monkeypatch.setattr(numba_backend, "ORDER_BYTES", 1 << 26)
    monkeypatch.setattr(numba_backend, "WINDOW_S", 1e-12)
    windows.clear()
    assert_identical(tinysweep.run(path, backend="numba"), whole)
    assert windows == [(0, 1), (1, 2), (2, 3), (3, 4)]


@pytest.mark.parametrize("n", [1, 2, 7, 64, 100, 1000, 4097])
def test_order_tables_equal_order_py(n):
    from tinysweep.kernels.numba_mlp import order_tables
    from tinysweep.trainer.spec.order import half_bits, permutations, round_keys

    seeds = np.array([0, 1, 2**40 + 3, 12345, 2**63 - 1])
    epochs = np.array([0, 5, 1, 99, 10**6])
    out = np.full((len(seeds), n), -1, dtype=np.int32)
    order_tables(round_keys(seeds, epochs), n, half_bits(n), out)
    np.testing.assert_array_equal(out, permutations(seeds, epochs, n))


def test_auto_picks_numba_on_the_cpu(write_config, monkeypatch):
    from tinysweep.trainer.backends import numba_backend
    from tinysweep.trainer.pipeline.sweep import prepare
    assert prepare(write_config(), backend="auto", device="cpu").backend == "numba"
    classes = write_config("classes.yaml", data={"source": "blobs", "params": {"n": 30}},
                           model={"hidden": [4], "loss": "cross_entropy"})
    assert prepare(classes, backend="auto", device="cpu").backend == "numba"
    # models it cannot train go to the torch backend
    deep = write_config("deep.yaml", model={"hidden": [3, 3, 3], "loss": "mse"})
    assert prepare(deep, backend="auto", device="cpu").backend == "torch"
    buggy = write_config("buggy.yaml", sweep={"params": {"bug": ["none", "loss_sum"]}})
    assert prepare(buggy, backend="auto", device="cpu").backend == "torch"
    # and so does everything without numba
    monkeypatch.setattr(numba_backend, "available", lambda: "the numba package is not installed")
    assert prepare(write_config(), backend="auto", device="cpu").backend == "torch"


def test_unsupported_models_are_refused_in_one_line(write_config):
    with pytest.raises(UserError, match=r"^--backend numba: hidden: the numba backend "
                                        r"fuses up to 2 hidden layers, got 3; use --backend torch$"):
        tinysweep.run(write_config(model={"hidden": [3, 3, 3], "loss": "mse"}), backend="numba")
    with pytest.raises(UserError, match="^--backend numba: bug: "):
        tinysweep.run(write_config(sweep={"params": {"bug": ["none", "loss_sum"]}}),
                      backend="numba")


def test_cli_runs_the_numba_backend(write_config, tmp_path):
    from tinysweep.trainer import cli
    out = tmp_path / "out"
    assert cli.main(["run", str(write_config()), "--out", str(out), "--backend", "numba"]) == 0
    res = tinysweep.load(out)
    ref = tinysweep.run(write_config(), backend="reference")
    assert_same_runs(res, ref)
    assert yaml.safe_load((out / "config.yaml").read_text())["name"] == "t"


def test_a_sweep_of_architectures_is_one_call_per_architecture_and_matches_the_reference(
        write_config):
    path = write_config(data={"source": "moons", "params": {"n": 37}, "val_fraction": 0.2},
                        model={"loss": "bce_with_logits"}, train={"epochs": 3, "lr": 0.05},
                        sweep={"params": {"hidden": [[], [4], [3, 5]],
                                          "activation": ["tanh", "relu"],
                                          "batch_size": [5, 37], "optimizer": ["sgd", "adam"]}})
    assert_same_runs(tinysweep.run(path, backend="numba"), tinysweep.run(path, backend="reference"))


def test_flush_to_zero_is_the_kernels_alone(write_config):
    """The kernels flush denormals to zero while they train (kernels/numba_mlp.py says
    why) and put the thread's floating-point mode back: arithmetic after a sweep still
    keeps numbers below 2**-126."""
    numba = pytest.importorskip("numba")
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            tinysweep.run(write_config(), backend="numba")
            assert np.float32(1e-38) / np.float32(100) > 0
    finally:
        numba.set_num_threads(before)


def test_a_kernels_compile_is_said_above_the_progress_bar_and_compiled_once(write_config,
                                                                             monkeypatch, capsys):
    """`prepare` compiles the signature the kernel is then called with (one compile, not
    two), and says on stderr what the wait is when it takes longer than COMPILE_NOTICE_S."""
    import numba

    from tinysweep.trainer.backends import numba_backend

    @numba.njit
    def stand_in(a, b, flag, *, scale):      # a fresh function: nothing compiled yet
        return a.sum() * scale + b if flag else b

    monkeypatch.setattr(numba_backend, "COMPILE_NOTICE_S", 0.0)
    args, kwargs = (np.ones(3, np.float32), 2, True), {"scale": 0.5}
    numba_backend.prepare(stand_in, args, kwargs, "a stand-in", 6.5)
    assert "tinysweep: compiling the numba kernel for a stand-in, once per machine (about 6 s)" \
        in capsys.readouterr().err
    assert stand_in(*args, **kwargs) == 3.5 and len(stand_in.signatures) == 1
    numba_backend.prepare(stand_in, args, kwargs, "a stand-in", 6.5)    # compiled: nothing said
    assert capsys.readouterr().err == ""
    # the backend's own call: a sweep shown with a progress bar prepares its kernel first
    path = write_config(model={"hidden": [3], "activation": "tanh", "loss": "mse"},
                        sweep={"params": {"lr": [0.01, 0.1]}})
    tinysweep.run(path, backend="numba", progress=True)
    assert len(numba_backend.kernel_of(1, False, numba_backend.lanes_for(2)).signatures) == 1


@pytest.mark.parametrize("error", ["lowering", "disk full"])
def test_a_kernel_that_cannot_compile_falls_back_to_torch_in_one_line(write_config, monkeypatch,
                                                                      capsys, error):
    """numba or LLVM refusing the kernel, or a cache whose disk is full (the compile's save
    raises OSError): the sweep trains on the torch backend, says so in one line on stderr,
    and its results are the torch backend's (both match the reference)."""
    import errno

    from numba.core.errors import LoweringError

    from tinysweep.kernels import numba_mlp
    from tinysweep.trainer.backends import numba_backend

    def refuse(kernel, signature):
        if error == "lowering":
            raise LoweringError("Failed in nopython mode pipeline (step: native lowering)")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(numba_backend, "_compile", refuse)
    # fresh dispatchers, none compiled in this process yet (another test may have compiled
    # this variant: it would never compile again)
    for lanes in (numba_backend.WIDE, numba_backend.NARROW):
        monkeypatch.setattr(numba_mlp.with_lanes(lanes), "_VARIANTS", {})
    path = write_config(data={"source": "blobs", "params": {"n": 40, "features": 3}},
                        model={"hidden": [2, 2], "activation": "relu", "loss": "cross_entropy"},
                        train={"epochs": 2, "eps": 3e-8},
                        sweep={"params": {"lr": [0.01, 0.1], "batch_size": [7, 40]}})
    capsys.readouterr()
    res = tinysweep.run(path, backend="numba")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("tinysweep: the numba kernels could not be compiled here (")
    assert ("LoweringError" if error == "lowering" else "No space left") in err[0]
    assert err[0].endswith("training on the torch backend")
    torch_res = tinysweep.run(path, backend="torch")
    assert res.table.equals(torch_res.table)
    assert_same_runs(res, tinysweep.run(path, backend="reference"))


def test_auto_trains_on_torch_where_it_predicts_torch_clearly_faster(write_config, monkeypatch,
                                                                     capsys):
    """On quiet cores auto trains on the torch backend where that is predicted 1.5x faster
    than the kernels with their compile: a fresh machine (a variant not in numba's cache)
    with a small sweep, said once; or one run of a wide model in a block of 64 lanes (63
    idle), said nowhere. Busy cores, or torch predicted slower: numba. The run in a block
    of 8 lanes, as lanes_for gives it: numba."""
    from tinysweep.trainer.backends import numba_backend, torch_backend
    from tinysweep.trainer.pipeline.sweep import prepare
    path = write_config(model={"hidden": [3], "activation": "tanh", "loss": "mse"},
                        sweep={"params": {"lr": [0.01, 0.1]}})
    tinysweep.run(path, backend="numba")
    chunk = prepare(path, backend="numba", device="cpu").chunk
    assert numba_backend.variants(chunk) == [(1, False, 8)]     # 2 runs: blocks of 8 lanes
    assert numba_backend.cached(1, False, 8) is True    # the signature auto checks is the real one
    monkeypatch.setattr(numba_backend, "AUTO_PREDICT", True)
    monkeypatch.setattr(numba_backend, "busy", lambda: False)
    capsys.readouterr()
    assert prepare(path, backend="auto", device="cpu").backend == "numba"   # compiled, tiny
    monkeypatch.setattr(numba_backend, "cached", lambda depth, multi, lanes: False)
    assert prepare(path, backend="auto", device="cpu").backend == "torch"
    assert prepare(path, backend="auto", device="cpu").backend == "torch"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("tinysweep: training on the torch backend (")
    compile_s = numba_backend.COLD_COMPILE_S[False]
    assert f"rather than compiling the numba kernels for this model first (about {compile_s:.0f} s" \
        in err[0]
    monkeypatch.setattr(numba_backend, "busy", lambda: True)    # torch's threads would wait
    assert prepare(path, backend="auto", device="cpu").backend == "numba"
    monkeypatch.setattr(numba_backend, "busy", lambda: False)
    monkeypatch.setattr(torch_backend, "predicted_seconds", lambda chunk, launches=1: 6.0)
    assert prepare(path, backend="auto", device="cpu").backend == "numba"
    assert prepare(path, backend="numba", device="cpu").backend == "numba"
    monkeypatch.undo()
    # one run of 64-32-10, compiled: numba's block of lanes costs 64 runs' time
    monkeypatch.setattr(numba_backend, "AUTO_PREDICT", True)
    monkeypatch.setattr(numba_backend, "busy", lambda: False)
    monkeypatch.setattr(numba_backend, "cached", lambda depth, multi, lanes: True)
    wide = write_config("wide.yaml", data={"source": "blobs",
                                           "params": {"n": 200, "features": 64, "classes": 10}},
                        model={"hidden": [32], "activation": "relu", "loss": "cross_entropy"},
                        train={"epochs": 20})
    chunk = prepare(wide, backend="numba", device="cpu").chunk
    narrow = numba_backend.predicted_seconds(chunk)
    monkeypatch.setattr(numba_backend, "FORCE_LANES", 64)
    wide_s = numba_backend.predicted_seconds(chunk)
    assert torch_backend.predicted_seconds(chunk) * numba_backend.TORCH_MARGIN < wide_s
    capsys.readouterr()
    assert prepare(wide, backend="auto", device="cpu").backend == "torch"
    assert capsys.readouterr().err == ""
    # in a block of 8 lanes (its own width): 8 runs' time, as fast as torch's
    monkeypatch.setattr(numba_backend, "FORCE_LANES", None)
    assert numba_backend.lanes_for(1) == 8 and narrow * 4 < wide_s
    assert prepare(wide, backend="auto", device="cpu").backend == "numba"


def test_an_empty_numba_cache_is_seen_as_not_compiled(tmp_path):
    """cached() reads numba's disk cache: in a process whose cache directory is empty no
    variant is compiled, and auto trains a small sweep on the torch backend."""
    import os
    import subprocess
    import sys

    code = ("import tinysweep\n"
            "from tinysweep.trainer.backends import numba_backend\n"
            "numba_backend.busy = lambda: False\n"
            "from tinysweep.trainer.pipeline.sweep import prepare\n"
            "print(numba_backend.cached(1, False))\n"
            "cfg = {'data': {'source': 'line', 'params': {'n': 20}}, 'model': {'hidden': [2]},\n"
            "       'train': {'epochs': 2}}\n"
            "print(prepare(cfg, backend='auto', device='cpu').backend)\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
           "TINYSWEEP_AUTO_PREDICT": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "torch"]
    assert "rather than compiling the numba kernels" in done.stderr


def test_busy_reads_the_cores_working_share_now(monkeypatch):
    """busy(): the cores' working share over a short sample of /proc/stat (not the load
    average, which lags a minute), against the cores less half a core."""
    from tinysweep.trainer.backends import numba_backend
    total, idle = numba_backend._cpu_times()            # this machine's own /proc/stat
    assert total > idle >= 0
    monkeypatch.setattr(numba_backend.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(numba_backend.time, "sleep", lambda s: None)
    for idle, expected in ((20, True), (50, False), (25, True), (26, False)):
        samples = iter([(1000, 500), (1100, 500 + idle)])     # 100 jiffies, `idle` of them idle
        monkeypatch.setattr(numba_backend, "_cpu_times", lambda: next(samples))
        assert numba_backend.busy() is expected, idle


def test_auto_waits_for_another_process_compiling_into_the_same_cache(monkeypatch, capsys,
                                                                      tmp_path):
    """Another process's background compile into this numba cache holds warm_lock(): auto
    waits for it to end before choosing, and says so; another cache has another lock."""
    import subprocess
    import time

    from tinysweep.trainer.backends import numba_backend
    pytest.importorskip("fcntl")
    monkeypatch.setattr(numba_backend, "COMPILE_NOTICE_S", 0.2)
    monkeypatch.setattr(numba_backend, "_WARM_PROCS", [])
    lock = numba_backend.warm_lock()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time\nf = open(sys.argv[1], 'a')\n"
         "fcntl.flock(f, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(1.5)\n", lock],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    t = time.monotonic()
    numba_backend._wait_for_warming()
    assert time.monotonic() - t > 1.0                  # until the other process let go
    holder.wait()
    assert "waiting for the numba kernels compiling in the background" in capsys.readouterr().err
    t = time.monotonic()
    numba_backend._wait_for_warming()                  # nothing compiling: no wait
    assert time.monotonic() - t < 1.0
    assert numba_backend.compile_left() is None
    monkeypatch.setattr(numba_backend, "warming", lambda: True)
    with open(lock, "w") as f:          # as compile_pending writes it: started 3 s ago
        f.write(repr((time.time() - 3.0, [(1, True, 8), (2, False, 64)])))
    seconds, doing = numba_backend.compile_left()
    cold = numba_backend.COLD_COMPILE_S
    assert doing == [(1, True, 8), (2, False, 64)]
    assert cold[True] + cold[False] - 3.5 < seconds < cold[True] + cold[False] - 2.5
    with open(lock, "w") as f:
        f.write("")                     # unreadable: a whole compile
    assert numba_backend.compile_left() == (max(cold.values()), [])
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert numba_backend.warm_lock() != lock


def test_auto_on_torch_for_a_cold_compile_compiles_the_kernels_in_the_background(
        write_config, monkeypatch, capsys):
    """Where auto trains on torch rather than wait for a compile, a detached process at the
    lowest priority compiles the variants into numba's cache once the sweep has trained (not
    beside torch's threads), once per variant and process, and the line on stderr says so,
    once; while it runs, a next sweep that torch trains faster trains on torch on one
    thread, and one that the kernels train faster waits for it; compile_variants is what it
    runs."""
    import subprocess

    import torch

    from tinysweep.trainer.backends import numba_backend, torch_backend
    from tinysweep.trainer.pipeline.sweep import prepare
    started, waited = [], []

    class Compiling:                                # the background process, still running
        def __init__(self, args, **kw):
            started.append((args, kw))

        def poll(self):
            return None

        def wait(self):
            waited.append(self)
    monkeypatch.setattr(subprocess, "Popen", Compiling)
    monkeypatch.setattr(numba_backend, "WARM", True)
    monkeypatch.setattr(numba_backend, "_WARMING", set())
    monkeypatch.setattr(numba_backend, "_PENDING", set())
    monkeypatch.setattr(numba_backend, "_WARM_PROCS", [])
    monkeypatch.setattr(numba_backend, "AUTO_PREDICT", True)
    monkeypatch.setattr(numba_backend, "busy", lambda: False)
    monkeypatch.setattr(numba_backend, "cached", lambda depth, multi, lanes: False)
    path = write_config(model={"hidden": [3], "activation": "tanh", "loss": "mse"},
                        sweep={"params": {"lr": [0.01, 0.1]}})
    capsys.readouterr()
    assert prepare(path, backend="auto", device="cpu").backend == "torch"
    assert started == []                            # not while the sweep trains
    res = tinysweep.run(path)
    assert res.table.steps.gt(0).all() and len(started) == 1 and waited == []
    threads = []
    real_train = torch_backend.train
    monkeypatch.setattr(torch_backend, "train", lambda *a, **kw: threads.append(
        torch.get_num_threads()) or real_train(*a, **kw))
    tinysweep.run(path)
    assert len(started) == 1                               # once per variant and process
    assert waited == [] and threads == [1]      # torch, on one thread beside the compile
    monkeypatch.setattr(torch_backend, "predicted_seconds", lambda chunk, launches=1: 1e3)
    assert prepare(path, backend="auto", device="cpu").backend == "numba"
    assert len(waited) == 1       # the kernels win: it waited for the compile to end
    args, kw = started[0]
    assert args[-2] == "[(1, False, 8)]" and "os.nice(19)" in args[-3]
    assert args[-1] == numba_backend.warm_lock()
    assert kw["start_new_session"] and kw["stdout"] == subprocess.DEVNULL
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].endswith("background after this sweep, for the next)")
    numba_backend.compile_variants([(1, False, 8)])        # what the process runs
    kernel = numba_backend.kernel_of(1, False, numba_backend.lanes_for(2))
    assert numba_backend._signature(kernel, 1, False) in kernel.overloads


def test_parallel_ranges_cover_every_item_once_at_about_equal_cost():
    """parallel's ranges: contiguous, covering 0..count-1 once; with a cost per item
    (blocks of small batches cost 5x those of large ones), each range's cost within one
    item's of an equal share."""
    import threading
    from tinysweep.trainer.backends import numba_backend
    cost = np.r_[np.full(100, 5.0), np.full(400, 1.0), [0.0, 0.0]]
    for weights in (None, cost):
        ranges, lock = [], threading.Lock()

        def record(lo, hi):
            with lock:
                ranges.append((lo, hi))
        numba_backend.parallel(record, len(cost), 2, weights)
        ranges.sort()
        assert ranges[0][0] == 0 and ranges[-1][1] == len(cost)
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(ranges, ranges[1:]))
        assert len(ranges) <= 2 * numba_backend.RANGES_PER_THREAD
    share = cost.sum() / len(ranges)
    assert all(abs(cost[lo:hi].sum() - share) <= cost.max() for lo, hi in ranges)


def test_preload_loads_only_cached_kernels_and_keeps_its_errors_to_itself(write_config,
                                                                          monkeypatch):
    """The thread _train starts loads the chunk's cached kernels (through _compile, under
    the compile lock); one that is not on disk it leaves to prepare, which says it is
    compiling; an error in the thread stops only the thread."""
    from tinysweep.trainer.backends import numba_backend
    from tinysweep.trainer.pipeline.sweep import prepare
    path = write_config(data={"source": "line", "params": {"n": 12}},
                        sweep={"params": {"batch_size": [3, 5], "shuffle": [False, True]}})
    whole = tinysweep.run(path, backend="numba")          # the variant compiled and cached
    chunk = prepare(path, backend="numba").chunk
    loaded = []
    monkeypatch.setattr(numba_backend, "_compile", lambda kernel, sig: loaded.append(sig))
    numba_backend._preload(chunk).join()
    assert len(loaded) == len(numba_backend.variants(chunk)) == 1
    loaded.clear()
    monkeypatch.setattr(numba_backend, "_in_cache", lambda kernel, sig: False)
    numba_backend._preload(chunk).join()
    assert loaded == []
    monkeypatch.undo()
    monkeypatch.setattr(numba_backend, "variants", lambda *a: 1 / 0)
    thread = numba_backend._preload(chunk)
    thread.join()
    assert not thread.is_alive()
    assert_identical(tinysweep.run(path, backend="numba"), whole)
