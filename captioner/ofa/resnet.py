"""OFA's visual stem: the first three stages of a ResNet (stride 16, 1024 channels).

OFA does not use a ViT patch embedding: an image of ``S x S`` pixels becomes an ``S/16 x S/16``
grid of 1024-d features, which the encoder projects to ``d_model`` and treats as tokens. Module
names match the public checkpoints (``conv1``, ``bn1``, ``layer1.0.downsample.0`` ...).
"""

from __future__ import annotations

import torch
from torch import nn

EXPANSION = 4
STEM_CHANNELS = 64
OUT_CHANNELS = 256 * EXPANSION  # 1024 after stage 3


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride here, as torchvision's ResNet v1.5) -> 1x1, with a residual."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * EXPANSION
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + identity)


class ResNetStem(nn.Module):
    """``(B, 3, S, S)`` pixels -> ``(B, 1024, S/16, S/16)`` features."""

    def __init__(self, depths: tuple[int, int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = STEM_CHANNELS
        stages = []
        for planes, blocks, stride in zip((64, 128, 256), depths, (1, 2, 2), strict=True):
            layer = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * EXPANSION
            layer += [Bottleneck(inplanes, planes) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3 = stages

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(pixels))))
        return self.layer3(self.layer2(self.layer1(x)))
