"""Every weight set to the same constant: the hidden units stay copies of each other."""
import torch
from torch import nn

from _data import regression

torch.manual_seed(0)
x, y = regression()
model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                      nn.Linear(16, 1))
for m in model:
    if isinstance(m, nn.Linear):
        nn.init.constant_(m.weight, 0.1)            # the bug
        nn.init.zeros_(m.bias)
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(4):
    for i in range(0, len(x), 32):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x[i:i + 32]), y[i:i + 32])  # BUG
        loss.backward()
        opt.step()
