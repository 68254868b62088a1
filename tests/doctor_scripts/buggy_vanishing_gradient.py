"""Eight sigmoid layers with the default init: the first layers get almost no gradient."""
import torch
from torch import nn

from _data import binary

torch.manual_seed(0)
x, y = binary()
layers, width = [], 2
for _ in range(8):                                  # the bug: a deep sigmoid stack
    layers += [nn.Linear(width, 16), nn.Sigmoid()]
    width = 16
model = nn.Sequential(*layers, nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(3):
    for i in range(0, len(x), 32):
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x[i:i + 32]), y[i:i + 32])
        loss.backward()
        opt.step()  # BUG
