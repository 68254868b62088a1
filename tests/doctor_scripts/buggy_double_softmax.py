"""A softmax before cross_entropy."""
import torch
from torch import nn

from _data import blobs

torch.manual_seed(0)
x, y = blobs()
model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3), nn.Softmax(dim=1))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(4):
    for i in range(0, len(x), 32):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32])  # BUG
        loss.backward()
        opt.step()
