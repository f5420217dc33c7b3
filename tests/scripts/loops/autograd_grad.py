"""Gradients taken with ``torch.autograd.grad`` (never stored in ``.grad``) and applied by hand."""
import argparse

import torch
from torch import nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 1))
params = list(model.parameters())
x = torch.randn(256, 16)
y = x[:, :4].sum(dim=1, keepdim=True)
for step in range(args.steps):
    i = (step * 32) % 256
    loss = F.mse_loss(model(x[i:i + 32]), y[i:i + 32])
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= 0.05 * g
print(f"trained {args.steps} steps, loss {loss.item():.4f}")
