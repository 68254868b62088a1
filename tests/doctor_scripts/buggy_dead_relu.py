"""A large negative bias (a too-large step leaves the same): every ReLU outputs 0."""
import torch
from torch import nn

from _data import regression

torch.manual_seed(0)
x, y = regression()
model = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 1))
nn.init.constant_(model[0].bias, -10.0)             # the bug
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for epoch in range(4):
    for i in range(0, len(x), 32):
        opt.zero_grad()
        pred = model(x[i:i + 32])  # BUG
        loss = nn.functional.mse_loss(pred, y[i:i + 32])
        loss.backward()
        opt.step()
