"""Rows sorted by class (as exported from a database) and a DataLoader without shuffle."""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _data import blobs

torch.manual_seed(0)
x, y = blobs(n=400)
order = torch.argsort(y, stable=True)
data = TensorDataset(x[order], y[order])
loader = DataLoader(data, batch_size=32)            # the bug: shuffle=False
model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(4):
    for xb, yb in loader:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)  # BUG
        loss.backward()
        opt.step()
