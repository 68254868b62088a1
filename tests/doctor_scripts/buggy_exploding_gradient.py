"""A learning rate too large for SGD with momentum: the gradients grow without bound."""
import torch
from torch import nn

from _data import regression

torch.manual_seed(0)
x, y = regression()
model = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)   # the bug: lr
for epoch in range(6):
    for i in range(0, len(x), 30):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x[i:i + 30]), y[i:i + 30])
        loss.backward()
        opt.step()  # BUG
