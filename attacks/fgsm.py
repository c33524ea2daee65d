"""Fast gradient sign method (Goodfellow et al. 2015), L-inf, untargeted, true labels."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bench._lazy import nn, torch
from bench.attacks._common import batched_attack, check_int, check_number, loss_grad
from bench.attacks.base import ATTACK, SHIFTS, Shift
from bench.errors import BenchError

if TYPE_CHECKING:
    from torch import Tensor

#: L-inf budgets by severity 1..5 (pixel units on [0, 1]); shared with pgd
EPS_BY_SEVERITY: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)


def check_attack_params(shift: Shift) -> None:
    """Validate the parameters fgsm and pgd share (eps, batch_size, successful_only)."""
    check_number(shift.name, "eps", shift.eps, 0.0, 1.0)
    check_int(shift.name, "batch_size", shift.batch_size)
    if not isinstance(shift.successful_only, bool):
        raise BenchError(f"{shift.name}: successful_only must be True or False, "
                         f"got {shift.successful_only!r}")


@SHIFTS.register("fgsm")
class FGSM(Shift):
    """FGSM: ``x' = clip(x + eps * sign(grad_x L(x, y)), 0, 1)`` against the deployed classifier.

    Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015;
    same update as torchattacks ``FGSM`` (``torchattacks/attacks/fgsm.py``). L is the
    cross-entropy of the model's logits with the TRUE labels y, summed over the images of a
    batch (torchattacks takes the batch mean; the sign is the same, and with the sum an
    image's gradient does not depend on ``batch_size``). The model runs in eval mode, in
    float32; its mode is restored afterwards. eps by severity 1..5: 1/255 2/255 4/255 8/255
    16/255 for 8-bit data, i.e. 1, 2, 4, 8, 16 quantisation steps (``pixel_step``, given by
    the run from the dataset: 16/255 for the 17-level digits, so eps = 64/255 at severity 3). ``successful_only=True`` asks the runner to score only correctly classified
    images that the attack flips (Lee et al. 2018; METHODS.md §2).
    Shapes: x (N,C,H,W) in [0,1], y (N,) -> (N,C,H,W), same dtype and device as x.
    """

    batchable: ClassVar[bool] = True

    group: ClassVar[str] = ATTACK
    needs_model: ClassVar[bool] = True
    severity_param: ClassVar[str] = "eps"
    severities: ClassVar[tuple[float, ...]] = EPS_BY_SEVERITY
    quantised: ClassVar[tuple[str, ...]] = ("eps",)

    def __init__(self, *, severity: int | None = None, eps: float | None = None,
                 batch_size: int = 256, successful_only: bool = False,
                 pixel_step: float | None = None):
        self._init_severity(severity, {"eps": eps, "batch_size": batch_size,
                                       "successful_only": successful_only,
                                       "pixel_step": pixel_step})
        check_attack_params(self)

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator) -> Tensor:
        assert model is not None  # __call__ checked it

        def step(xb: Tensor, yb: Tensor, rows: slice) -> Tensor:
            return (xb + self.eps * loss_grad(model, xb, yb).sign()).clamp_(0.0, 1.0)

        return batched_attack(self.name, model, x, y, self.batch_size, step)
