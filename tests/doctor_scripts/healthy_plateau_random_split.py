"""random_split into training and validation Datasets, ReduceLROnPlateau on the validation
loss, and the training accuracy reported beside the validation loss each epoch."""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split

from _data import blobs

torch.manual_seed(0)
x, y = blobs(n=400, features=3)
train_set, val_set = random_split(TensorDataset(x, y), [300, 100],
                                  generator=torch.Generator().manual_seed(0))
train = DataLoader(train_set, batch_size=32, shuffle=True)
model = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 3))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1, factor=0.5)
xv, yv = map(torch.stack, zip(*val_set))
xt, yt = map(torch.stack, zip(*train_set))
for epoch in range(8):
    model.train()
    for xb, yb in train:
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        val = nn.functional.cross_entropy(model(xv), yv)
        train_acc = (model(xt).argmax(1) == yt).float().mean()
    sched.step(val)
    print(f"epoch {epoch}: val {val:.3f}, train accuracy {train_acc:.2f}")
