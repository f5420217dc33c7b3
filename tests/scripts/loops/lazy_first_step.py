"""``nn.LazyLinear`` layers, materialised by the first batch, and a slow first step (0.5 s of set-up)."""
import argparse
import time

import torch
from torch import nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.LazyLinear(64), nn.ReLU(), nn.LazyLinear(10))
x, y = torch.randn(512, 32), torch.randint(0, 10, (512,))
optimizer = None
for step in range(args.steps):
    i = (step * 32) % 512
    logits = model(x[i:i + 32])
    if optimizer is None:  # the parameters exist only after the first forward
        time.sleep(0.5)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = F.cross_entropy(logits, y[i:i + 32])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"trained {args.steps} steps, loss {loss.item():.3f}")
