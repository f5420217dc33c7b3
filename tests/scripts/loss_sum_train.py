"""Training that adds each step's loss tensor to a running total (``total += loss``): the total keeps every
step's autograd graph alive. ``--item`` is its fixed twin (``total += loss.item()``). ``--adam --width 512``:
Adam on a model whose parameters (and so Adam's state) outweigh its activations."""
import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--item", action="store_true", help="add loss.item(), a float, as the fix does")
parser.add_argument("--adam", action="store_true")
parser.add_argument("--width", type=int, default=32)
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, args.width), nn.ReLU(), nn.Linear(args.width, args.width), nn.ReLU(),
                      nn.Linear(args.width, 1))
optimizer = torch.optim.Adam(model.parameters()) if args.adam else torch.optim.SGD(model.parameters(), lr=0.01)
total = 0.0
for step in range(args.steps):
    x = torch.randn(8, 16)
    loss = (model(x) - x[:, :1]).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    total += loss.item() if args.item else loss
print(f"mean loss {float(total) / args.steps:.4f}")
