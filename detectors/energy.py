"""Energy score (Liu et al., NeurIPS 2020): the negative free energy of the logits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from bench._lazy import torch
from bench.detectors.base import Detector
from bench.detectors.msp import check_temperature
from bench.registry import DETECTORS
from bench.views import Views

if TYPE_CHECKING:
    from torch import Tensor


@DETECTORS.register("energy")
class Energy(Detector):
    """Energy-based OOD score (Liu et al., "Energy-based Out-of-distribution Detection", 2020).

    Score: ``-E(x; t) = t * logsumexp_j(z_j / t)``, the negative free energy; higher = more ID
    (pytorch-ood's ``EnergyBased`` returns ``E``, the opposite sign). ``torch.logsumexp`` subtracts
    the maximum first, so large logits do not overflow.
    ``logits`` (N, K) -> (N,) float64. ``t`` is the temperature (paper: t = 1).
    Nothing to fit: :meth:`score` works before :meth:`fit`.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"logits"})
    row_wise: ClassVar[bool] = True
    differentiable: ClassVar[bool] = True

    def __init__(self, *, t: float = 1.0):
        self.t = check_temperature("energy", t)

    def score(self, views: Views) -> Tensor:
        return self.t * torch.logsumexp(self.logits64(views) / self.t, dim=1)

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> "Energy":
        self.fitted_ = True
        return self
