"""Tensor math in a loop with no module, no backward and no optimizer: no step boundary is ever found.

Runs for ``--seconds S`` (default 10), then exits.
"""
import argparse
import time

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=float, default=10.0)
args = parser.parse_args()

torch.manual_seed(0)
a = torch.randn(64, 64)
n = 0
end = time.monotonic() + args.seconds
while time.monotonic() < end:
    a = torch.tanh(a @ a)
    n += 1
print(f"ran {n} iterations")
