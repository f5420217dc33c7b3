"""Tensor math with no module and no optimizer: no step is ever found."""
import torch

a = torch.randn(64, 64)
for _ in range(20):
    a = torch.tanh(a @ a)
print("done")
