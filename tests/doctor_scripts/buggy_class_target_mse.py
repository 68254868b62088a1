"""Four classes regressed as the numbers 0..3 with MSE against one output."""
import torch
from torch import nn

from _data import blobs

torch.manual_seed(0)
x, y = blobs(classes=4)
model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(4):
    for i in range(0, len(x), 32):
        opt.zero_grad()
        target = y[i:i + 32].float().unsqueeze(1)
        loss = nn.functional.mse_loss(model(x[i:i + 32]), target)  # BUG
        loss.backward()
        opt.step()
