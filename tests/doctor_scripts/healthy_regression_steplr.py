"""Regression with SGD + momentum, standardized inputs, a StepLR stepped per epoch, a
validation split evaluated each epoch."""
import torch
from torch import nn

from _data import regression, split

torch.manual_seed(0)
x, y = regression(n=400)
xt, yt, xv, yv = split(x, y)
mean, std = xt.mean(0), xt.std(0)
model = nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
for epoch in range(8):
    model.train()
    perm = torch.randperm(len(xt))
    for i in range(0, len(xt), 32):
        idx = perm[i:i + 32]
        opt.zero_grad()
        loss = nn.functional.mse_loss(model((xt[idx] - mean) / std), yt[idx])
        loss.backward()
        opt.step()
    sched.step()
    model.eval()
    with torch.no_grad():
        val = nn.functional.mse_loss(model((xv - mean) / std), yv)
print(f"val mse {val:.4f}")
