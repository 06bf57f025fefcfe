"""LeNet-5 as used by the authors for MNIST (the Caffe/PyTorch-examples variant).

conv 5x5 (20) - ReLU - maxpool 2 - conv 5x5 (50) - ReLU - maxpool 2 - fc 500 - ReLU - fc.
At 1x28x28 input and 10 classes it has 431,080 parameters (fc1 takes 50*4*4 = 800
inputs). PyTorch's default initialisation.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn as nn

from src.errors import UserError


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, input_shape: Sequence[int] = (1, 28, 28)) -> None:
        super().__init__()
        channels, height, width = input_shape
        # Each stage: valid 5x5 conv takes 4 pixels, 2x2 pooling halves.
        for _ in range(2):
            height, width = (height - 4) // 2, (width - 4) // 2
        if height < 1 or width < 1:
            raise UserError(f"lenet5 needs inputs of at least 16x16 pixels, got {tuple(input_shape)}")

        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(channels, 20, kernel_size=5)),
                    ("relu1", nn.ReLU(inplace=True)),
                    ("pool1", nn.MaxPool2d(2)),
                    ("conv2", nn.Conv2d(20, 50, kernel_size=5)),
                    ("relu2", nn.ReLU(inplace=True)),
                    ("pool2", nn.MaxPool2d(2)),
                ]
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("fc1", nn.Linear(50 * height * width, 500)),
                    ("relu1", nn.ReLU(inplace=True)),
                    ("fc2", nn.Linear(500, num_classes)),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def build_lenet5(cfg, num_classes: int, input_shape: Sequence[int]) -> LeNet5:
    return LeNet5(num_classes=num_classes, input_shape=input_shape)
