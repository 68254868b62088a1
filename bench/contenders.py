"""What tinysweep is measured against: the training loop a user would write by hand.

``plain_loop`` trains one run the way the line study was first done: one nn.Module and one
torch.optim.Adam per run, a Python loop over epochs and batches (no DataLoader, which
would only make it slower), the loss evaluated on the training set after every epoch.
"""

from __future__ import annotations

import torch
from torch import nn


def plain_loop(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool,
               epochs: int = 100, lr: float = 1e-2, seed: int = 0) -> float:
    """Trains Linear(d, 1) with MSE and Adam; returns the final training loss.

    x: [n, d], y: [n] float32.
    """
    torch.manual_seed(seed)
    model = nn.Linear(x.shape[1], 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(x)
    for _ in range(epochs):
        order = torch.randperm(n) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            loss = ((model(x[rows]).squeeze(-1) - y[rows]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            final = ((model(x).squeeze(-1) - y) ** 2).mean().item()
    return final
