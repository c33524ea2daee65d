"""Additive Gaussian noise (CIFAR-10-C ``gaussian_noise``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bench._lazy import nn, torch
from bench.attacks._common import check_number, randn
from bench.attacks.base import CORRUPTION, SHIFTS, Shift

if TYPE_CHECKING:
    from torch import Tensor


@SHIFTS.register("gaussian_noise")
class GaussianNoise(Shift):
    """Additive Gaussian noise: ``clip(x + sigma * n, 0, 1)``, n ~ N(0, 1) per value.

    Hendrycks & Dietterich 2019 (CIFAR-10-C, ``make_cifar_c.py: gaussian_noise``), METHODS.md §5.
    sigma by severity 1..5: .04 .06 .08 .09 .10 (pixel units on [0, 1]). The noise is drawn
    in float32 on the CPU from the passed generator for the whole set in one call, so it
    does not depend on device or batching. Unlike the released CIFAR-10-C files, the result
    is not quantised to uint8. Shapes: x (N,C,H,W) -> (N,C,H,W), same dtype.
    """

    group: ClassVar[str] = CORRUPTION
    severity_param: ClassVar[str] = "sigma"
    severities: ClassVar[tuple[float, ...]] = (0.04, 0.06, 0.08, 0.09, 0.10)

    def __init__(self, *, severity: int | None = None, sigma: float | None = None):
        self._init_severity(severity, {"sigma": sigma})
        check_number(self.name, "sigma", self.sigma, 0.0, 1.0)

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator) -> Tensor:
        noise = randn(x.shape, generator, device=x.device)
        return (x + self.sigma * noise.to(x.dtype)).clamp_(0.0, 1.0)
