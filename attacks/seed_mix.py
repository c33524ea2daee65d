"""The seed notebook's own anomaly corruptions, for comparison with the seed paper (not graded)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bench._lazy import nn, torch
from bench.attacks._common import check_int, check_number
from bench.attacks.base import SHIFTS, Shift
from bench.attacks.contrast import contrast as adjust_contrast
from bench.attacks.fgsm import FGSM
from bench.attacks.gaussian_noise import GaussianNoise
from bench.attacks.mix import Mix
from bench.attacks.pixel_dropout import PixelDropout
from bench.attacks.salt_pepper import SaltPepper

if TYPE_CHECKING:
    from torch import Tensor


class SeedContrastBrightness(Shift):
    """The seed's contrast-then-brightness part: ``clip(contrast(x, c) * b, 0, 1)``.

    Brightness 1.2 in the seed is a factor (an additive 1.2 would turn every image white), so
    it multiplies every channel: torchvision ``adjust_brightness`` semantics. Contrast uses
    this suite's ``contrast`` formula (per image and channel mean) with c = 1.5.
    """

    def __init__(self, *, contrast: float = 1.5, brightness: float = 1.2):
        self._init_severity(None, {"contrast": contrast, "brightness": brightness})

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator) -> Tensor:
        return (adjust_contrast(x, self.contrast) * self.brightness).clamp_(0.0, 1.0)


@SHIFTS.register("seed_mix")
class SeedMix(Mix):
    """The seed notebook's anomaly set, labelled as such: for comparison with its numbers only.

    Seed repository joeduman/Upgrading-Autoencoders, ``autoencoder_main_code.ipynb``
    (METHODS.md §5, last paragraph): Gaussian sigma 0.1, salt-and-pepper 0.05, pixel dropout
    0.1, contrast 1.5 then brightness 1.2, FGSM eps 0.03. Parts are assigned and run exactly
    as in ``mix`` (same k, same order, same generator), with these fixed parameters instead
    of a severity. Where we differ from the seed, and why:

    - The seed applied its corruptions to images in [-1, 1] and clipped to [0, 1] by mistake.
      We could not state exactly what that does to each corruption (the notebook's cell could
      not be inspected here), so we do NOT reproduce it: these are the intended corruptions,
      on [0, 1] images, clipped to [0, 1].
    - The seed's FGSM attacked an untrained stand-in model; ours attacks the deployed
      classifier with the true labels (per-image summed cross-entropy, as ``fgsm``).
    - Each part uses this suite's formula: salt_pepper (skimage s&p), pixel_dropout (all
      channels of a pixel), contrast (per-channel mean); brightness 1.2 is a factor
      (see :class:`SeedContrastBrightness`).

    Shapes: x (N,C,H,W) in [0,1], y (N,) -> (N,C,H,W), same dtype.
    """

    #: not part of ``--attack all``: a comparison with the seed paper, not a benchmark shift
    hidden: ClassVar[bool] = True

    def __init__(self, *, sigma: float = 0.1, amount: float = 0.05, eps: float = 0.03,
                 contrast: float = 1.5, brightness: float = 1.2, p: float = 0.1,
                 batch_size: int = 256):
        self._init_severity(None, {"sigma": sigma, "amount": amount, "eps": eps,
                                   "contrast": contrast, "brightness": brightness, "p": p,
                                   "batch_size": batch_size})
        for name, hi in (("sigma", 1.0), ("amount", 1.0), ("eps", 1.0), ("contrast", 10.0),
                         ("brightness", 10.0), ("p", 1.0)):
            check_number(self.name, name, getattr(self, name), 0.0, hi)
        check_int(self.name, "batch_size", self.batch_size)

    def part_shifts(self) -> list[Shift]:
        """The seed's five parts with its fixed parameters, in the order of k."""
        return [GaussianNoise(sigma=self.sigma), SaltPepper(amount=self.amount),
                FGSM(eps=self.eps, batch_size=self.batch_size),
                SeedContrastBrightness(contrast=self.contrast, brightness=self.brightness),
                PixelDropout(p=self.p)]
