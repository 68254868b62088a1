"""nn.Sigmoid at the end with nn.BCELoss (probabilities, not logits): a correct pairing,
imbalanced labels (20% positive)."""
import torch
from torch import nn

g = torch.Generator().manual_seed(0)
x = torch.randn(400, 3, generator=g)
y = ((x[:, 0] + 0.5 * x[:, 1]) > 0.85).float().unsqueeze(1)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())
loss_fn = nn.BCELoss()
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(6):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 32):
        idx = perm[i:i + 32]
        opt.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
print(f"positives {y.mean():.2f}")
