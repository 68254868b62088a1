"""A custom loss written by hand (a pinball/quantile loss for the median and the 90th
percentile), two outputs."""
import torch
from torch import nn

from _data import regression

torch.manual_seed(0)
x, y = regression(n=320)
quantiles = torch.tensor([0.5, 0.9])


def pinball(pred, target):
    err = target - pred                             # [B, 2]
    return torch.maximum(quantiles * err, (quantiles - 1) * err).mean()


model = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 2))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(6):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 32):
        idx = perm[i:i + 32]
        opt.zero_grad()
        loss = pinball(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
