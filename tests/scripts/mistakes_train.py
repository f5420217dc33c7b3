"""A small conv net trained with switchable performance mistakes (for the findings tests)."""
import argparse
import time

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--conv-bias", action="store_true", help="conv with bias straight into BatchNorm")
parser.add_argument("--keep-grads", action="store_true", help="zero_grad(set_to_none=False)")
parser.add_argument("--anomaly", action="store_true", help="autograd anomaly detection left on")
parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave alone)")
parser.add_argument("--workers", type=int, default=0, help="DataLoader num_workers")
parser.add_argument("--slow-data", action="store_true", help="each item takes 4 ms to load")
parser.add_argument("--fused", action="store_true", help="Adam(fused=True)")
parser.add_argument("--compile", choices=("no", "clean", "breaks"), default="no",
                    help="torch.compile (eager backend); 'breaks': a graph break, and a new input shape from step 3")
parser.add_argument("--steps", type=int, default=40)
args = parser.parse_args()

torch.manual_seed(0)
if args.threads:
    torch.set_num_threads(args.threads)
if args.anomaly:
    torch.autograd.set_detect_anomaly(True)


class Images(torch.utils.data.Dataset):
    def __init__(self):
        self.x = torch.randn(256, 3, 16, 16)
        self.y = torch.randint(0, 10, (256,))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if args.slow_data:
            time.sleep(0.004)
        return self.x[i], self.y[i]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=args.conv_bias)
        self.bn = nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 10)
        # many small parameter tensors: a per-parameter optimizer loop shows (one when compiled: Dynamo's tracing,
        # recorded with Python stacks, is what a compiled run spends its time on)
        self.scales = nn.ParameterList(nn.Parameter(torch.ones(1)) for _ in range(30 if args.compile == "no" else 1))

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        if args.compile == "breaks" and x.mean() > 0:  # data-dependent Python: a graph break
            x = x + 1
        return self.head(x.mean((2, 3))) * torch.cat(list(self.scales)).prod()


model = Net()
if args.compile != "no":
    model = torch.compile(model, backend="eager", dynamic=False)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True if args.fused else None)
loader = torch.utils.data.DataLoader(Images(), batch_size=16, shuffle=True, num_workers=args.workers, drop_last=True)
step = 0
while step < args.steps:
    for x, y in loader:
        if args.compile == "breaks" and step >= 3:
            x, y = x[:8], y[:8]  # a new batch size from step 3 on: one recompilation, in the recorded steps
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=not args.keep_grads)
        loss.backward()
        optimizer.step()
        step += 1
        if step == args.steps:
            break
