"""``combined``: the seed paper's method, Zhou's detector plus Hendrycks' softmax confidence.

METHODS.md §4 'combined'. The seed paper (Mulé & Shaner, "Enhancing Adversarial Robustness with
Autoencoder-Based Detection"; repository joeduman/Upgrading-Autoencoders) describes this method
but its code never computed it: the formalisation below is **ours**.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar


if TYPE_CHECKING:
    from torch import Tensor
from bench.registry import DETECTORS
from bench.views import Views
from bench.detectors.msp import log_msp  # re-exported: combined's score uses it
from bench.detectors.base import check_param
from bench.detectors.zhou import Zhou


@DETECTORS.register("combined")
class Combined(Zhou):
    """Zhou's detector with softmax confidence added in training and in scoring (seed paper).

    **Our formalisation** of what the seed paper describes (its code never computed it):

    - Training: Zhou's loss (see :class:`~bench.detectors.zhou.Zhou`) plus, on ``z = W v``,
      ``ent * mean H(softmax(z)) + beta * mean(1 - max softmax(z))`` (natural log, t = 1): the
      seed notebook's ``total_loss(..., lambda_reg=0.01, beta=0.1)`` terms. The notebook took
      ``log(p + 1e-8)``; we use the exact ``log_softmax``.
    - Score: ``log s = log s_zhou + log MSP(x)``, where ``s_zhou`` is Zhou's fused score with
      combined's own W, D1, D2 and val Gaussian fits, and MSP comes from the **deployed
      classifier's** logits (t = 1), computed by :func:`log_msp` in float64.

    With ``ent = 0`` and ``beta = 0`` training equals Zhou's (same seed, same data), so the score
    equals zhou's + log MSP. Higher = more in-distribution; (N,) float64.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"features", "labels", "logits", "model"})
    differentiable: ClassVar[bool] = True

    def __init__(self, *, ent: float = 0.01, beta: float = 0.1, lam: float = 1.0,
                 T: float = 100.0, eps: float = 10.0, epochs: int = 30, lr: float = 1e-3,
                 batch_size: int = 128, lr_min: float = 1e-7, device: str = "cpu",
                 seed: int = 0):
        # set before Zhou's __init__, which validates every parameter through _check_params
        self.ent = ent
        self.beta = beta
        super().__init__(lam=lam, T=T, eps=eps, epochs=epochs, lr=lr, batch_size=batch_size,
                         lr_min=lr_min, device=device, seed=seed)

    def _check_params(self) -> None:
        super()._check_params()
        for key, example in (("ent", 0.01), ("beta", 0.1)):
            check_param(self.name, key, getattr(self, key), lo=0, example=example)

    def regularizer(self, z: Tensor) -> Tensor | None:
        """``ent * mean H(softmax(z)) + beta * mean(1 - max softmax(z))``; zero weights add nothing."""
        terms = []
        logp = z.log_softmax(1)
        p = logp.exp()
        if self.ent:
            terms.append(self.ent * -(p * logp).sum(1).mean())
        if self.beta:
            terms.append(self.beta * (1.0 - p.amax(1)).mean())
        return sum(terms[1:], terms[0]) if terms else None

    def score(self, views: Views) -> Tensor:
        """(N,) float64: Zhou's log score (own W, D1, D2, val fits) + log MSP of the classifier."""
        zhou = super().score(views)   # on the CPU; the logits may be on the device
        return zhou + log_msp(self.logits64(views)).to(zhou.device)


__all__ = ["Combined", "log_msp"]
