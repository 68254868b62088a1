"""A model ending in a sigmoid fed to BCE-with-logits."""
import torch
from torch import nn

from _data import binary

torch.manual_seed(0)
x, y = binary()
model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())
loss_fn = nn.BCEWithLogitsLoss()
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(4):
    for i in range(0, len(x), 32):
        opt.zero_grad()
        loss = loss_fn(model(x[i:i + 32]), y[i:i + 32])  # BUG
        loss.backward()
        opt.step()
