"""Validation under no_grad, but without model.eval(): dropout on, BatchNorm updating."""
import torch
from torch import nn

from _data import blobs, split

torch.manual_seed(0)
x, y = blobs(n=400)
xt, yt, xv, yv = split(x, y)
model = nn.Sequential(nn.Linear(2, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3),
                      nn.Linear(32, 3))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(4):
    model.train()
    for i in range(0, len(xt), 32):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xt[i:i + 32]), yt[i:i + 32])
        loss.backward()
        opt.step()
    with torch.no_grad():                           # the bug: no model.eval()
        val = nn.functional.cross_entropy(model(xv), yv)  # BUG
    print(f"epoch {epoch}: val {val:.3f}")
