"""Training with an evaluation loop under ``torch.no_grad()`` every few training steps."""
import argparse

import torch
from torch import nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--eval-every", type=int, default=5)
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
x, y = torch.randn(512, 32), torch.randint(0, 10, (512,))
x_val, y_val = torch.randn(128, 32), torch.randint(0, 10, (128,))
for step in range(args.steps):
    model.train()
    i = (step * 32) % 512
    loss = F.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if (step + 1) % args.eval_every == 0:
        model.eval()
        with torch.no_grad():
            correct = sum((model(x_val[j:j + 32]).argmax(1) == y_val[j:j + 32]).sum().item()
                          for j in range(0, 128, 32))
        print(f"step {step + 1}: validation accuracy {correct / 128:.2f}")
print(f"trained {args.steps} steps, loss {loss.item():.3f}")
