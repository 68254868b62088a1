"""The reference backend against hand-written PyTorch training loops."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tinysweep
from tinysweep.trainer.spec.order import epoch_order
from tinysweep.trainer.pipeline.sweep import prepare


def hand_written(x, y, *, hidden, act, norm, seed, batch_size, shuffle, epochs, make_opt, loss):
    """What a user writes: nn.Sequential, torch.optim, a loop over batches, F.*_loss."""
    torch.manual_seed(seed)
    widths = [x.shape[1], *hidden, 1]
    layers = [norm()]
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(act())
    model = nn.Sequential(*layers)
    optimizer = make_opt(model.parameters())
    loss_fn = nn.functional.mse_loss if loss == "mse" else nn.functional.binary_cross_entropy_with_logits
    for epoch in range(epochs):
        model.train()
        order = torch.from_numpy(epoch_order(seed, epoch, len(x), shuffle))
        for start in range(0, len(x), batch_size):
            rows = order[start:start + batch_size]
            batch_loss = loss_fn(model(x[rows]).squeeze(-1), y[rows])
            optimizer.zero_grad()
            batch_loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        final_loss = loss_fn(model(x).squeeze(-1), y).item()
    return model, final_loss


def check_against_hand_written(path, **kw):
    res = tinysweep.run(path, backend="reference")
    data = prepare(path, backend="reference").chunk.data
    for run in res.table.itertuples():
        want, want_loss = hand_written(data.x_train, data.y_train, batch_size=run.batch_size,
                                       shuffle=run.shuffle, **kw)
        got = res.model(run.run_id).state_dict()
        assert got.keys() == want.state_dict().keys()
        for name, value in want.state_dict().items():
            torch.testing.assert_close(got[name], value.to(got[name].dtype), rtol=1e-5,
                                       atol=1e-6, msg=lambda m: f"run {run.run_id} {name}: {m}")
        assert run.final_train_loss == pytest.approx(want_loss, rel=1e-5, abs=1e-7)
        assert run.steps == kw["epochs"] * -(-len(data.x_train) // run.batch_size)


def test_line_regression_with_adam(write_config):
    path = write_config(data={"source": "line", "params": {"n": 50, "noise": 0.1}, "seed": 2},
                        train={"epochs": 4, "lr": 0.02, "seed": 3},
                        sweep={"params": {"batch_size": [7, 50], "shuffle": [True, False]}})
    check_against_hand_written(path, hidden=[], act=None, norm=nn.Identity, seed=3, epochs=4,
                               make_opt=lambda p: torch.optim.Adam(p, lr=0.02), loss="mse")


def test_mlp_with_batchnorm_and_nesterov_sgd(write_config):
    path = write_config(
        data={"source": "heart_rate", "params": {"n": 60}, "seed": 4},
        model={"hidden": [4], "activation": "sigmoid", "loss": "bce_with_logits"},
        train={"epochs": 3, "lr": 0.1, "optimizer": "sgd", "momentum": 0.9, "nesterov": True,
               "input_norm": "batchnorm", "seed": 7},
        sweep={"params": {"batch_size": [8, 25], "shuffle": [True, False]}})
    check_against_hand_written(
        path, hidden=[4], act=nn.Sigmoid, norm=lambda: nn.BatchNorm1d(1), seed=7, epochs=3,
        make_opt=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        loss="bce_with_logits")


def test_two_hidden_layers_adamw_with_step_schedule(write_config):
    path = write_config(
        data={"source": "moons", "params": {"n": 45}, "seed": 1},
        model={"hidden": [5, 3], "activation": "tanh", "loss": "bce_with_logits"},
        train={"epochs": 4, "lr": 0.05, "optimizer": "adamw", "weight_decay": 0.05,
               "lr_schedule": "step", "step_size": 2, "gamma": 0.5, "seed": 1},
        sweep={"params": {"batch_size": [6], "shuffle": [True]}})
    res = tinysweep.run(path, backend="reference")
    data = prepare(path).chunk.data
    torch.manual_seed(1)
    model = nn.Sequential(nn.Identity(), nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 3), nn.Tanh(),
                          nn.Linear(3, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for epoch in range(4):
        order = torch.from_numpy(epoch_order(1, epoch, 45, True))
        for start in range(0, 45, 6):
            rows = order[start:start + 6]
            loss = nn.functional.binary_cross_entropy_with_logits(
                model(data.x_train[rows]).squeeze(-1), data.y_train[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    got = res.model(0).state_dict()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6)
    exp_avg = opt.state[model[5].weight]["exp_avg"]
    torch.testing.assert_close(torch.from_numpy(res.params["optim.exp_avg.5.weight"][0]), exp_avg,
                               rtol=1e-5, atol=1e-7)


def test_standardize_uses_training_statistics(write_config):
    path = write_config(data={"source": "heart_rate", "params": {"n": 80}, "val_fraction": 0.25},
                        model={"hidden": [2], "loss": "bce_with_logits"},
                        train={"epochs": 1, "input_norm": "standardize"})
    res = tinysweep.run(path, backend="reference")
    data = prepare(path).chunk.data
    model = res.model(0)
    torch.testing.assert_close(model[0].mean, data.x_train.mean(0))
    torch.testing.assert_close(model[0].std, data.x_train.std(0))
    assert len(data.x_train) == 60
