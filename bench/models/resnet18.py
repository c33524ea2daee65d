"""ResNet-18 adapted to 32x32 inputs: torchvision's ResNet-18 with a 3x3 stride-1 stem, no max-pool.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (the ImageNet ResNet-18).
The ImageNet stem (7x7 stride-2 conv + 3x3 stride-2 max-pool) would shrink a 32x32 image to 8x8
before the first block; the common CIFAR adaptation (e.g. kuangliu/pytorch-cifar) uses a 3x3
stride-1 conv and drops the max-pool, so the stages see 32, 16, 8 and 4 pixels. Key names are
torchvision's (``conv1``, ``bn1``, ``layer1..4``, ``fc``), with projection (option-B) shortcuts
``layerX.0.downsample``. ``features``: (N, 512) after global average pooling.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, ResNet

from bench.models import Architecture
from bench.registry import MODELS


class CifarResNet18(ResNet):
    """torchvision ``ResNet(BasicBlock, [2, 2, 2, 2])`` with a CIFAR stem and ``features``."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.maxpool = nn.Identity()

    def features(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


@MODELS.register("resnet18")
class ResNet18(Architecture):
    """ResNet-18 for 32x32 inputs (3x3 stride-1 stem, no max-pool; 11.2 M parameters, 512 features)."""

    # no public checkpoint: the norm is stored in the files `bench train` writes; CIFAR-10's own
    # statistics for training from scratch
    default_norm: ClassVar[str] = "cifar10"

    def __init__(self) -> None:
        pass

    def build(self, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        return CifarResNet18(num_classes=num_classes, in_channels=in_channels)


__all__ = ["CifarResNet18", "ResNet18"]
