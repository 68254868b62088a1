"""Gradient accumulation on purpose: four micro-batches per optimizer step."""
import torch
from torch import nn

from _data import regression

torch.manual_seed(0)
x, y = regression(n=320)
model = nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 1))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
accumulate = 4
for epoch in range(6):
    perm = torch.randperm(len(x))
    for k, i in enumerate(range(0, len(x), 16)):
        idx = perm[i:i + 16]
        loss = nn.functional.mse_loss(model(x[idx]), y[idx]) / accumulate
        loss.backward()
        if (k + 1) % accumulate == 0:
            opt.step()
            opt.zero_grad()
print(f"loss {nn.functional.mse_loss(model(x), y).item():.4f}")
