"""CIFAR ResNets of He et al. (2016), Sec. 4.2, with parameter-free option-A shortcuts.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016. Depth 6n+2:
a 3x3 conv with 16 channels, three stages of n basic blocks with 16/32/64 channels (stride 2
at the start of stages 2 and 3), global average pooling, a linear layer.

Module and key names follow akamaster/pytorch_resnet_cifar10 (``resnet.py``) so its public
checkpoints load with ``strict=True`` once the ``module.`` prefix is stripped: ``conv1``, ``bn1``,
``layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}``, ``linear``. The final layer keeps akamaster's name
``linear``; ``.fc`` is a read-only alias, so the files need no key renaming.
Differences from akamaster's code: the shortcut is a named module instead of a lambda (picklable,
printable), and pooling is ``mean`` over H, W instead of ``avg_pool2d(out, out.size()[3])``
(identical for square maps, the only ones CIFAR has; logits agree to float rounding).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar, Mapping

from bench._lazy import nn


if TYPE_CHECKING:
    import torch
    from torch import Tensor

from bench.models import Architecture
from bench.registry import MODELS


_BLOCK_KEY = re.compile(r"layer([123])\.(\d+)\.conv1\.weight")


class _CifarResNetArch(Architecture):
    depth: ClassVar[int] = 20
    # akamaster trained with ImageNet mean/std; MANIFEST: 0.3-0.55 points better than CIFAR's
    default_norm: ClassVar[str] = "imagenet"

    def __init__(self) -> None:
        pass

    def build(self, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        from bench.models._resnet_cifar_net import CifarResNet

        return CifarResNet((self.depth - 2) // 6, num_classes=num_classes, in_channels=in_channels)

    def init_weights(self, net: nn.Module, generator: torch.Generator) -> None:
        """akamaster's ``_weights_init``: Kaiming-normal (fan_in) for conv and linear weights."""
        super().init_weights(net, generator)
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, generator=generator)

    @classmethod
    def identify(cls, state_dict: Mapping[str, Tensor]) -> str | None:
        """``resnet<6n+2>`` when the keys are a CIFAR ResNet's with n blocks per stage."""
        blocks: dict[str, int] = {}
        for k in state_dict:
            m = _BLOCK_KEY.fullmatch(k)
            if m:
                blocks[m[1]] = max(blocks.get(m[1], 0), int(m[2]) + 1)
        if "linear.weight" not in state_dict or set(blocks) != {"1", "2", "3"}:
            return None
        n = set(blocks.values())
        return f"resnet{6 * n.pop() + 2}" if len(n) == 1 else None


@MODELS.register("resnet20")
class ResNet20(_CifarResNetArch):
    """ResNet-20 for CIFAR (He et al. 2016, option-A shortcuts; 0.27 M parameters, 64 features)."""

    depth = 20


@MODELS.register("resnet32")
class ResNet32(_CifarResNetArch):
    """ResNet-32 for CIFAR (He et al. 2016, option-A shortcuts; 0.46 M parameters, 64 features)."""

    depth = 32


@MODELS.register("resnet44")
class ResNet44(_CifarResNetArch):
    """ResNet-44 for CIFAR (He et al. 2016, option-A shortcuts; 0.66 M parameters, 64 features)."""

    depth = 44


@MODELS.register("resnet56")
class ResNet56(_CifarResNetArch):
    """ResNet-56 for CIFAR (He et al. 2016, option-A shortcuts; 0.85 M parameters, 64 features)."""

    depth = 56


def __getattr__(name: str):
    """The networks stay importable from here (PEP 562), loaded on first use."""
    if name in ("BasicBlock", "CifarResNet", "ShortcutA"):
        from bench.models import _resnet_cifar_net

        return getattr(_resnet_cifar_net, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ResNet20", "ResNet32", "ResNet44", "ResNet56"]
