"""lr=1e-7 (meant 1e-3): the weights hardly move."""
import torch
from torch import nn

from _data import blobs

torch.manual_seed(0)
x, y = blobs()
model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
opt = torch.optim.Adam(model.parameters(), lr=1e-7)   # the bug
for epoch in range(4):
    for i in range(0, len(x), 32):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
        loss.backward()
        opt.step()  # BUG
