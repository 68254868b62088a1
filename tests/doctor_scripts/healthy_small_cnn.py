"""A small CNN on 8x8 images (bright top half or bright bottom half), BatchNorm2d, a
DataLoader with shuffle and a validation loader, train()/eval() toggled."""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

g = torch.Generator().manual_seed(0)
y = torch.randint(0, 2, (400,), generator=g)
images = 0.5 * torch.randn(400, 1, 8, 8, generator=g)
images[y == 0, :, :4] += 1.0
images[y == 1, :, 4:] += 1.0
train = DataLoader(TensorDataset(images[:300], y[:300]), batch_size=32, shuffle=True)
val = DataLoader(TensorDataset(images[300:], y[300:]), batch_size=100)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 2))
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
for epoch in range(4):
    model.train()
    for xb, yb in train:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        correct = sum((model(xb).argmax(1) == yb).sum().item() for xb, yb in val)
    print(f"epoch {epoch}: val accuracy {correct / 100:.2f}")
