"""Maximum softmax probability (Hendrycks & Gimpel, ICLR 2017), scored as its stable logarithm."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from bench._lazy import torch
from bench.detectors.base import Detector, check_flag
from bench.errors import BenchError
from bench.registry import DETECTORS
from bench.views import Views

if TYPE_CHECKING:
    from torch import Tensor


def check_temperature(who: str, t: Any) -> float:
    """``t`` must be a finite positive number; a BenchError says what to type otherwise."""
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
        raise BenchError(f"{who}: temperature t must be a positive number, got t={t!r}; "
                         f"e.g. {who}(t=1.0)")
    return float(t)


def log_msp(logits: Tensor, t: float = 1.0) -> Tensor:
    """``log max_j softmax(z / t)_j`` without saturation: (N, K) logits -> (N,) float64, <= 0.

    ``log MSP = -log1p(sum_{j != m} exp((z_j - z_m) / t))`` with ``m = argmax z`` (one index;
    a logit tied with the maximum contributes exp(0) = 1, giving log(1/2) for two equal tops).
    ``1 - MSP`` is never formed, so images whose MSP rounds to exactly 1.0 in float64 (PGD,
    METHODS.md §5) keep distinct, correctly ordered scores down to exp's underflow (a margin of
    about 745 * t between the top two logits).
    """
    z = logits.to(torch.float64) / t
    top = z.argmax(dim=1, keepdim=True)
    rest = torch.exp(z - z.gather(1, top)).scatter(1, top, 0.0)
    return -torch.log1p(rest.sum(dim=1)) + 0.0  # + 0.0 turns -0.0 into 0.0


def msp(logits: Tensor, t: float = 1.0) -> Tensor:
    """``max_j softmax(z / t)_j`` in float64: (N, K) logits -> (N,) in [1/K, 1]."""
    return torch.softmax(logits.to(torch.float64) / t, dim=1).amax(dim=1)


@DETECTORS.register("msp")
class MSP(Detector):
    """Maximum softmax probability (Hendrycks & Gimpel, ICLR 2017); higher = more ID.

    Score (default, ``log=True``): ``log max_j softmax(z / t)_j``, computed as
    ``-log1p(sum_{j != argmax} exp((z_j - z_max) / t))`` (see :func:`log_msp`); ``exp(score)``
    is the MSP. ``log=False`` returns ``max_j softmax(z / t)_j`` itself.

    Why the log by default: the log is monotone, so AUROC, AUPR and the FPRs equal those of the
    plain MSP wherever the MSP does not saturate, but on confident images (PGD, where float64
    MSP rounds to exactly 1.0 for most images, METHODS.md §5) the plain MSP creates ties that
    the classifier did not make; the log keeps the true order. ``detect95``'s linearly
    interpolated val quantile is taken on the returned score, so it can differ between
    ``log=True`` and ``log=False`` for a shifted score that falls between two val scores.

    ``logits`` (N, K) -> (N,) float64. ``t`` is the softmax temperature (paper: t = 1).
    Nothing to fit: :meth:`score` works before :meth:`fit`.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"logits"})
    row_wise: ClassVar[bool] = True
    differentiable: ClassVar[bool] = True

    def __init__(self, *, t: float = 1.0, log: bool = True):
        self.t = check_temperature("msp", t)
        check_flag("msp", "log", log)
        self.log = log

    def score(self, views: Views) -> Tensor:
        z = self.logits64(views)
        return log_msp(z, self.t) if self.log else msp(z, self.t)

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> "MSP":
        self.fitted_ = True
        return self
