"""Run batched inference through a deep, narrow MLP.

Bottleneck demonstrated: per-op (framework/dispatch) overhead. With a small
batch and narrow layers each aten op does only a few microseconds of math, so
the time goes to launching many tiny ops (aten::linear/addmm, layer_norm,
gelu, add, ...) rather than to arithmetic.

Usage:
    python examples/mlp_infer.py --steps 200
"""

import argparse
import time

import torch
import torch.nn as nn


class ResidualMLPBlock(nn.Module):
    """LayerNorm -> Linear -> GELU -> Linear, with a residual add."""

    def __init__(self, width, hidden):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class NarrowMLP(nn.Module):
    def __init__(self, in_features, width, hidden, depth, num_outputs):
        super().__init__()
        self.inp = nn.Linear(in_features, width)
        self.blocks = nn.Sequential(*[ResidualMLPBlock(width, hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, num_outputs)

    def forward(self, x):
        return self.out(self.norm(self.blocks(self.inp(x))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="number of inference batches")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=24)
    parser.add_argument("--micro-batches", type=int, default=32,
                        help="requests served per step, each as its own forward pass")
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    in_features, num_outputs = 32, 8

    model = NarrowMLP(in_features, args.width, 2 * args.width, args.depth, num_outputs)
    model.eval()

    start = time.perf_counter()
    with torch.no_grad():
        for step in range(1, args.steps + 1):
            # Each step serves a burst of small requests one at a time.
            checksum = 0.0
            for _ in range(args.micro_batches):
                x = torch.randn(args.batch_size, in_features, generator=generator)
                scores = model(x).softmax(dim=-1)
                checksum += scores.max(dim=-1).values.mean().item()
            if step % args.log_every == 0 or step == args.steps:
                print(f"step {step}/{args.steps} mean top score {checksum / args.micro_batches:.4f}", flush=True)

    elapsed = time.perf_counter() - start
    print(f"done: {args.steps} steps in {elapsed:.2f}s ({elapsed / max(args.steps, 1) * 1000:.1f} ms/step)", flush=True)


if __name__ == "__main__":
    main()
