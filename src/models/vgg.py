"""VGG for CIFAR as the authors trained it in the paper's appendix (VGG16 on CIFAR-10).

The architecture of ``Connectivity_Projection/models/vgg.py`` in the authors' repository
(itself from Garipov et al.'s dnn-mode-connectivity), written anew here:

* five stages of 3x3 convs (padding 1, with biases), each conv followed by ReLU (and by
  BatchNorm before the ReLU when ``batch_norm``), each stage ending in 2x2 max pooling;
  VGG16 stages: [64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3;
* a classifier Dropout - Linear(512, 512) - ReLU - Dropout - Linear(512, 512) - ReLU -
  Linear(512, classes), dropout 0.5 (``nn.Dropout()``'s default).

On 32x32 inputs the five poolings leave 1x1x512, so the first classifier layer takes 512
inputs (``512 * (H // 32) * (W // 32)`` in general).

Parameters at 10 classes: 14,714,688 in the 13 convs + 525,312 + 5,130 in the classifier =
15,245,130 (BatchNorm adds 2 per conv channel: 8,448 more).

Initialisation (``auto`` = ``kaiming_normal_fan_out``, the authors'): after PyTorch has
created every layer with its defaults, each conv weight is re-drawn from N(0, 2 / (k*k*out))
(Kaiming normal, fan_out) in layer order and its bias set to 0; the linear layers keep
PyTorch's defaults (weight and bias U(+-1/sqrt(fan_in))); BatchNorm 1/0. Layers are created
and re-drawn in the authors' order, so the same ``torch.manual_seed`` gives the same weights.
``torch_default`` keeps PyTorch's defaults for the convs too.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from src.errors import UserError

STAGES: Dict[int, List[List[int]]] = {
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    16: [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    19: [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}
INITS = ("auto", "kaiming_normal_fan_out", "torch_default")


class VGG(nn.Module):
    def __init__(
        self,
        depth: int = 16,
        num_classes: int = 10,
        input_shape: Sequence[int] = (3, 32, 32),
        batch_norm: bool = False,
        dropout: float = 0.5,
        init: str = "auto",
    ) -> None:
        super().__init__()
        if depth not in STAGES:
            raise UserError(f"vgg depth must be one of {sorted(STAGES)}, got {depth}")
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"model.dropout must be in [0, 1), got {dropout}")
        if init not in INITS:
            raise UserError(f"unknown model.init '{init}' for vgg; choose one of: {', '.join(INITS)}")
        channels, height, width = (int(s) for s in input_shape)
        stages = STAGES[depth]
        height, width = height >> len(stages), width >> len(stages)
        if height < 1 or width < 1:
            raise UserError(f"vgg needs inputs of at least 32x32 pixels, got {tuple(input_shape)}")

        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        in_ch = channels
        for s, stage in enumerate(stages, start=1):
            for i, out_ch in enumerate(stage, start=1):
                layers[f"conv{s}_{i}"] = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)
                if batch_norm:
                    layers[f"bn{s}_{i}"] = nn.BatchNorm2d(out_ch)
                layers[f"relu{s}_{i}"] = nn.ReLU(inplace=True)
                in_ch = out_ch
            layers[f"pool{s}"] = nn.MaxPool2d(kernel_size=2, stride=2)
        self.features = nn.Sequential(layers)
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("drop1", nn.Dropout(p=dropout)),
                    ("fc1", nn.Linear(in_ch * height * width, 512)),
                    ("relu1", nn.ReLU(inplace=True)),
                    ("drop2", nn.Dropout(p=dropout)),
                    ("fc2", nn.Linear(512, 512)),
                    ("relu2", nn.ReLU(inplace=True)),
                    ("fc3", nn.Linear(512, num_classes)),
                ]
            )
        )

        if init in ("auto", "kaiming_normal_fan_out"):
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                    with torch.no_grad():
                        m.weight.normal_(0.0, math.sqrt(2.0 / fan_out))
                        m.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def build_vgg16(cfg, num_classes: int, input_shape: Sequence[int]) -> VGG:
    dropout: Optional[float] = getattr(cfg, "dropout", None)
    return VGG(
        depth=16,
        num_classes=num_classes,
        input_shape=input_shape,
        batch_norm=bool(getattr(cfg, "batch_norm", False)),
        dropout=0.5 if dropout is None else float(dropout),
        init=str(getattr(cfg, "init", "auto")),
    )
