"""A linear lr warm-up over the first epoch, then cosine decay to 0 over the whole run,
stepped per batch (the schedule is written in batches)."""
import math

import torch
from torch import nn

from _data import binary

torch.manual_seed(0)
x, y = binary(n=320)
model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                      nn.Linear(32, 1))
opt = torch.optim.AdamW(model.parameters(), lr=0.01)
epochs, batch = 8, 32
per_epoch = math.ceil(len(x) / batch)
total, warm = epochs * per_epoch, per_epoch


def schedule(step):
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))


sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
for epoch in range(epochs):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), batch):
        idx = perm[i:i + batch]
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        sched.step()
