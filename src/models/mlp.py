"""Fully connected ReLU network, for the small ``digits`` dataset (1x8x8 images, 10 classes).

flatten - [fc - ReLU] per width in ``cfg.hidden`` - fc. With the default hidden
widths [128, 128] it has 64*128+128 + 128*128+128 + 128*10+10 = 26,122 parameters.
PyTorch's default initialisation.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn as nn

from src.errors import UserError


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int) -> None:
        super().__init__()
        layers = OrderedDict()
        width = in_features
        for i, h in enumerate(hidden, start=1):
            layers[f"fc{i}"] = nn.Linear(width, h)
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
            width = h
        layers[f"fc{len(hidden) + 1}"] = nn.Linear(width, num_classes)
        self.layers = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.flatten(x, 1))


def build_mlp(cfg, num_classes: int, input_shape: Sequence[int]) -> MLP:
    hidden = [int(h) for h in cfg.hidden]
    if any(h < 1 for h in hidden):
        raise UserError(f"model.hidden widths must be positive, got {hidden}")
    return MLP(math.prod(input_shape), hidden, num_classes)
