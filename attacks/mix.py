"""The seed paper's anomaly set: every image gets one of five corruptions, at one severity."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bench._lazy import nn, torch
from bench.attacks._common import check_int, part_generator, randint
from bench.attacks.base import ANOMALY_MIX, SHIFTS, Shift
from bench.attacks.brightness_contrast import BrightnessContrast
from bench.attacks.fgsm import FGSM
from bench.attacks.gaussian_noise import GaussianNoise
from bench.attacks.pixel_dropout import PixelDropout
from bench.attacks.salt_pepper import SaltPepper

if TYPE_CHECKING:
    from torch import Tensor


@SHIFTS.register("mix")
class Mix(Shift):
    """Anomaly mix: ``k ~ randint(0, 5)`` per image picks one part; each part runs on its subset.

    The seed paper's "anomaly" set (METHODS.md §5): ``k = torch.randint(0, 5, (N,),
    generator=g)`` assigns image i the part ``part_shifts()[k_i]`` of (gaussian_noise,
    salt_pepper, fgsm, brightness_contrast, pixel_dropout). The parts then run in that order,
    each on its own subset (images in ascending index order) with the SAME generator, all at this
    shift's severity: at severity 3 the fgsm part uses eps = 4/255. The seed notebook used
    fixed parameters instead (see ``seed_mix``). Needs the model for its fgsm part, which
    uses the true labels. Shapes: x (N,C,H,W) in [0,1], y (N,) -> (N,C,H,W), same dtype.
    """

    group: ClassVar[str] = ANOMALY_MIX
    needs_model: ClassVar[bool] = True

    def __init__(self, *, severity: int | None = None, batch_size: int = 256,
                 pixel_step: float | None = None):
        self._init_severity(severity, {"batch_size": batch_size, "pixel_step": pixel_step})
        if self.severity is None:
            self.severity = 3
        check_int(self.name, "batch_size", self.batch_size)

    def part_shifts(self) -> list[Shift]:
        """The five part shifts in the order of k, configured at this shift's severity."""
        s = self.severity
        return [GaussianNoise(severity=s), SaltPepper(severity=s),
                FGSM(severity=s, batch_size=self.batch_size, pixel_step=self.pixel_step),
                BrightnessContrast(severity=s),
                PixelDropout(severity=s)]

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator) -> Tensor:
        parts = self.part_shifts()
        k = randint(0, len(parts), x.shape[0], generator)
        out = x.clone()
        for i, part in enumerate(parts):
            idx = torch.nonzero(k == i).squeeze(1)
            if idx.numel() == 0:
                continue  # nothing to draw for an empty part; later parts stay deterministic
            idx_x = idx.to(x.device)
            out[idx_x] = part(x[idx_x], y[idx.to(y.device)], model=model,
                              generator=part_generator(generator, idx, i))
        return out
