"""The ``cnn`` architecture's network (built by :class:`bench.models.cnn.CNN`)."""

from __future__ import annotations

from torch import Tensor, nn


class SmallCNN(nn.Module):
    """Two 3x3 convs, a max-pool, a hidden linear layer (``features``) and ``fc``."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int, width: int = 32,
                 hidden: int = 64):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        side = image_size // 2
        self.hidden = nn.Linear(2 * width * side * side, hidden)
        self.fc = nn.Linear(hidden, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.hidden(self.conv(x).flatten(1)).relu()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


__all__ = ["SmallCNN"]
