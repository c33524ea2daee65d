"""Salt-and-pepper (impulse) noise (skimage ``random_noise(mode='s&p')``, CIFAR-10-C impulse)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bench._lazy import nn, torch
from bench.attacks._common import check_number, rand
from bench.attacks.base import CORRUPTION, SHIFTS, Shift

if TYPE_CHECKING:
    from torch import Tensor


@SHIFTS.register("salt_pepper")
class SaltPepper(Shift):
    """Salt-and-pepper noise: each value is replaced with probability ``amount``, by 1 or 0.

    Hendrycks & Dietterich 2019 (CIFAR-10-C ``impulse_noise`` calls skimage
    ``random_noise(x, mode='s&p', amount=c)``), METHODS.md §5. As in skimage, every value
    (each channel of each pixel, independently) draws ``flip ~ Bernoulli(amount)`` and
    ``salt ~ Bernoulli(1/2)``; flipped values become ``salt ? 1 : 0``. Both draws cover the
    whole set (flip first, then salt) from the passed CPU generator; skimage uses numpy's
    generator, so the values differ from skimage's but the distribution is the same.
    amount by severity 1..5: .01 .02 .03 .05 .07. Shapes: (N,C,H,W) -> (N,C,H,W), same dtype.
    """

    group: ClassVar[str] = CORRUPTION
    severity_param: ClassVar[str] = "amount"
    severities: ClassVar[tuple[float, ...]] = (0.01, 0.02, 0.03, 0.05, 0.07)

    def __init__(self, *, severity: int | None = None, amount: float | None = None):
        self._init_severity(severity, {"amount": amount})
        check_number(self.name, "amount", self.amount, 0.0, 1.0)

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator) -> Tensor:
        flip = rand(x.shape, generator, device=x.device) < self.amount
        salt = rand(x.shape, generator, device=x.device) < 0.5
        return torch.where(flip, salt.to(x.dtype), x)
