"""A model that computes its own loss and returns (logits, loss), as Hugging Face models do."""
import torch
from torch import nn


class WithLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Dropout(0.2), nn.Linear(32, 4))

    def forward(self, x, labels):
        logits = self.body(x)
        return logits, nn.functional.cross_entropy(logits, labels)


torch.manual_seed(0)
model = WithLoss()
optimizer = torch.optim.AdamW([{"params": model.body[0].parameters(), "lr": 1e-3},
                               {"params": model.body[3].parameters()}], lr=3e-4, weight_decay=0.05)
for _ in range(12):
    logits, loss = model(torch.randn(8, 16), labels=torch.randint(0, 4, (8,)))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
