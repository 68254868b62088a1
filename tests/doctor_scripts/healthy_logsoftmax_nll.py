"""nn.LogSoftmax then nn.NLLLoss, the classic pairing."""
import torch
from torch import nn

from _data import blobs

torch.manual_seed(0)
x, y = blobs(n=300, classes=4)
model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 4), nn.LogSoftmax(dim=1))
loss_fn = nn.NLLLoss()
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for epoch in range(6):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 32):
        idx = perm[i:i + 32]
        opt.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
with torch.no_grad():
    print(f"accuracy {(model(x).argmax(1) == y).float().mean():.2f}")
