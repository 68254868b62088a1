"""The line study's bug, in a plain PyTorch script: the Dataset returns each target as
[1, 1], so a batch's targets are [B, 1, 1] against predictions [B, 1], and F.mse_loss
averages all B x B pairs. The fit stalls far from slope -4.

    tinysweep doctor examples/line_bug.py
"""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


class Line(Dataset):
    def __init__(self, n=1000, slope=-4.0, noise=0.05):
        g = torch.Generator().manual_seed(0)
        self.x = torch.linspace(0, 1, n)
        self.y = slope * self.x + noise * torch.randn(n, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i].view(1), self.y[i].view(1, 1)     # the bug: [1, 1], not [1]


if __name__ == "__main__":
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    data = DataLoader(Line(), batch_size=20, shuffle=True)
    for epoch in range(20):
        for x, y in data:
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
    print(f"slope {model.weight.item():.2f}, intercept {model.bias.item():.2f} "
          f"(the data: -4, 0)")
