"""Contrast then brightness, both at one severity (the seed paper's combined corruption)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bench._lazy import nn, torch
from bench.attacks._common import check_number
from bench.attacks.base import CORRUPTION, SHIFTS, Shift
from bench.attacks.brightness import Brightness
from bench.attacks.brightness import brightness as adjust_brightness
from bench.attacks.contrast import Contrast
from bench.attacks.contrast import contrast as adjust_contrast

if TYPE_CHECKING:
    from torch import Tensor


@SHIFTS.register("brightness_contrast")
class BrightnessContrast(Shift):
    """``brightness(contrast(x, contrast), brightness)``: contrast first, then brightness.

    The seed notebook applies contrast then brightness (METHODS.md §5); each step is the
    corresponding shift of this suite (see ``contrast`` and ``brightness``), clipped after
    each. One severity sets both: contrast c .75 .5 .4 .3 .15 and brightness c
    .05 .1 .15 .2 .3. Either parameter may be given instead; one not given comes from
    severity 3. Deterministic. Shapes: (N,C,H,W) -> (N,C,H,W), same dtype.
    """

    batchable: ClassVar[bool] = True

    group: ClassVar[str] = CORRUPTION
    severity_table: ClassVar[dict[str, tuple[float, ...]]] = {
        "contrast": Contrast.severities, "brightness": Brightness.severities}

    def __init__(self, *, severity: int | None = None, contrast: float | None = None,
                 brightness: float | None = None):
        self._init_severity(severity, {"contrast": contrast, "brightness": brightness})
        check_number(self.name, "contrast", self.contrast, 0.0, 10.0)
        check_number(self.name, "brightness", self.brightness, -1.0, 1.0)

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator) -> Tensor:
        return adjust_brightness(adjust_contrast(x, self.contrast), self.brightness)
