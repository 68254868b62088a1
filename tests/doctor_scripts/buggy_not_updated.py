"""The optimizer is built on the head only; the body has requires_grad=True."""
import torch
from torch import nn

from _data import blobs

torch.manual_seed(0)
x, y = blobs()
body = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
head = nn.Linear(32, 3)
model = nn.Sequential(body, head)
opt = torch.optim.Adam(head.parameters(), lr=0.01)  # BUG (should be model.parameters())
for epoch in range(4):
    for i in range(0, len(x), 32):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
        loss.backward()
        opt.step()
