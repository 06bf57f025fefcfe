"""The CNN of the Keras example ``examples/cifar10_cnn.py`` (Keras 2.x).

Two conv blocks (``same`` then ``valid`` 3x3 convolutions, 2x2 max pooling, dropout 0.25)
followed by a 512-unit dense layer with dropout 0.5. At 3x32x32 input and 10 classes it
has 1,250,858 parameters, as Keras' ``model.summary()`` reports.

Weights are initialised like Keras' defaults (Glorot/Xavier uniform kernels, zero biases).
Keras flattens channels-last (H, W, C) feature maps while this model flattens (C, H, W):
porting a Keras ``fc1`` kernel needs its rows permuted; trained from scratch it is the same.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn as nn

from src.errors import UserError


class KerasCNN(nn.Module):
    def __init__(self, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32)) -> None:
        super().__init__()
        channels, height, width = input_shape
        # Spatial size per block: 'same' conv keeps it, 'valid' 3x3 conv takes 2, pool halves.
        for _ in range(2):
            height, width = (height - 2) // 2, (width - 2) // 2
        if height < 1 or width < 1:
            raise UserError(f"keras_cnn needs inputs of at least 6x6 pixels, got {tuple(input_shape)}")

        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(channels, 32, kernel_size=3, padding=1)),
                    ("relu1", nn.ReLU(inplace=True)),
                    ("conv2", nn.Conv2d(32, 32, kernel_size=3)),
                    ("relu2", nn.ReLU(inplace=True)),
                    ("pool1", nn.MaxPool2d(2)),
                    ("dropout1", nn.Dropout(0.25)),
                    ("conv3", nn.Conv2d(32, 64, kernel_size=3, padding=1)),
                    ("relu3", nn.ReLU(inplace=True)),
                    ("conv4", nn.Conv2d(64, 64, kernel_size=3)),
                    ("relu4", nn.ReLU(inplace=True)),
                    ("pool2", nn.MaxPool2d(2)),
                    ("dropout2", nn.Dropout(0.25)),
                ]
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("fc1", nn.Linear(64 * height * width, 512)),
                    ("relu1", nn.ReLU(inplace=True)),
                    ("dropout1", nn.Dropout(0.5)),
                    ("fc2", nn.Linear(512, num_classes)),
                ]
            )
        )

        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def build_keras_cnn(cfg, num_classes: int, input_shape: Sequence[int]) -> KerasCNN:
    return KerasCNN(num_classes=num_classes, input_shape=input_shape)
