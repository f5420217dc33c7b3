import sys

import torch

torch.ones(3).sum()
sys.exit(3)
