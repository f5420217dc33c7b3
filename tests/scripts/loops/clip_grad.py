"""AdamW with gradient clipping between backward and the optimizer step; dropout in the model."""
import argparse

import torch
from torch import nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
x, y = torch.randn(512, 32), torch.randint(0, 10, (512,))
for step in range(args.steps):
    i = (step * 32) % 512
    loss = F.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()
print(f"trained {args.steps} steps, loss {loss.item():.3f}")
