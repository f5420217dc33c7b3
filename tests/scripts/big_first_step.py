"""Training on a 200 MB dataset built in memory before the first step: the script's own memory grows
by far more than a recording's share of the memory limit before any step ends."""
import argparse

import torch
from torch import nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=20)
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
model(torch.randn(2, 32))  # a first look at the model starts the recording limits' clock
data = torch.randn(50_000, 1024)  # 200 MB
labels = torch.randint(0, 10, (50_000,))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
for step in range(args.steps):
    i = (step * 32) % 50_000
    loss = F.cross_entropy(model(data[i:i + 32, :32]), labels[i:i + 32])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"trained {args.steps} steps, loss {loss.item():.3f}")
