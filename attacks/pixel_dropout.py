"""Pixel dropout: whole pixels (all channels) set to 0."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bench._lazy import nn, torch
from bench.attacks._common import check_number, rand
from bench.attacks.base import CORRUPTION, SHIFTS, Shift

if TYPE_CHECKING:
    from torch import Tensor


@SHIFTS.register("pixel_dropout")
class PixelDropout(Shift):
    """Each pixel is set to 0 in every channel with probability ``p`` (Bernoulli per pixel).

    The seed paper's "pixel dropout" corruption (METHODS.md §5; CIFAR-10-C has none):
    ``x' = x * (1 - m)``, ``m ~ Bernoulli(p)`` of shape (N, 1, H, W), drawn on the CPU from
    the passed generator over the whole set. p by severity 1..5: .05 .1 .2 .3 .5.
    Shapes: (N,C,H,W) -> (N,C,H,W), same dtype.
    """

    group: ClassVar[str] = CORRUPTION
    severity_param: ClassVar[str] = "p"
    severities: ClassVar[tuple[float, ...]] = (0.05, 0.1, 0.2, 0.3, 0.5)

    def __init__(self, *, severity: int | None = None, p: float | None = None):
        self._init_severity(severity, {"p": p})
        check_number(self.name, "p", self.p, 0.0, 1.0)

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator) -> Tensor:
        n, _, h, w = x.shape
        drop = rand((n, 1, h, w), generator, device=x.device) < self.p
        return x.masked_fill(drop, 0.0)
