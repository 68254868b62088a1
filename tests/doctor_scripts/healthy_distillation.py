"""Knowledge distillation: a teacher trained first, then run in eval mode under no_grad on
each of the student's batches; the student learns from its softened outputs and the labels."""
import torch
from torch import nn

from _data import binary

torch.manual_seed(0)
x, y = binary(n=320, features=4)
y = y.squeeze(1).long()
teacher = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 2))
opt_t = torch.optim.Adam(teacher.parameters(), lr=0.01)
for epoch in range(3):
    for i in range(0, len(x), 32):
        opt_t.zero_grad()
        nn.functional.cross_entropy(teacher(x[i:i + 32]), y[i:i + 32]).backward()
        opt_t.step()
teacher.eval()

student = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.Adam(student.parameters(), lr=0.01)
T = 2.0
for epoch in range(5):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 32):
        idx = perm[i:i + 32]
        with torch.no_grad():
            soft = (teacher(x[idx]) / T).softmax(1)
        out = student(x[idx])
        distill = nn.functional.kl_div((out / T).log_softmax(1), soft, reduction="batchmean")
        loss = distill * T * T + nn.functional.cross_entropy(out, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
