"""A small CIFAR-style ResNet (ResNet-9 layout) for 32x32 bicycle/motorcycle images.

Built from blocks as in kuangliu/pytorch-cifar: a 3x3 stem, then three stages of
conv-bn-relu (+pool) with residual blocks after the first and last stage.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """Two conv-bn-relu layers with an identity shortcut."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """ResNet-9: 32x32 input, widths w, 2w, 4w, 8w; returns logits for `num_classes`."""

    def __init__(self, num_classes: int = 2, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn(3, w),  # stem, 32x32
            conv_bn(w, 2 * w, pool=True),  # 16x16
            Residual(2 * w),
            conv_bn(2 * w, 4 * w, pool=True),  # 8x8
            conv_bn(4 * w, 8 * w, pool=True),  # 4x4
            Residual(8 * w),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(8 * w, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A fixed logit scale (as in airbench/ResNet-9 DAWNBench entries) keeps the
        # bias-free linear head well conditioned at the start of training.
        return self.classifier(self.features(x)) * 0.125
