"""Tensor math in a loop with no module, no backward and no optimizer: no step boundary is ever found.

Runs for ``--seconds S`` (default 10), then exits; ``--size 4`` makes the ops tiny, so that a recording of
them grows fast.
"""
import argparse
import time

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=float, default=10.0)
parser.add_argument("--size", type=int, default=64)
args = parser.parse_args()

torch.manual_seed(0)
a = torch.randn(args.size, args.size) / args.size**0.5
n = 0
end = time.monotonic() + args.seconds
while time.monotonic() < end:
    a = torch.tanh(a @ a)
    n += 1
print(f"ran {n} iterations")
