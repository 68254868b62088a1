"""An autoencoder whose encoder and decoder have optimizers (and learning rates) of their
own, both stepped each batch."""
import torch
from torch import nn

from _data import regression

torch.manual_seed(0)
x, _ = regression(n=320, features=6)
encoder = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
decoder = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 6))
opt_enc = torch.optim.Adam(encoder.parameters(), lr=3e-3)
opt_dec = torch.optim.Adam(decoder.parameters(), lr=1e-2)
for epoch in range(6):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 32):
        xb = x[perm[i:i + 32]]
        opt_enc.zero_grad()
        opt_dec.zero_grad()
        loss = nn.functional.mse_loss(decoder(encoder(xb)), xb)
        loss.backward()
        opt_enc.step()
        opt_dec.step()
