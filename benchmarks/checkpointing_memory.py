"""Activation checkpointing on the memory-heavy example's model: the replayed training step's peak memory
(advisor.peak_memory: profiler allocation events on the CPU) and its time, full and selective, against the
unchanged step, per sequence length; times interleaved A B / B A (advisor.trials.measure), median and spread.

    python benchmarks/checkpointing_memory.py [--seq-lens 128 256] [--depth 8] [--pairs 10]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from advisor.format import gain, human_bytes, spread
from advisor.peak_memory import step_peak
from advisor.technique import OptimizerSpec, Workload
from advisor.techniques.checkpointing import Checkpointing
from advisor.trials import measure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from long_sequence_train import DeepMLP, random_batch  # noqa: E402


def _workload(seq_len: int, depth: int, batch: int) -> Workload:
    torch.manual_seed(0)
    model = DeepMLP(features=32, width=64, depth=depth).train()
    x, _ = random_batch(batch, seq_len, 32, torch.Generator().manual_seed(0))
    adam = OptimizerSpec(torch.optim.Adam, {"lr": 1e-3}, [({"lr": 1e-3}, [n for n, _ in model.named_parameters()])])
    return Workload.of_call(model, (x,), training=True, output_grads=[torch.ones(batch, seq_len) / x.numel()],
                            optimizer=adam)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-lens", type=int, nargs="*", default=[128, 256])
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=10)
    args = parser.parse_args()
    print(f"DeepMLP width 64, depth {args.depth}, batch {args.batch}, Adam; {args.pairs} interleaved pairs\n")
    print(f"{'seq':>5} {'variant':<26} {'peak':>10} {'baseline':>10} {'peak ratio':>10} {'speed':>7} spread")
    for seq_len in args.seq_lens:
        baseline = _workload(seq_len, args.depth, args.batch)
        base_peak = step_peak(baseline.clone())
        for selective in (False, True):
            technique = Checkpointing(selective)
            variant = technique.apply(baseline.clone())
            peak = step_peak(variant.clone())
            timed = measure(baseline.clone().step_function(hold_weights=True),
                            variant.step_function(hold_weights=True), pairs=args.pairs)
            print(f"{seq_len:>5} {technique.name:<26} {human_bytes(peak):>10} {human_bytes(base_peak):>10} "
                  f"{peak / base_peak:>10.2f} {gain(timed.speedup):>7} {spread(timed.spread)}")


if __name__ == "__main__":
    main()
