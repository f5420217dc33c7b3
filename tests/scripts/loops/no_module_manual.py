"""Logistic regression on plain tensors (no ``nn.Module``), updated by hand and ``w.grad.zero_()``."""
import argparse

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
args = parser.parse_args()

torch.manual_seed(0)
x = torch.randn(512, 20)
y = (x[:, 0] + x[:, 1] > 0).float()
w = torch.zeros(20, requires_grad=True)
b = torch.zeros(1, requires_grad=True)
for step in range(args.steps):
    i = (step * 64) % 512
    loss = torch.nn.functional.binary_cross_entropy_with_logits(x[i:i + 64] @ w + b, y[i:i + 64])
    loss.backward()
    with torch.no_grad():
        w -= 0.5 * w.grad
        b -= 0.5 * b.grad
    w.grad.zero_()
    b.grad.zero_()
print(f"trained {args.steps} steps, loss {loss.item():.4f}")
