"""Train a deep residual MLP over long sequences of synthetic features, with Adam.

Bottleneck demonstrated: memory. Each of the `--depth` blocks (LayerNorm, Linear to 4x the width, GELU,
Linear back, residual add) keeps its activations for the backward: batch x sequence x 4 x width floats,
several times over, in every block. The parameters are small, so the step's peak memory is almost all
activations, which grow with the depth, the sequence and the batch; activation checkpointing of
`model.blocks` trades a second forward of each block for most of them.

Usage:
    python examples/long_sequence_train.py --steps 200
"""

import argparse
import time

import torch
import torch.nn as nn


class Block(nn.Module):
    """Pre-norm feed-forward block with a residual connection."""

    def __init__(self, width):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.act = nn.GELU()
        self.down = nn.Linear(4 * width, width)

    def forward(self, x):
        return x + self.down(self.act(self.up(self.norm(x))))


class DeepMLP(nn.Module):
    """Input projection, ``depth`` residual blocks, and a per-position regression head."""

    def __init__(self, features, width, depth):
        super().__init__()
        self.embed = nn.Linear(features, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(depth))
        self.head = nn.Linear(width, 1)

    def forward(self, x):
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x).squeeze(-1)


def random_batch(batch_size, seq_len, features, generator):
    x = torch.randn(batch_size, seq_len, features, generator=generator)
    # The target is a fixed smooth function of the features, so that the loss goes down.
    y = torch.tanh(x[..., : features // 2].sum(-1) - x[..., features // 2:].sum(-1))
    return x, y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="number of training steps")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    model = DeepMLP(args.features, args.width, args.depth)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    criterion = nn.MSELoss()

    model.train()
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        inputs, targets = random_batch(args.batch_size, args.seq_len, args.features, generator)
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.step()
        if step % args.log_every == 0 or step == args.steps:
            print(f"step {step}/{args.steps} loss {loss.item():.4f}", flush=True)

    elapsed = time.perf_counter() - start
    print(f"done: {args.steps} steps in {elapsed:.2f}s ({elapsed / max(args.steps, 1) * 1000:.1f} ms/step)", flush=True)


if __name__ == "__main__":
    main()
