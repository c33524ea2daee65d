"""The :class:`Classifier` wrapper (an ``nn.Module``, so it lives apart from the registry's
modules: torch is loaded when a network is built, not when components are listed)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class Classifier(nn.Module):
    """Wraps a network ``net`` with ``net.features(x) -> (N, H)`` and a final ``net.fc`` Linear.

    Inputs are float images in [0, 1] (METHODS.md §0); normalisation with ``mean``/``std``
    belongs to the model. ``forward_features`` gives logits and penultimate features in one pass.
    """

    def __init__(self, net: nn.Module, *, mean: Sequence[float], std: Sequence[float],
                 num_classes: int, arch: str = "", norm: str = "custom"):
        super().__init__()
        self.net = net
        self.num_classes = num_classes
        self.arch = arch
        self.norm = norm
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.net.features(self.normalize(x))
        return self.net.fc(f), f

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)[0]

    @property
    def head(self) -> nn.Linear | None:
        fc = getattr(self.net, "fc", None)
        return fc if isinstance(fc, nn.Linear) else None

    @property
    def device(self) -> torch.device:
        return self.mean.device


__all__ = ["Classifier"]
