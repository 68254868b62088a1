"""A loss rebuilt from .item(): backward() reaches no parameter."""
import torch
from torch import nn

from _data import regression

torch.manual_seed(0)
x, y = regression()
model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(3):
    for i in range(0, len(x), 32):
        opt.zero_grad()
        mse = nn.functional.mse_loss(model(x[i:i + 32]), y[i:i + 32])
        loss = torch.tensor(mse.item(), requires_grad=True)     # the bug
        loss.backward()  # BUG
        opt.step()
