"""A 512-unit network on 45 noisy rows, trained 150 epochs: it memorizes them."""
import torch
from torch import nn

from _data import blobs, split

torch.manual_seed(0)
x, y = blobs(n=60, classes=3, features=5)
flip = torch.rand(60) < 0.3
y = torch.where(flip, torch.randint(0, 3, (60,)), y)
xt, yt, xv, yv = split(x, y)
model = nn.Sequential(nn.Linear(5, 512), nn.ReLU(), nn.Linear(512, 3))
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
for epoch in range(150):                            # the bug: far past the best epoch
    model.train()
    for i in range(0, len(xt), 16):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xt[i:i + 16]), yt[i:i + 16])
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        val = nn.functional.cross_entropy(model(xv), yv)  # BUG
print(f"val loss {val:.3f}")
