"""A model that returns a dict (``out["loss"]``) or a dataclass (``out.loss``), backward from its loss:
``--output dict`` (default) or ``--output dataclass`` picks one."""
import argparse
import dataclasses

import torch
from torch import nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--output", choices=("dict", "dataclass"), default="dict")
args = parser.parse_args()


@dataclasses.dataclass
class Output:
    logits: torch.Tensor
    loss: torch.Tensor


class Classifier(nn.Module):
    def __init__(self, as_dataclass: bool):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
        self.as_dataclass = as_dataclass

    def forward(self, x, labels):
        logits = self.body(x)
        loss = F.cross_entropy(logits, labels)
        return Output(logits, loss) if self.as_dataclass else {"logits": logits, "loss": loss}


torch.manual_seed(0)
model = Classifier(as_dataclass=args.output == "dataclass")
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
x, y = torch.randn(512, 32), torch.randint(0, 10, (512,))
for step in range(args.steps):
    i = (step * 32) % 512
    out = model(x[i:i + 32], labels=y[i:i + 32])
    loss = out.loss if args.output == "dataclass" else out["loss"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"trained {args.steps} steps, loss {loss.item():.3f}")
