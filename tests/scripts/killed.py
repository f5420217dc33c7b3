"""Trains a few steps, then its process is killed by a signal (SIGKILL by default, as the OOM killer does)."""
import os
import signal
import sys

import torch

model = torch.nn.Linear(8, 8)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(3):
    model(torch.randn(4, 8)).sum().backward()
    optimizer.step()
    optimizer.zero_grad()
os.kill(os.getpid(), getattr(signal, sys.argv[1]) if len(sys.argv) > 1 else signal.SIGKILL)
