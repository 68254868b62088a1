"""Dropout and BatchNorm, train() for the epoch and eval() under no_grad for validation,
DataLoaders with shuffle for training."""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _data import blobs, split

torch.manual_seed(0)
x, y = blobs(n=400)
xt, yt, xv, yv = split(x, y)
train = DataLoader(TensorDataset(xt, yt), batch_size=32, shuffle=True)
val = DataLoader(TensorDataset(xv, yv), batch_size=50)
model = nn.Sequential(nn.Linear(2, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2),
                      nn.Linear(32, 3))
opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=1e-2)
for epoch in range(6):
    model.train()
    for xb, yb in train:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        val_loss = sum(nn.functional.cross_entropy(model(xb), yb, reduction="sum")
                       for xb, yb in val) / len(xv)
    print(f"epoch {epoch}: val loss {val_loss:.3f}")
