"""A Dataset class, a DataLoader with shuffle, binary labels and BCE-with-logits."""
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from _data import binary


class Points(Dataset):
    def __init__(self):
        self.x, self.y = binary(n=320)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


torch.manual_seed(0)
loader = DataLoader(Points(), batch_size=32, shuffle=True)
model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
loss_fn = nn.BCEWithLogitsLoss()
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(5):
    for xb, yb in loader:
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
