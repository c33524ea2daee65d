"""ResNet-18 adapted to 32x32 inputs: torchvision's ResNet-18 with a 3x3 stride-1 stem, no max-pool.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (the ImageNet ResNet-18).
The ImageNet stem (7x7 stride-2 conv + 3x3 stride-2 max-pool) would shrink a 32x32 image to 8x8
before the first block; the common CIFAR adaptation (e.g. kuangliu/pytorch-cifar) uses a 3x3
stride-1 conv and drops the max-pool, so the stages see 32, 16, 8 and 4 pixels. Key names are
torchvision's (``conv1``, ``bn1``, ``layer1..4``, ``fc``), with projection (option-B) shortcuts
``layerX.0.downsample``. ``features``: (N, 512) after global average pooling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from torch import nn

from bench.models import Architecture
from bench.registry import MODELS


@MODELS.register("resnet18")
class ResNet18(Architecture):
    """ResNet-18 for 32x32 inputs (3x3 stride-1 stem, no max-pool; 11.2 M parameters, 512 features)."""

    # no public checkpoint: the norm is stored in the files `bench train` writes; CIFAR-10's own
    # statistics for training from scratch
    default_norm: ClassVar[str] = "cifar10"

    def __init__(self) -> None:
        pass

    def build(self, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        from bench.models._resnet18_net import CifarResNet18

        return CifarResNet18(num_classes=num_classes, in_channels=in_channels)


__all__ = ["ResNet18"]
