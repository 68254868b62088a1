"""A tiny GAN on a 2-D Gaussian: the discriminator and the generator alternate, each with
its own optimizer; the fake batch is detached for the discriminator's step."""
import torch
from torch import nn

torch.manual_seed(0)
real_data = torch.randn(512, 2) * 0.5 + torch.tensor([2.0, -1.0])
G = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
D = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
opt_g = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.5, 0.999))
bce = nn.BCEWithLogitsLoss()
for epoch in range(4):
    for i in range(0, 512, 32):
        real = real_data[i:i + 32]
        fake = G(torch.randn(32, 4))
        opt_d.zero_grad()
        d_loss = bce(D(real), torch.ones(32, 1)) + bce(D(fake.detach()), torch.zeros(32, 1))
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        g_loss = bce(D(fake), torch.ones(32, 1))
        g_loss.backward()
        opt_g.step()
with torch.no_grad():
    print(f"generated mean {G(torch.randn(256, 4)).mean(0).tolist()}")
