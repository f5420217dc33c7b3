"""A siamese network: the same encoder is called twice per step; a contrastive loss on the pair."""
import argparse

import torch
from torch import nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
args = parser.parse_args()

torch.manual_seed(0)
encoder = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
optimizer = torch.optim.SGD(encoder.parameters(), lr=0.05)
left, right = torch.randn(512, 32), torch.randn(512, 32)
same = (torch.rand(512) < 0.5).float()
margin = 1.0
for step in range(args.steps):
    i = (step * 32) % 512
    a, b = encoder(left[i:i + 32]), encoder(right[i:i + 32])
    distance = F.pairwise_distance(a, b)
    target = same[i:i + 32]
    loss = (target * distance.pow(2) + (1 - target) * F.relu(margin - distance).pow(2)).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"trained {args.steps} steps, loss {loss.item():.3f}")
