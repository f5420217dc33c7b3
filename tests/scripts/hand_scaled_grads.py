"""A training loop that changes its gradients by hand between backward and the optimizer step (a custom
clipping rule): no replay of the model step can know it, so advisor must refuse to measure that step."""

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(30):
    x, y = torch.randn(8, 16), torch.randint(0, 4, (8,))
    loss = nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p.grad.mul_(0.5 / (1e-6 + p.grad.abs().max()))
    optimizer.step()
