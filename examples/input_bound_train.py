"""Train a tiny MLP whose DataLoader is slow per sample.

Bottleneck demonstrated: input-bound training. Each `Dataset.__getitem__`
simulates a storage read (a ~3 ms sleep) and some CPU "decoding" work done
in Python, and the loader runs with num_workers=0 by default, so the model
waits on the data: most of every step is spent inside the DataLoader's
`__next__`, not in forward/backward. Try `--num-workers 2` to compare.

Usage:
    python examples/input_bound_train.py --steps 200
"""

import argparse
import time

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset


class SlowSyntheticDataset(Dataset):
    """Synthetic samples that are expensive to "load" and "decode"."""

    def __init__(self, num_samples, num_features, num_classes, read_latency_s=0.003, seed=0):
        self.num_samples = num_samples
        self.num_features = num_features
        self.num_classes = num_classes
        self.read_latency_s = read_latency_s
        self.seed = seed

    def __len__(self):
        return self.num_samples

    def __getitem__(self, index):
        # Simulated read from slow storage.
        time.sleep(self.read_latency_s)
        # Simulated decoding: derive the sample deterministically from its index.
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        raw = torch.randint(0, 256, (self.num_features,), dtype=torch.uint8, generator=g)
        values = [float(v) / 255.0 for v in raw.tolist()]
        features = torch.tensor(values)
        features = (features - features.mean()) / (features.std() + 1e-6)
        label = int(raw[:8].sum().item()) % self.num_classes
        return features, label


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="number of training steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--read-latency-ms", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    num_features, num_classes = 256, 10
    dataset = SlowSyntheticDataset(
        num_samples=4096,
        num_features=num_features,
        num_classes=num_classes,
        read_latency_s=args.read_latency_ms / 1000.0,
        seed=args.seed,
    )
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.num_workers,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )

    model = nn.Sequential(
        nn.Linear(num_features, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    model.train()
    start = time.perf_counter()
    step = 0
    while step < args.steps:
        for features, labels in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(features), labels)
            loss.backward()
            optimizer.step()
            step += 1
            if step % args.log_every == 0 or step == args.steps:
                print(f"step {step}/{args.steps} loss {loss.item():.4f}", flush=True)
            if step >= args.steps:
                break

    elapsed = time.perf_counter() - start
    print(f"done: {args.steps} steps in {elapsed:.2f}s ({elapsed / max(args.steps, 1) * 1000:.1f} ms/step)", flush=True)


if __name__ == "__main__":
    main()
