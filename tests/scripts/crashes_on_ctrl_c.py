"""Three steps, then waits; Ctrl-C crashes its interpreter (SIGSEGV) before advisor's runner can save anything."""
import os
import signal
import time

import torch
from torch import nn

model = nn.Linear(4, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(3):
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
signal.signal(signal.SIGINT, lambda signum, frame: os.kill(os.getpid(), signal.SIGSEGV))
print("ready", flush=True)
time.sleep(600)
