"""Batched inference with switchable performance mistakes (for the findings tests)."""
import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--grad", action="store_true", help="forward passes with autograd on")
parser.add_argument("--tiny", action="store_true", help="a deep, narrow net on small batches: tiny ops")
parser.add_argument("--small-batch", action="store_true", help="wide layers on a batch of 2: matmuls far below peak")
parser.add_argument("--elementwise", action="store_true",
                    help="wide activations through GELU and LayerNorm after one small matmul: a memory-bound step")
parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave alone)")
parser.add_argument("--steps", type=int, default=40)
args = parser.parse_args()

torch.manual_seed(0)
if args.threads:
    torch.set_num_threads(args.threads)
width, depth, batch = (16, 24, 4) if args.tiny else (1024, 3, 2) if args.small_batch else (512, 3, 256)
model = nn.Sequential(*[nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth)]).eval()
x = torch.randn(batch, width)
if args.elementwise:
    model = nn.Sequential(nn.Linear(16, 2048), *[m for _ in range(4) for m in (nn.GELU(), nn.LayerNorm(2048))]).eval()
    x = torch.randn(512, 16)
with torch.set_grad_enabled(args.grad):
    for _ in range(args.steps):
        model(x)
