"""The model every backend trains, in its plain PyTorch form, and the losses.

The exported (and reference) model is an ``nn.Sequential``::

    0: input normalization  (Identity | Standardize | BatchNorm1d(d))
    1: Linear(d, h1), 2: activation, 3: Linear(h1, h2), ..., last: Linear(h_last, K)

with K outputs: 1, the k targets of a multi-output regression, or the K classes of
cross_entropy (logits).

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


def layer_sizes(n_features: int, hidden, n_outputs: int = 1) -> list[tuple[int, int]]:
    """(in, out) of each Linear layer, first to last; the last has ``n_outputs``."""
    widths = [n_features, *hidden, n_outputs]
    return list(zip(widths[:-1], widths[1:]))


def linear_names(n_layers: int) -> list[str]:
    """Sequential index of each Linear layer: '1', '3', '5', ..."""
    return [str(1 + 2 * i) for i in range(n_layers)]


def build_model(n_features: int, hidden, activation: str, input_norm: str,
                stats: tuple[torch.Tensor, torch.Tensor] | None = None,
                n_outputs: int = 1) -> nn.Sequential:
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
    sizes = layer_sizes(n_features, hidden, n_outputs)
    for i, (fan_in, fan_out) in enumerate(sizes):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 1:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def seeded_model(seed: int, n_features: int, hidden, activation: str, input_norm: str,
                 stats=None, n_outputs: int = 1) -> nn.Sequential:
    """The model with a run's initial weights: nn.Linear's default init drawn from ``seed``.

    The global RNG is forked, so the caller's random state is left as it was. Only the CPU
    generator is seeded (the model is built on the CPU): torch.manual_seed would also
    seed every accelerator's, which fork_rng(devices=[]) does not restore, and its lazy
    CUDA, XPU and MTIA calls formatted a stack trace each (1.7 ms a seed: 10 ms of
    digits' 0.33 s sweep).
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return build_model(n_features, hidden, activation, input_norm, stats, n_outputs)


def pointwise_loss(z: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """The loss of each output, whose mean is the loss: mse and bce_with_logits per element
    (z and y of one shape, or broadcast), BCE-with-logits in its stable form
    ``max(z, 0) - z*y + log1p(exp(-|z|))``, finite for any finite z; cross_entropy per
    row, z [..., K] logits against y [...] the class (a float), as F.cross_entropy."""
    if loss == "mse":
        return (z - y) ** 2
    if loss == "bce_with_logits":
        return z.clamp(min=0) - z * y + torch.log1p(torch.exp(-z.abs()))
    if loss == "cross_entropy":
        classes = y.long().expand(z.shape[:-1])          # y may be shared by K models
        picked = z.gather(-1, classes.unsqueeze(-1)).squeeze(-1)
        return torch.logsumexp(z, dim=-1) - picked
    raise ValueError(f"unknown loss {loss!r}")


def predictions(z: torch.Tensor, n_outputs: int) -> torch.Tensor:
    """The model's output [N, K] as the losses take it: [N] for one output."""
    return z.squeeze(-1) if n_outputs == 1 else z


def accuracy(z: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Right or wrong per row (float): bce_with_logits predicts 1 where z > 0, cross_entropy
    the argmax; last dimension of the result: reduced."""
    if loss == "cross_entropy":
        return (z.argmax(dim=-1).to(y.dtype) == y).to(y.dtype)
    return ((z > 0).to(y.dtype) == y).to(y.dtype)
