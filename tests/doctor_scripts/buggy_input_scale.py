"""Raw features in the hundreds (prices, heart rates) into a tanh layer."""
import torch
from torch import nn

from _data import binary

torch.manual_seed(0)
x, y = binary()
x = 300 + 80 * x                                    # the bug: never standardized
model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(4):
    for i in range(0, len(x), 32):
        opt.zero_grad()
        logits = model(x[i:i + 32])  # BUG
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y[i:i + 32])
        loss.backward()
        opt.step()
