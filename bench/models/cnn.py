"""A small CNN for the embedded ``digits`` set (1x8x8, 10 classes), trained on first use.

No paper: a LeNet-style baseline so that the suite runs end to end with no downloaded weights.
Layers: conv3x3(C -> width)-ReLU, conv3x3(width -> 2 width)-ReLU, max-pool 2, flatten,
Linear(-> hidden)-ReLU (the penultimate ``features``, (N, hidden)), Linear(hidden -> K) (``fc``).
Here the penultimate layer follows a flatten of the pooled map, not a global average pool: on
8x8 digits the position of the strokes is the information, and pooling it away costs accuracy.

``load_classifier('cnn', train_set=...)`` trains it on the ID train split the first time (Adam,
lr 1e-3, 30 epochs, batch 64, seeded, CPU: a few seconds for digits' 898 images) and caches it
as ``bench_home()/models/cnn-<hash>.pt``; the hash covers this architecture config, the training
config, the normalisation, the seed and the sha256 of the training data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from torch import nn

from bench.errors import BenchError
from bench.models import Architecture
from bench.registry import MODELS


@MODELS.register("cnn")
class CNN(Architecture):
    """Small CNN (2 convs + max-pool + 2 linear layers) for digits; trained on first use and cached."""

    default_norm: ClassVar[str] = "none"
    # Adam with a constant rate, no augmentation (flips and crops change what a digit means)
    first_use_training: ClassVar[dict[str, Any]] = {
        "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "epochs": 30, "batch_size": 64,
        "schedule": "constant", "crop_pad": 0, "flip": False,
    }

    def __init__(self, *, width: int = 32, hidden: int = 64):
        if width < 1 or hidden < 1:
            raise ValueError("width and hidden must be positive integers")
        self.width = width
        self.hidden = hidden

    def build(self, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        if image_size < 2:
            raise BenchError(f"cnn needs images of at least 2x2 pixels, got {image_size}")
        from bench.models._cnn_net import SmallCNN

        return SmallCNN(num_classes, in_channels, image_size, width=self.width, hidden=self.hidden)


__all__ = ["CNN"]
