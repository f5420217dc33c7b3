"""An LSTM language model whose hidden state is carried across batches (detached), updated by hand
(``--update manual``, default, as in the classic word-language-model example) or by ``torch.optim.SGD``."""
import argparse

import torch
from torch import nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--update", choices=("manual", "optim"), default="manual")
args = parser.parse_args()


class LSTMLM(nn.Module):
    def __init__(self, vocab=60, dim=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens, hidden):
        out, hidden = self.lstm(self.embed(tokens), hidden)
        return self.head(out), hidden


torch.manual_seed(0)
model = LSTMLM()
optimizer = torch.optim.SGD(model.parameters(), lr=1.0) if args.update == "optim" else None
stream = torch.randint(0, 60, (8, 4001))
bptt, lr = 20, 1.0
hidden = None
for step in range(args.steps):
    i = (step * bptt) % 4000
    tokens, targets = stream[:, i:i + bptt], stream[:, i + 1:i + 1 + bptt]
    if hidden is not None:
        hidden = tuple(h.detach() for h in hidden)
    model.zero_grad()
    logits, hidden = model(tokens, hidden)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
    if optimizer is not None:
        optimizer.step()
    else:
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
print(f"trained {args.steps} steps, loss {loss.item():.3f}")
