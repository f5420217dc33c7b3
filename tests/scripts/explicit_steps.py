"""The script marks its own steps with advisor.step(), overriding optimizer-step detection."""
import torch
from torch import nn

import advisor

model = nn.Linear(16, 4)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(12):
    for _ in range(2):  # two optimizer steps per marked step
        model(torch.randn(8, 16)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    advisor.step()
