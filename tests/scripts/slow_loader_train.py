"""Training whose DataLoader is slow per item: data loading dominates the step."""
import time

import torch
from torch import nn


class SlowDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 512

    def __getitem__(self, i):
        time.sleep(0.02)  # 80 ms a batch: data dominates even on a loaded machine
        return torch.randn(16), i % 4


model = nn.Linear(16, 4)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in torch.utils.data.DataLoader(SlowDataset(), batch_size=4):
    loss = nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
