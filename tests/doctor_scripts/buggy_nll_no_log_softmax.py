"""nn.NLLLoss on raw scores: no LogSoftmax in front of it."""
import torch
from torch import nn

from _data import blobs

torch.manual_seed(0)
x, y = blobs()
model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))   # the bug
loss_fn = nn.NLLLoss()
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(4):
    for i in range(0, len(x), 32):
        opt.zero_grad()
        loss = loss_fn(model(x[i:i + 32]), y[i:i + 32])  # BUG
        loss.backward()
        opt.step()
