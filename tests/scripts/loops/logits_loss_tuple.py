"""A model that computes its own loss and returns ``(logits, loss)``; backward starts from the loss."""
import argparse

import torch
from torch import nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
args = parser.parse_args()


class TinyLM(nn.Module):
    def __init__(self, vocab=50, dim=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens, targets=None):
        logits = self.head(torch.tanh(self.mix(self.embed(tokens))))
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


torch.manual_seed(0)
model = TinyLM()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
data = torch.randint(0, 50, (64, 17))
for step in range(args.steps):
    batch = data[(step * 8) % 64:(step * 8) % 64 + 8]
    logits, loss = model(batch[:, :-1], batch[:, 1:])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"trained {args.steps} steps, loss {loss.item():.3f}")
