"""The ``resnet18`` architecture's network: torchvision's ResNet-18 with a CIFAR stem."""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, ResNet


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


__all__ = ["CifarResNet18"]
