"""Early stopping on the validation loss, keeping the best weights."""
import copy

import torch
from torch import nn

from _data import blobs, split

torch.manual_seed(0)
x, y = blobs(n=400, features=3)
xt, yt, xv, yv = split(x, y)
model = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 3))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
best, best_state, patience = float("inf"), None, 3
for epoch in range(30):
    model.train()
    perm = torch.randperm(len(xt))
    for i in range(0, len(xt), 32):
        idx = perm[i:i + 32]
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        val = nn.functional.cross_entropy(model(xv), yv).item()
    if val < best - 1e-4:
        best, best_state, bad = val, copy.deepcopy(model.state_dict()), 0
    else:
        bad += 1
        if bad >= patience:
            break
model.load_state_dict(best_state)
print(f"stopped at epoch {epoch}, best val {best:.3f}")
