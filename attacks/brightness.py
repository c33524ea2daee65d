"""Brightness: shift the HSV value (CIFAR-10-C ``brightness``) without an HSV round trip."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bench._lazy import nn, torch
from bench.attacks._common import check_number
from bench.attacks.base import CORRUPTION, SHIFTS, Shift

if TYPE_CHECKING:
    from torch import Tensor


def brightness(x: Tensor, c: float) -> Tensor:
    """HSV ``V' = clip(V + c, 0, 1)`` with V = max over channels, as ``x * V'/V``.

    Scaling all channels of a pixel by V'/V keeps its hue and saturation (both are ratios of
    channel differences to V), so this equals rgb -> hsv, V += c, clip, hsv -> rgb. A black
    pixel (V = 0) has no hue: it becomes grey V' in every channel, as hsv2rgb gives for S = 0.
    """
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(0.0, 1.0)
    black = v <= 0
    scale = v_new / torch.where(black, torch.ones_like(v), v)
    return torch.where(black, v_new.expand_as(x), x * scale).clamp_(0.0, 1.0)


@SHIFTS.register("brightness")
class Brightness(Shift):
    """Brightness: add c to the HSV value ``V = max_c x``, clipped to [0, 1].

    Hendrycks & Dietterich 2019 (``make_cifar_c.py: brightness`` does skimage rgb2hsv,
    ``V = clip(V + c, 0, 1)``, hsv2rgb). Computed as ``x * V'/V`` per pixel (grey ``V'``
    where V = 0), which is the same map, vectorised. c by severity 1..5: .05 .1 .15 .2 .3
    (METHODS.md §5; milder than CIFAR-10-C's .1 ... .5). Deterministic.
    Shapes: (N,C,H,W) -> (N,C,H,W), same dtype; for 1-channel images V is the pixel itself.
    """

    batchable: ClassVar[bool] = True

    group: ClassVar[str] = CORRUPTION
    severity_param: ClassVar[str] = "c"
    severities: ClassVar[tuple[float, ...]] = (0.05, 0.1, 0.15, 0.2, 0.3)

    def __init__(self, *, severity: int | None = None, c: float | None = None):
        self._init_severity(severity, {"c": c})
        check_number(self.name, "c", self.c, -1.0, 1.0)

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator) -> Tensor:
        return brightness(x, self.c)
