"""Per-layer learning rates with the body's left at 0 (a config that read None as 0)."""
import torch
from torch import nn

from _data import regression

torch.manual_seed(0)
x, y = regression()
model = nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 1))
body_lr = 0.0                                      # the bug
opt = torch.optim.Adam([{"params": model[0].parameters(), "lr": body_lr},
                        {"params": model[2].parameters()}], lr=0.01)
for epoch in range(4):
    for i in range(0, len(x), 32):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x[i:i + 32]), y[i:i + 32])
        loss.backward()
        opt.step()  # BUG
