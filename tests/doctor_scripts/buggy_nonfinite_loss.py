"""SGD at lr 2 on a regression: the loss reaches inf, then NaN."""
import torch
from torch import nn

from _data import regression

torch.manual_seed(0)
x, y = regression()
model = nn.Linear(3, 1)
opt = torch.optim.SGD(model.parameters(), lr=2.0)  # the bug
for epoch in range(15):
    for i in range(0, len(x), 30):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x[i:i + 30]), y[i:i + 30])
        loss.backward()  # BUG
        opt.step()
