"""A line fitted over x in order, no shuffle (sorted x is not sorted classes), evaluated
on the training rows once at the end."""
import torch
from torch import nn

torch.manual_seed(0)
x = torch.linspace(-1, 1, 200).unsqueeze(1)
y = -4 * x + 1 + 0.05 * torch.randn(200, 1)
model = nn.Linear(1, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(20):
    for i in range(0, 200, 20):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x[i:i + 20]), y[i:i + 20])
        loss.backward()
        opt.step()
with torch.no_grad():
    print(f"train mse {nn.functional.mse_loss(model(x), y):.4f}")
