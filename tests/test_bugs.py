"""Bug variants: the reference trains each as the buggy code would, the torch backend matches
it run by run, and the fused kernels leave them to the torch backend."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tinysweep
from tinysweep.trainer.backends import triton_backend
from tinysweep.trainer.spec.config import BUGS
from tinysweep.trainer.pipeline.sweep import prepare

from conftest import assert_same_runs


def bug_sweep(loss: str, **params) -> dict:
    data = {"source": "line", "params": {"n": 37}} if loss == "mse" else \
        {"source": "moons", "params": {"n": 41}, "val_fraction": 0.2}
    bugs = [b for b in BUGS if loss == "bce_with_logits" or b != "double_sigmoid"]
    return {"data": data, "model": {"hidden": [3], "activation": "tanh", "loss": loss},
            "train": {"epochs": 4, "lr": 0.005, "eval_every": 2},
            "sweep": {"params": {"bug": bugs, "batch_size": [5, 13, 64], "shuffle": [True, False],
                                 **params}}}


@pytest.mark.parametrize("loss", ["mse", "bce_with_logits"])
@pytest.mark.parametrize("params", [{"optimizer": ["sgd", "adamw"], "momentum": [0.0, 0.9]},
                                    {"input_norm": ["standardize", "batchnorm"],
                                     "weight_decay": [0.0, 0.01]}], ids=["optimizers", "norms"])
def test_each_bug_on_the_torch_backend_matches_the_reference(loss, params):
    config = bug_sweep(loss, **params)
    ref = tinysweep.run(config, backend="reference")
    assert set(ref.table.bug) == set(config["sweep"]["params"]["bug"])
    assert_same_runs(tinysweep.run(config, backend="torch", chunk_runs=17), ref)


def test_bugs_change_training_but_evaluations_stay_the_true_loss():
    res = tinysweep.run(bug_sweep("bce_with_logits"), backend="torch")
    table = res.table.set_index(["bug", "batch_size", "shuffle"])
    for bug in BUGS[1:]:
        assert not np.allclose(table.loc[bug].final_train_loss, table.loc["none"].final_train_loss)
    # the true loss of the final weights: the exported model, evaluated by hand
    from tinysweep.trainer.pipeline.sweep import config_data
    data = config_data(prepare(bug_sweep("bce_with_logits")).config)
    for run_id in range(len(res.table)):
        with torch.no_grad():
            z = res.model(run_id)(data.x_train).squeeze(-1)
            true = F.binary_cross_entropy_with_logits(z, data.y_train).item()
        assert true == pytest.approx(res.table.final_train_loss[run_id], rel=1e-4, abs=1e-6)


def own_loop(bug: str, steps: int = 3):
    """The line data's first batches, trained by a loop written as the buggy user wrote it,
    with torch's own losses (not tinysweep's): final weight and bias."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(1, 1))
    x = torch.linspace(0, 1, 37).unsqueeze(1)
    y = -4 * x.squeeze(1) + 0.05 * torch.from_numpy(
        np.random.default_rng(0).standard_normal(37)).float()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(steps):
        rows = slice(5 * step, 5 * step + 5)
        pred = model(x[rows])                                    # [B, 1]
        if bug == "target_broadcast":
            target = y[rows].view(-1, 1, 1)                      # a Dataset's [1, 1] targets
        else:
            target = y[rows].view(-1, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                      # torch warns of the shapes
            loss = F.mse_loss(pred, target, reduction="sum" if bug == "loss_sum" else "mean")
        if bug != "no_zero_grad":
            opt.zero_grad()
        loss.backward()
        opt.step()
    return model[1].weight.item(), model[1].bias.item()


@pytest.mark.parametrize("bug", ["none", "target_broadcast", "no_zero_grad", "loss_sum"])
def test_the_reference_trains_a_bug_as_a_plain_torch_loop_with_that_mistake(bug):
    config = {"data": {"source": "line", "params": {"n": 37}},
              "model": {"hidden": [], "loss": "mse"},
              "train": {"epochs": 1, "lr": 0.05, "batch_size": 5, "shuffle": False,
                        "optimizer": "sgd", "bug": bug}, "sweep": {"params": {}}}
    from tinysweep.trainer.backends import reference
    plan = prepare(config)
    chunk = plan.chunk
    # the loop above takes 3 steps; so does a run on the first 15 rows of the same data
    import dataclasses
    data = dataclasses.replace(chunk.data, x_train=chunk.data.x_train[:15],
                               y_train=chunk.data.y_train[:15])
    res = reference.train(dataclasses.replace(chunk, data=data))
    weight, bias = own_loop(bug)
    assert res.final["1.weight"].reshape(-1)[0] == pytest.approx(weight, rel=1e-5)
    assert res.final["1.bias"].reshape(-1)[0] == pytest.approx(bias, rel=1e-5)


def test_double_sigmoid_needs_bce_and_the_fused_kernels_route_bugs_to_torch():
    with pytest.raises(tinysweep.UserError,
                       match=r"^bug: run 1 has bug double_sigmoid, which needs model.loss "
                             r"bce_with_logits, not mse$"):
        prepare({"data": {"source": "line"}, "train": {"epochs": 1},
                 "sweep": {"params": {"bug": ["none", "double_sigmoid"]}}})
    with pytest.raises(tinysweep.UserError, match=r"^bug: run 0 has bug target_broadcast, "
                                                  r"which needs model.loss mse or "
                                                  r"bce_with_logits, not cross_entropy$"):
        prepare({"data": {"source": "blobs"}, "model": {"loss": "cross_entropy"},
                 "train": {"epochs": 1, "bug": "target_broadcast"}})
    plan = prepare(bug_sweep("mse"), backend="auto")
    assert plan.backend == "torch"
    assert "torch backend trains bugs" in triton_backend.unsupported(plan.chunk)
    correct = prepare({**bug_sweep("mse"), "sweep": {"params": {"lr": [0.1, 0.2]}}})
    assert triton_backend.unsupported(correct.chunk) is None
