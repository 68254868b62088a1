"""OneCycleLR, which is made to step per batch, over the run's total steps."""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _data import blobs

torch.manual_seed(0)
x, y = blobs(n=320)
loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
epochs = 6
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, epochs=epochs,
                                            steps_per_epoch=len(loader))
for epoch in range(epochs):
    for xb, yb in loader:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        sched.step()
