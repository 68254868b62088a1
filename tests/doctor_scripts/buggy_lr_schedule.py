"""StepLR meant per epoch, stepped per batch: the lr is ~0 after a few epochs."""
import torch
from torch import nn

from _data import blobs

torch.manual_seed(0)
x, y = blobs()
model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
for epoch in range(8):
    for i in range(0, len(x), 32):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
        loss.backward()
        opt.step()
        sched.step()  # BUG
