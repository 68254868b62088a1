"""Targets [B, 1, 1] against predictions [B, 1]: the MSE averages every pair."""
import torch
from torch import nn

from _data import regression

torch.manual_seed(0)
x, y = regression()
y = y.unsqueeze(1)                                  # the bug: [n, 1, 1]
model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(4):
    for i in range(0, len(x), 32):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x[i:i + 32]), y[i:i + 32])  # BUG
        loss.backward()
        opt.step()
