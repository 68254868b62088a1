"""A hand-rolled init far too large (std 100): the tanh units sit at +-1."""
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3, 16)
        self.out = nn.Linear(16, 1)
        nn.init.normal_(self.hidden.weight, std=100.0)  # the bug

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x)))  # BUG


from _data import regression

torch.manual_seed(0)
x, y = regression()
model = Net()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(4):
    for i in range(0, len(x), 32):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x[i:i + 32]), y[i:i + 32])
        loss.backward()
        opt.step()
