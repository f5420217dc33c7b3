"""``optim.LBFGS`` with a closure: forward and backward run several times inside one ``step()``."""
import argparse

import torch
from torch import nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))
optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5, history_size=10)
x = torch.randn(256, 8)
y = x.sum(dim=1, keepdim=True).sin()
calls = 0


def closure():
    global calls
    calls += 1
    optimizer.zero_grad()
    loss = F.mse_loss(model(x), y)
    loss.backward()
    return loss


for step in range(args.steps):
    loss = optimizer.step(closure)
print(f"trained {args.steps} steps ({calls} closure calls), loss {loss.item():.4f}")
