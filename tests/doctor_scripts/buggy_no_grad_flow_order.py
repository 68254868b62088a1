"""zero_grad() between backward() and step(): every step sees no gradient."""
import torch
from torch import nn

from _data import blobs

torch.manual_seed(0)
x, y = blobs()
model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for epoch in range(3):
    for i in range(0, len(x), 32):
        loss = nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
        loss.backward()
        opt.zero_grad()                             # the bug: before backward()
        opt.step()  # BUG
