"""A plain model; the loss (``F.cross_entropy``) is computed in the loop."""
import argparse

import torch
from torch import nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                      nn.Linear(128, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
images, labels = torch.randn(128, 3, 16, 16), torch.randint(0, 10, (128,))
for step in range(args.steps):
    i = (step * 16) % 128
    loss = F.cross_entropy(model(images[i:i + 16]), labels[i:i + 16])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"trained {args.steps} steps, loss {loss.item():.3f}")
