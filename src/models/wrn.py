"""Wide Residual Network for CIFAR (Zagoruyko & Komodakis, "Wide Residual Networks", 2016).

WRN-d-k: a 3x3 conv to 16 channels, three groups of n = (d - 4) / 6 pre-activation basic
blocks (BN - ReLU - conv3x3 [- dropout] - BN - ReLU - conv3x3) with 16k, 32k and 64k
channels (the first block of groups 2 and 3 halves the resolution; a 1x1 conv shortcut is
used where the width changes), then BN - ReLU - global average pooling - linear.

Parameter counts of WRN-28-10 at 100 classes (CIFAR-100):

* ``conv_bias=True`` (every conv, shortcuts included, has a bias, as in the authors' WRN
  from dnn-mode-connectivity / meliketoy's wide-resnet.pytorch): 36,546,980
* ``conv_bias=False`` (the original paper's code): 36,536,884

At 10 classes they are 36,489,290 and 36,479,194.

Two block layouts (``variant``), with the same parameters:

* ``zagoruyko`` (default): the paper's. The stride-2 block puts its stride on the first conv;
  a projection shortcut reads the pre-activated input BN-ReLU(x).
* ``authors``: the authors' ``Connectivity_Projection/models/wide_resnet.py`` (WideBasic,
  ported from meliketoy/wide-resnet.pytorch). The stride sits on the second conv and the
  shortcut (identity or 1x1 conv) reads the block's raw input x.

Initialisation (``init``):

* ``kaiming_normal_fan_out`` (``auto``): Kaiming normal (fan_out, ReLU) conv weights, zero conv
  biases, BN weight 1 and bias 0, PyTorch-default linear weight with zero bias.
* ``torch_default``: PyTorch's module defaults, nothing re-drawn, as in the authors' code (it
  has no init code): conv and linear weights ``kaiming_uniform_(a=sqrt(5))`` = U(+-1/sqrt(fan_in)),
  their biases U(+-1/sqrt(fan_in)), BN weight 1 and bias 0. Modules are created in the same
  order as the authors' (conv1; per block bn1, conv1, bn2, conv2, shortcut; final BN; linear),
  so the same ``torch.manual_seed`` gives the same initial weights.

``final_bn_momentum``: momentum of the BatchNorm before the classifier, in PyTorch's meaning
(None: 0.1). The authors' WRN passes 0.9 there: their running statistics of that layer follow
the latest batch almost entirely.
"""

from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from src.errors import UserError

VARIANTS = ("zagoruyko", "authors")
INITS = ("auto", "kaiming_normal_fan_out", "torch_default")


class BasicBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3-[dropout]-BN-ReLU-conv3x3, plus shortcut.

    ``variant`` says which conv carries the stride and what the shortcut reads (see the module docstring).
    """

    def __init__(
        self, in_planes: int, out_planes: int, stride: int, dropout: float, bias: bool, variant: str = "zagoruyko"
    ) -> None:
        super().__init__()
        self.variant = variant
        first_stride, second_stride = (1, stride) if variant == "authors" else (stride, 1)
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=first_stride, padding=1, bias=bias)
        self.dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=second_stride, padding=1, bias=bias)
        self.shortcut = None
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(x))
        if self.shortcut is None:
            residual = x
        elif self.variant == "authors":
            residual = self.shortcut(x)  # the raw block input
        else:
            residual = self.shortcut(out)  # the pre-activated input (the paper)
        out = self.conv1(out)
        out = self.dropout(out)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + residual


class NetworkBlock(nn.Module):
    """A group of ``num_blocks`` basic blocks; the first one changes width and stride."""

    def __init__(
        self,
        num_blocks: int,
        in_planes: int,
        out_planes: int,
        stride: int,
        dropout: float,
        bias: bool,
        variant: str = "zagoruyko",
    ) -> None:
        super().__init__()
        blocks: List[nn.Module] = []
        for i in range(num_blocks):
            blocks.append(
                BasicBlock(
                    in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, dropout, bias, variant
                )
            )
        self.layer = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        num_classes: int = 10,
        dropout: float = 0.0,
        conv_bias: bool = True,
        in_channels: int = 3,
        variant: str = "zagoruyko",
        init: str = "auto",
        final_bn_momentum: Optional[float] = None,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise UserError(f"wrn depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
        if widen_factor < 1:
            raise UserError(f"wrn widen_factor must be at least 1, got {widen_factor}")
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"model.dropout must be in [0, 1), got {dropout}")
        if variant not in VARIANTS:
            raise UserError(f"unknown model.variant '{variant}' for wrn; choose one of: {', '.join(VARIANTS)}")
        if init not in INITS:
            raise UserError(f"unknown model.init '{init}' for wrn; choose one of: {', '.join(INITS)}")
        if final_bn_momentum is not None and not 0.0 <= final_bn_momentum <= 1.0:
            raise UserError(f"model.final_bn_momentum must be in [0, 1] (or null), got {final_bn_momentum}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]

        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=conv_bias)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1, dropout, conv_bias, variant)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2, dropout, conv_bias, variant)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2, dropout, conv_bias, variant)
        momentum = 0.1 if final_bn_momentum is None else float(final_bn_momentum)
        self.bn1 = nn.BatchNorm2d(widths[3], momentum=momentum)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(widths[3], num_classes)

        if init in ("auto", "kaiming_normal_fan_out"):
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.zeros_(m.bias)
        # torch_default: keep what the modules drew when they were created.

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.block3(self.block2(self.block1(x)))
        x = self.relu(self.bn1(x))
        x = F.adaptive_avg_pool2d(x, 1)  # = avg_pool2d(x, 8) on 32x32 inputs
        x = torch.flatten(x, 1)
        return self.fc(x)


def build_wrn(cfg, num_classes: int, input_shape) -> WideResNet:
    dropout = getattr(cfg, "dropout", None)
    momentum = getattr(cfg, "final_bn_momentum", None)
    return WideResNet(
        depth=int(cfg.depth),
        widen_factor=int(cfg.widen_factor),
        num_classes=num_classes,
        dropout=0.0 if dropout is None else float(dropout),
        conv_bias=bool(getattr(cfg, "conv_bias", True)),
        in_channels=int(input_shape[0]),
        variant=str(getattr(cfg, "variant", "zagoruyko")),
        init=str(getattr(cfg, "init", "auto")),
        final_bn_momentum=None if momentum is None else float(momentum),
    )
