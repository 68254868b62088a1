"""The model every backend trains, in its plain PyTorch form, and the losses.

The exported (and reference) model is an ``nn.Sequential``::

    0: input normalization  (Identity | Standardize | BatchNorm1d(d))
    1: Linear(d, h1), 2: activation, 3: Linear(h1, h2), ..., last: Linear(h_last, 1)

so its state_dict names (``0.running_mean``, ``1.weight``, ``3.bias``, ...) are the same for
every input_norm, and the vectorized backends use the same names for their stacked tensors.
"""

from __future__ import annotations

import torch
from torch import nn

_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


class Standardize(nn.Module):
    """``(x - mean) / std`` with fixed per-feature statistics (buffers, shape [d])."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def layer_sizes(n_features: int, hidden) -> list[tuple[int, int]]:
    """(in, out) of each Linear layer, first to last; the last has one output."""
    widths = [n_features, *hidden, 1]
    return list(zip(widths[:-1], widths[1:]))


def linear_names(n_layers: int) -> list[str]:
    """Sequential index of each Linear layer: '1', '3', '5', ..."""
    return [str(1 + 2 * i) for i in range(n_layers)]


def build_model(n_features: int, hidden, activation: str, input_norm: str,
                stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> nn.Sequential:
    """The model on raw inputs. ``stats`` = (mean, std), each [d], is needed for standardize.

    Linear layers get nn.Linear's default initialization from the global RNG.
    """
    if input_norm == "none":
        norm: nn.Module = nn.Identity()
    elif input_norm == "standardize":
        if stats is None:
            mean, std = torch.zeros(n_features), torch.ones(n_features)
        else:
            mean, std = stats
        norm = Standardize(mean, std)
    elif input_norm == "batchnorm":
        norm = nn.BatchNorm1d(n_features)
    else:
        raise ValueError(f"unknown input_norm {input_norm!r}")
    layers: list[nn.Module] = [norm]
    sizes = layer_sizes(n_features, hidden)
    for i, (fan_in, fan_out) in enumerate(sizes):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 1:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def seeded_model(seed: int, n_features: int, hidden, activation: str, input_norm: str,
                 stats=None) -> nn.Sequential:
    """The model with a run's initial weights: nn.Linear's default init drawn from ``seed``.

    The global RNG is forked, so the caller's random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(n_features, hidden, activation, input_norm, stats)


def pointwise_loss(z: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-row loss, same shape as z. BCE-with-logits in its stable form
    ``max(z, 0) - z*y + log1p(exp(-|z|))``, finite for any finite z."""
    if loss == "mse":
        return (z - y) ** 2
    if loss == "bce_with_logits":
        return z.clamp(min=0) - z * y + torch.log1p(torch.exp(-z.abs()))
    raise ValueError(f"unknown loss {loss!r}")
