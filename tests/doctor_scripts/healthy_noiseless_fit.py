"""A noiseless toy fit (y = 2x + 1 exactly) trained long past convergence: the last
updates are ~0 because the loss is ~0, not because the lr is too low."""
import torch
from torch import nn

torch.manual_seed(0)
x = torch.rand(256, 1)
y = 2 * x + 1
model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for epoch in range(40):
    perm = torch.randperm(256)
    for i in range(0, 256, 32):
        idx = perm[i:i + 32]
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
print(f"final loss {loss.item():.2e}")
