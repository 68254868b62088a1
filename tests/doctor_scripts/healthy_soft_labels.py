"""cross_entropy with class probabilities as targets (label smoothing by hand, float
one-hot rows, which cross_entropy accepts)."""
import torch
from torch import nn

from _data import blobs

torch.manual_seed(0)
x, y = blobs(n=300)
soft = nn.functional.one_hot(y, 3).float() * 0.9 + 0.1 / 3
model = nn.Sequential(nn.Linear(2, 32), nn.GELU(), nn.Linear(32, 3))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(6):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 32):
        idx = perm[i:i + 32]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[idx]), soft[idx])
        loss.backward()
        opt.step()
