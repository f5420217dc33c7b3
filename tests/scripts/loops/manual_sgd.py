"""A training loop with no torch.optim: the parameters are updated by hand, ``p.data.add_(-lr * p.grad)``."""
import argparse

import torch
from torch import nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
x, y = torch.randn(512, 32), torch.randint(0, 10, (512,))
lr = 0.05
for step in range(args.steps):
    i = (step * 32) % 512
    loss = F.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
    model.zero_grad()
    loss.backward()
    for p in model.parameters():
        p.data.add_(-lr * p.grad)
print(f"trained {args.steps} steps, loss {loss.item():.3f}")
