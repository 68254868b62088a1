"""A pretrained backbone frozen (requires_grad False, BatchNorm kept in eval mode), a new
head fine-tuned with its own optimizer."""
import torch
from torch import nn

from _data import blobs, split

torch.manual_seed(0)
x, y = blobs(n=400, classes=3, features=4)
xt, yt, xv, yv = split(x, y)
backbone = nn.Sequential(nn.Linear(4, 32), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Linear(32, 32), nn.ReLU())
# "pretraining": a few steps of a reconstruction task
pre_opt = torch.optim.Adam(backbone.parameters(), lr=0.01)
decoder = nn.Linear(32, 4)
pre_opt.add_param_group({"params": decoder.parameters()})
for i in range(0, len(xt), 32):
    pre_opt.zero_grad()
    nn.functional.mse_loss(decoder(backbone(xt[i:i + 32])), xt[i:i + 32]).backward()
    pre_opt.step()

for p in backbone.parameters():
    p.requires_grad_(False)
head = nn.Linear(32, 3)
model = nn.Sequential(backbone, head)
opt = torch.optim.Adam(head.parameters(), lr=0.01)
for epoch in range(6):
    model.train()
    backbone.eval()                                 # frozen BatchNorm statistics
    for i in range(0, len(xt), 32):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xt[i:i + 32]), yt[i:i + 32])
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(xv).argmax(1) == yv).float().mean()
print(f"val accuracy {acc:.2f}")
