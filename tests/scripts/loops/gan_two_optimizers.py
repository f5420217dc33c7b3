"""A GAN: a discriminator step then a generator step per iteration, each with its own optimizer."""
import argparse

import torch
from torch import nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
args = parser.parse_args()

torch.manual_seed(0)
generator = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
discriminator = nn.Sequential(nn.Linear(2, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
real_data = torch.randn(1024, 2) * 0.5 + torch.tensor([2.0, -1.0])
ones, zeros = torch.ones(64, 1), torch.zeros(64, 1)
for step in range(args.steps):
    real = real_data[(step * 64) % 1024:(step * 64) % 1024 + 64]
    fake = generator(torch.randn(64, 8))
    d_loss = (F.binary_cross_entropy_with_logits(discriminator(real), ones)
              + F.binary_cross_entropy_with_logits(discriminator(fake.detach()), zeros))
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    g_loss = F.binary_cross_entropy_with_logits(discriminator(fake), ones)
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
print(f"trained {args.steps} steps, d {d_loss.item():.3f} g {g_loss.item():.3f}")
