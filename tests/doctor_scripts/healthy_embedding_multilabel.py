"""Token ids through an nn.Embedding (integer inputs), a bag-of-words mean, and three
independent labels per row (multi-label BCE-with-logits, targets [B, 3])."""
import torch
from torch import nn

torch.manual_seed(0)
tokens = torch.randint(0, 50, (400, 6))
labels = torch.stack([(tokens < 10).any(1), (tokens > 40).any(1),
                      (tokens % 7 == 0).sum(1) >= 2], 1).float()


class Bag(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.out = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))

    def forward(self, ids):
        return self.out(self.emb(ids).mean(1))


model = Bag()
opt = torch.optim.Adam(model.parameters(), lr=0.01)
loss_fn = nn.BCEWithLogitsLoss()
for epoch in range(8):
    perm = torch.randperm(400)
    for i in range(0, 400, 32):
        idx = perm[i:i + 32]
        opt.zero_grad()
        loss = loss_fn(model(tokens[idx]), labels[idx])
        loss.backward()
        opt.step()
