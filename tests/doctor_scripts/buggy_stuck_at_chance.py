"""The labels shuffled on their own (a permutation applied to y, not x): nothing to learn."""
import torch
from torch import nn

from _data import blobs

torch.manual_seed(0)
x, y = blobs(n=400)
perm = torch.randperm(len(y))
x, y = x, y[perm]                                   # the bug: x[perm], y[perm]
model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
for epoch in range(5):
    for i in range(0, len(x), 32):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32])  # BUG
        loss.backward()
        opt.step()
