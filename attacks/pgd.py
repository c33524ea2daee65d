"""Projected gradient descent (Madry et al. 2018), L-inf, untargeted, true labels."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bench._lazy import nn, torch
from bench.attacks._common import batched_attack, check_int, check_number, loss_grad, uniform
from bench.attacks.base import ATTACK, SHIFTS, Shift
from bench.attacks.fgsm import EPS_BY_SEVERITY, check_attack_params
from bench.errors import BenchError

if TYPE_CHECKING:
    from torch import Tensor


def resolve_alpha(shift: Shift) -> None:
    """``alpha`` defaults to ``eps / 4`` (torchattacks' 2/255 at eps 8/255); else it must be a
    number in [0, 1]. Shared by the PGD attacks."""
    if shift.alpha is None:
        shift.alpha = shift.eps / 4
    elif isinstance(shift.alpha, bool) or not isinstance(shift.alpha, (int, float)):
        raise BenchError(f"{shift.name}: alpha must be a number, got {shift.alpha!r}")
    check_number(shift.name, "alpha", shift.alpha, 0.0, 1.0)


def drop_default_alpha(shift: Shift, params: dict) -> dict:
    """``params`` without ``alpha`` when it is ``eps / 4``: the default rule, not a choice, so
    short specs leave it out."""
    if params.get("alpha") == shift.eps / 4:
        params = {k: v for k, v in params.items() if k != "alpha"}
    return params


@SHIFTS.register("pgd")
class PGD(Shift):
    """L-inf PGD with random start, as torchattacks ``PGD``, against the deployed classifier.

    Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018;
    update of ``torchattacks/attacks/pgd.py``:
    ``x_0 = clip(x + U(-eps, eps), 0, 1)`` (if ``random_start``), then ``steps`` times
    ``x_{t+1} = clip(x + clip(x_t + alpha * sign(grad L(x_t, y)) - x, -eps, eps), 0, 1)``.
    L is the cross-entropy with the TRUE labels, summed per image (torchattacks: batch mean;
    same sign, and no dependence on ``batch_size``). The random start is drawn with
    ``uniform_(-eps, eps)`` on the CPU from the passed generator for the whole set before
    batching (torchattacks draws it from the global RNG per batch), so it does not depend on
    device or ``batch_size``. Defaults: alpha = eps/4, steps = 10 (torchattacks' defaults
    2/255 and 10 at eps = 8/255). eps by severity 1..5: 1/255 2/255 4/255 8/255 16/255.
    Eval mode, float32, model mode restored. ``successful_only`` as for ``fgsm``.
    Shapes: x (N,C,H,W) in [0,1], y (N,) -> (N,C,H,W), same dtype and device as x.
    """

    group: ClassVar[str] = ATTACK
    needs_model: ClassVar[bool] = True
    severity_param: ClassVar[str] = "eps"
    severities: ClassVar[tuple[float, ...]] = EPS_BY_SEVERITY
    quantised: ClassVar[tuple[str, ...]] = ("eps",)

    def __init__(self, *, severity: int | None = None, eps: float | None = None,
                 alpha: float | None = None, steps: int = 10, random_start: bool = True,
                 batch_size: int = 256, successful_only: bool = False,
                 pixel_step: float | None = None):
        self._init_severity(severity, {"eps": eps, "alpha": alpha, "steps": steps,
                                       "random_start": random_start, "batch_size": batch_size,
                                       "successful_only": successful_only,
                                       "pixel_step": pixel_step})
        check_attack_params(self)
        resolve_alpha(self)
        check_int(self.name, "steps", self.steps)
        if not isinstance(self.random_start, bool):
            raise BenchError(f"{self.name}: random_start must be True or False, "
                             f"got {self.random_start!r}")

    def changed_params(self) -> dict:
        return drop_default_alpha(self, super().changed_params())

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator) -> Tensor:
        assert model is not None  # __call__ checked it
        eps, alpha = float(self.eps), float(self.alpha)
        start = (uniform(x.shape, -eps, eps, generator, device=torch.device("cpu"))
                 if self.random_start else None)

        def step(xb: Tensor, yb: Tensor, rows: slice) -> Tensor:
            xa = xb
            if start is not None:
                xa = (xb + start[rows].to(xb.device)).clamp_(0.0, 1.0)
            for _ in range(self.steps):
                xa = xa + alpha * loss_grad(model, xa, yb).sign()
                xa = (xb + (xa - xb).clamp_(-eps, eps)).clamp_(0.0, 1.0)
            return xa

        return batched_attack(self.name, model, x, y, self.batch_size, step)
