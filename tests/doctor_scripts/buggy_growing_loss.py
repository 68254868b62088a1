"""A learning rate just past SGD's stable range: the loss grows step after step."""
import torch
from torch import nn

from _data import regression

torch.manual_seed(0)
x, y = regression()
model = nn.Linear(3, 1)
opt = torch.optim.SGD(model.parameters(), lr=1.1)   # the bug: stable below ~1
for epoch in range(6):
    for i in range(0, len(x), 30):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x[i:i + 30]), y[i:i + 30])
        loss.backward()  # BUG
        opt.step()
print(f"last loss {loss.item():.3g}")
