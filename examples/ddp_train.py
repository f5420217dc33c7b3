"""Data-parallel training of a small MLP with DistributedDataParallel over gloo, on the CPU.

Bottleneck demonstrated: communication and stragglers. Every backward pass all-reduces the gradients
between the processes (gloo, on its own worker threads); with ``--slow-rank R --slow-ms MS`` one rank
spends MS more milliseconds in each forward pass, and every other rank waits for it in the all-reduce.

Usage (2 processes, as torchrun launches them):
    torchrun --nproc-per-node 2 examples/ddp_train.py --steps 200
    torchrun --nproc-per-node 2 examples/ddp_train.py --steps 200 --slow-rank 1 --slow-ms 50
    torchrun --nproc-per-node 2 examples/ddp_train.py --steps 200 --accumulate 4 [--no-sync]
Run with plain ``python`` it trains alone (a world of one).
"""

import argparse
import contextlib
import os
import signal
import socket
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel


class MLP(nn.Module):
    def __init__(self, features=256, hidden=768, classes=10, depth=3, slow_ms=0.0):
        super().__init__()
        sizes = [features] + [hidden] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.head = nn.Linear(hidden, classes)
        self.slow_s = slow_ms / 1000.0

    def forward(self, x):
        if self.slow_s:
            time.sleep(self.slow_s)  # this rank is slower (another job on its cores, a slower device)
        for layer in self.layers:
            x = F.relu(layer(x))
        return self.head(x)


def init_world():
    """Join the process group torchrun describes in the environment, or make a world of one."""
    if "RANK" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="number of training steps")
    parser.add_argument("--batch-size", type=int, default=64, help="per rank")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--bucket-cap-mb", type=float, default=25.0, help="DDP's gradient bucket size")
    parser.add_argument("--slow-rank", type=int, default=None, help="the rank that is slower")
    parser.add_argument("--slow-ms", type=float, default=0.0, help="how much slower each of its steps is")
    parser.add_argument("--accumulate", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--no-sync", action="store_true",
                        help="skip the gradient all-reduce of all micro-batches but the last (model.no_sync())")
    parser.add_argument("--crash-rank", type=int, default=None, help="the rank that dies (SIGKILL) ...")
    parser.add_argument("--crash-at", type=int, default=None, help="... at the start of this step")
    args = parser.parse_args()

    rank, world = init_world()
    torch.manual_seed(0)  # the same initial weights on every rank (DDP broadcasts rank 0's anyway)
    slow_ms = args.slow_ms if args.slow_rank == rank else 0.0
    model = DistributedDataParallel(MLP(slow_ms=slow_ms), bucket_cap_mb=args.bucket_cap_mb)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    g = torch.Generator().manual_seed(1 + rank)  # each rank its own shard of the data
    inputs = torch.randn(16, args.batch_size, 256, generator=g)
    targets = torch.randint(0, 10, (16, args.batch_size), generator=g)

    start = time.perf_counter()
    for step in range(args.steps):
        if rank == args.crash_rank and step == args.crash_at:
            os.kill(os.getpid(), signal.SIGKILL)
        optimizer.zero_grad()
        for micro in range(args.accumulate):
            i = (step * args.accumulate + micro) % len(inputs)
            last = micro == args.accumulate - 1
            with model.no_sync() if args.no_sync and not last else contextlib.nullcontext():
                loss = F.cross_entropy(model(inputs[i]), targets[i]) / args.accumulate
                loss.backward()
        optimizer.step()
        if rank == 0 and step % 20 == 0:
            print(f"step {step:4d}  loss {loss.item():.4f}", flush=True)
    if rank == 0:
        print(f"{args.steps} steps on {world} ranks in {time.perf_counter() - start:.2f} s", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
