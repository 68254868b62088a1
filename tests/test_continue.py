"""Continuing runs from saved state (Chunk.start): a run trained 0->E1, then E1->E2 from the
state it had at E1, is the run trained 0->E2: bit for bit on the reference, within float32
tolerance on the others; every optimizer, input norm, schedule and shuffle setting."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tinysweep.trainer.backends.backend import evaluation_epochs, stepped_lr
from tinysweep.trainer.pipeline.sweep import prepare, train_chunk

from conftest import _close

# every optimizer (sgd with nesterov momentum), input norm, schedule and shuffle, in one sweep
SETTINGS = {"input_norm": ["none", "standardize", "batchnorm"],
            "optimizer": ["sgd", "adam", "adamw"],
            "lr_schedule": ["constant", "step"],
            "shuffle": [True, False]}


def sweep(n: int, epochs: int, params: dict, hidden=(3,), loss="bce_with_logits") -> dict:
    return {"data": {"source": "moons", "params": {"n": n}, "seed": 2, "val_fraction": 0.25},
            "model": {"hidden": list(hidden), "activation": "tanh", "loss": loss},
            "train": {"epochs": epochs, "lr": 0.05, "batch_size": 4, "momentum": 0.9,
                      "nesterov": True, "step_size": 1, "gamma": 0.5, "seed": 3},
            "sweep": {"params": params}}


def in_two_stages(config: dict, backend: str, e1: int, whole=True, **kw):
    """(the runs trained 0->E1 then E1->E2, the runs trained 0->E2 (None unless ``whole``)),
    as ChunkResults, the chunk and E1."""
    plan = prepare(config, backend, **kw)
    chunk = plan.chunk
    runs = chunk.runs.replace(epochs=np.minimum(chunk.runs.epochs, e1))
    first = dataclasses.replace(chunk, runs=runs,
                                eval_epochs=evaluation_epochs(runs, chunk.eval_every))
    part = train_chunk(plan, first)
    assert not part.diverged.any()
    second = dataclasses.replace(chunk, start=part.state(e1))
    two = train_chunk(plan, second)
    for name, curve in two.curves.items():      # nothing trained again before E1
        assert np.isnan(curve[:, chunk.eval_epochs <= e1]).all(), name
    return two, train_chunk(plan, chunk) if whole else None, chunk, e1


def assert_continued(two, whole, chunk, e1, exact: bool, rtol=1e-4, atol=2e-5):
    """The continued runs equal the runs trained at once: steps, divergence, every final
    state_dict and optimizer entry, and every evaluation after E1."""
    np.testing.assert_array_equal(two.steps, whole.steps)
    np.testing.assert_array_equal(two.diverged, whole.diverged)
    after = chunk.eval_epochs > e1
    pairs = [(f"final {k}", two.final[k], whole.final[k]) for k in whole.final]
    pairs += [(f"optim {k}", two.optim[k], whole.optim[k]) for k in whole.optim]
    pairs += [(f"curve {k}", two.curves[k][:, after], whole.curves[k][:, after])
              for k in whole.curves]
    assert two.final.keys() == whole.final.keys() and two.optim.keys() == whole.optim.keys()
    for what, a, b in pairs:
        if exact:
            np.testing.assert_array_equal(a, b, err_msg=what)
        else:
            _close(a, b, what, rtol, atol)


def test_the_reference_continues_bit_for_bit():
    """36 settings, 15 training rows in batches of 4 (a short last batch), StepLR every
    epoch: 0->2->5 is 0->5, exactly."""
    two, whole, chunk, e1 = in_two_stages(sweep(20, 5, SETTINGS), "reference", 2)
    assert_continued(two, whole, chunk, e1, exact=True)


def test_the_reference_continues_bugs_and_two_layers():
    params = {"bug": ["none", "no_zero_grad", "loss_sum", "target_broadcast"],
              "optimizer": ["sgd", "adam"]}
    config = sweep(12, 4, params, hidden=(3, 2))
    two, whole, chunk, e1 = in_two_stages(config, "reference", 3)
    assert_continued(two, whole, chunk, e1, exact=True)
    assert "grad_sum.1.weight" in whole.optim     # no_zero_grad's sum is state


def test_the_torch_backend_continues_as_the_reference():
    """Batch sizes 4 and 13: runs whose epochs take 4 and 2 steps share the launches."""
    config = sweep(20, 4, {**SETTINGS, "batch_size": [4, 13]})
    two, whole, chunk, e1 = in_two_stages(config, "torch", 1)
    assert_continued(two, whole, chunk, e1, exact=False)
    ref, _, _, _ = in_two_stages(config, "reference", 1, whole=False)
    assert_continued(two, ref, chunk, e1, exact=False)


def test_the_torch_backend_continues_bugs():
    params = {"bug": ["none", "no_zero_grad", "loss_sum", "target_broadcast"],
              "optimizer": ["sgd", "adam"]}
    config = sweep(12, 4, params, hidden=(3, 2))
    two, _, chunk, e1 = in_two_stages(config, "torch", 2)
    ref, _, _, _ = in_two_stages(config, "reference", 2, whole=False)
    assert_continued(two, ref, chunk, e1, exact=False)


def test_numba_continues_as_the_reference():
    pytest.importorskip("numba")
    config = sweep(20, 5, SETTINGS)
    two, whole, chunk, e1 = in_two_stages(config, "numba", 2)
    assert_continued(two, whole, chunk, e1, exact=False)
    ref, _, _, _ = in_two_stages(config, "reference", 2, whole=False)
    assert_continued(two, ref, chunk, e1, exact=False)


def test_triton_continues_as_the_reference():
    """Under the interpreter: 11 training rows, 3 epochs, one optimizer setting per norm."""
    pytest.importorskip("triton")
    params = {"input_norm": ["none", "batchnorm"], "optimizer": ["sgd", "adam"],
              "lr_schedule": ["step"], "shuffle": [True, False]}
    config = sweep(15, 3, params, hidden=(2,))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    two, whole, chunk, e1 = in_two_stages(config, "triton", 1, device=device)
    assert_continued(two, whole, chunk, e1, exact=False)
    ref, _, _, _ = in_two_stages(config, "reference", 1, whole=False)
    assert_continued(two, ref, chunk, e1, exact=False)


def test_stepped_lr_chains_as_torch_steplr():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.7)
    for epoch in range(1, 8):
        opt.step()
        sched.step()
        assert stepped_lr(0.3, 0.7, 2, True, epoch)[0] == opt.param_groups[0]["lr"]
    assert stepped_lr(0.3, 0.7, 2, False, 7)[0] == 0.3
