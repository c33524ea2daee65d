"""Contrast change around each image's per-channel mean (CIFAR-10-C ``contrast``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bench._lazy import nn, torch
from bench.attacks._common import check_number
from bench.attacks.base import CORRUPTION, SHIFTS, Shift

if TYPE_CHECKING:
    from torch import Tensor


def contrast(x: Tensor, c: float) -> Tensor:
    """``clip((x - m) * c + m, 0, 1)`` with m the mean of each image and channel (N,C,1,1)."""
    m = x.mean(dim=(2, 3), keepdim=True)
    return ((x - m) * c + m).clamp_(0.0, 1.0)


@SHIFTS.register("contrast")
class Contrast(Shift):
    """Contrast: ``clip((x - mean) * c + mean, 0, 1)``, mean per image per channel.

    Hendrycks & Dietterich 2019 (``make_cifar_c.py: contrast`` takes the mean over the two
    spatial axes, i.e. per channel). c < 1 lowers contrast; c by severity 1..5:
    .75 .5 .4 .3 .15. Deterministic (no random draws). Shapes: (N,C,H,W) -> same, same dtype.
    """

    batchable: ClassVar[bool] = True

    group: ClassVar[str] = CORRUPTION
    severity_param: ClassVar[str] = "c"
    severities: ClassVar[tuple[float, ...]] = (0.75, 0.5, 0.4, 0.3, 0.15)

    def __init__(self, *, severity: int | None = None, c: float | None = None):
        self._init_severity(severity, {"c": c})
        check_number(self.name, "c", self.c, 0.0, 10.0)

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator) -> Tensor:
        return contrast(x, self.c)
