"""bf16 autocast on the CPU with a GradScaler and gradient accumulation (4 micro-batches per optimizer step).

The model computes its own loss and returns ``(logits, loss)``; the script scales ``loss / accum``.
"""
import argparse

import torch
from torch import nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40, help="optimizer steps")
parser.add_argument("--accum", type=int, default=4)
parser.add_argument("--inf-every", type=int, default=0,
                    help="every K-th step gets an infinite loss, so that the scaler skips its optimizer step")
args = parser.parse_args()


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 10))

    def forward(self, x, y):
        logits = self.body(x)
        return logits, F.cross_entropy(logits.float(), y)


torch.manual_seed(0)
model = Classifier()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
scaler = torch.amp.GradScaler("cpu")
skipped = 0
x, y = torch.randn(1024, 32), torch.randint(0, 10, (1024,))
for step in range(args.steps):
    for micro in range(args.accum):
        i = ((step * args.accum + micro) * 16) % 1024
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, loss = model(x[i:i + 16], y[i:i + 16])
        if args.inf_every and step % args.inf_every == 0:
            loss = loss * float("inf")
        scaler.scale(loss / args.accum).backward()
    scale = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    skipped += scaler.get_scale() < scale
    optimizer.zero_grad(set_to_none=True)
print(f"trained {args.steps} steps ({skipped} skipped by the scaler), loss {loss.item():.3f}")
