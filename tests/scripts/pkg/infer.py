"""Run as a module: python -m pkg.infer."""
import sys

import torch
from torch import nn

model = nn.Linear(8, 8)
with torch.inference_mode():
    for _ in range(10):
        model(torch.randn(2, 8))
print("module argv", sys.argv[1:])
