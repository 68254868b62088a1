"""The validation loader built on the training set (a copy-paste slip)."""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _data import blobs, split

torch.manual_seed(0)
x, y = blobs(n=400)
xt, yt, xv, yv = split(x, y)
train = DataLoader(TensorDataset(xt, yt), batch_size=32, shuffle=True)
val = DataLoader(TensorDataset(xt, yt), batch_size=100)   # the bug: xv, yv
model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(4):
    model.train()
    for xb, yb in train:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        losses = [nn.functional.cross_entropy(model(xb), yb) for xb, yb in val]  # BUG
    print(f"epoch {epoch}: val {sum(losses) / len(losses):.3f}")
