"""``adaptive_pgd``: L-inf PGD aimed at the detector as well as the classifier (white box).

Three goals, one per side of a detection cell (docs/adaptive.md):

- ``evade`` (``--attack adaptive_pgd``, the ID test images): misclassified AND accepted by the
  detector at its 95 % val threshold. Selective PGD (default) or orthogonal PGD (Bryniarski,
  Hingun, Pachuca, Wang & Carlini, "Evading Adversarial Example Detection Defenses with
  Orthogonal Projected Gradient Descent", ICLR 2022; v-wangg/OrthogonalPGD ``attack.py``).
- ``raise`` (``--ood-attack adaptive_pgd``, the OOD images): the detector score raised toward
  "in-distribution" (Azizmalayeri, Soltani Moakhar, Zarei, Zohrabi, Manzuri & Rohban, "Your
  Out-of-Distribution Detection Method is Not Robust!", NeurIPS 2022).
- ``lower`` (``side=both``, the ID test images of an OOD cell): the score lowered toward "OOD".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar

from bench import progress
from bench._lazy import F, nn, torch
from bench.attacks._common import check_int, check_number, uniform
from bench.attacks.base import ATTACK, SHIFTS, Shift
from bench.attacks.fgsm import EPS_BY_SEVERITY
from bench.attacks.pgd import drop_default_alpha, resolve_alpha
from bench.errors import BenchError
from bench.views import ieee_fp32_convs

if TYPE_CHECKING:
    from torch import Tensor

#: goals of :meth:`AdaptivePGD.attack`
GOALS = ("evade", "raise", "lower")
#: logit margin by which the true class must lose before the orthogonal/selective attack turns
#: to the detector (v-wangg/OrthogonalPGD adds 0.05 to the true logit for this test)
SWITCH_MARGIN = 0.05

if TYPE_CHECKING:
    #: ``forward(x) -> (logits (B, K) float32, scores (B,) float64)``, both with autograd
    Forward = Callable[[Tensor], tuple[Tensor, Tensor]]


@dataclass
class AdaptiveOutput:
    """Best iterate per image after ``steps`` iterations, and after ``2 * steps`` (convergence)."""

    images: Tensor                 # (N, C, H, W) float32 in [0, 1]: the attacked set
    images_check: Tensor | None    # the same attack continued to 2 * steps (None: check=False)


@SHIFTS.register("adaptive_pgd")
class AdaptivePGD(Shift):
    """L-inf PGD against the detector and the classifier at once, per detector (adaptive, white box).

    Threat model: ``||x' - x||_inf <= eps`` in [0, 1] pixel units, ``x'`` in [0, 1], the attacker
    knows the classifier, the detector (weights, fitted statistics) and its 95 % threshold
    ``tau`` (5th percentile of the ID val scores, as ``detect95``). Every step is
    ``x_{t+1} = clip(x + clip(x_t + alpha * sign(g_t) - x, -eps, eps), 0, 1)`` with, per goal:

    - ``evade`` (ID test images, ``--attack``): ``objective='selective'`` (default) takes
      ``g = grad CE(f(x), y)`` while the true class still wins by more than 0.05 in logits,
      then ``g = grad s(x)`` (Bryniarski et al. 2022, selective PGD); ``'orthogonal'`` makes
      each gradient orthogonal to the other first (their orthogonal PGD). Orthogonal PGD stalls
      on detectors whose score is the classifier's own confidence: for a correctly classified
      image ``log MSP = -CE``, so the projected classifier gradient is zero (docs/adaptive.md).
    - ``raise`` (OOD images, ``--ood-attack``): ``g = grad s(x)``.
    - ``lower`` (ID test images when ``side='both'``): ``g = -grad s(x)``.

    ``s`` is the detector's own score (higher = more ID), differentiated through the classifier
    and the detector (:meth:`Detector.score_images`). Per image the best iterate over all steps
    and ``restarts`` is kept (iterates 0..steps, 0 being the start): for ``evade`` misclassified
    before correctly classified, then the highest score; for ``raise`` the highest score, for
    ``lower`` the lowest. ``check=True`` continues each restart to ``2 * steps`` and also keeps
    that best iterate, for the convergence figure in the record. Random starts
    ``U(-eps, eps)`` are drawn per restart on the CPU from the run's generator for the whole
    set, so images do not depend on ``batch_size`` or device; restart 0 starts where ``pgd``
    with the same seed starts. ``n`` attacks a seeded random subset of ``n`` images of each set
    (cost control). Defaults: ``alpha = eps / 4``, ``steps = 10``, ``restarts = 1``; ``eps`` by
    severity as ``pgd`` (8/255 at severity 4). Float32 images and classifier, float64 scores.
    """

    group: ClassVar[str] = ATTACK
    needs_model: ClassVar[bool] = True
    needs_detector: ClassVar[bool] = True
    #: one attacked set per detector, several passes per step: asked for by name only
    hidden: ClassVar[bool] = True
    severity_param: ClassVar[str] = "eps"
    severities: ClassVar[tuple[float, ...]] = EPS_BY_SEVERITY
    quantised: ClassVar[tuple[str, ...]] = ("eps",)

    def __init__(self, *, severity: int | None = None, eps: float | None = None,
                 alpha: float | None = None, steps: int = 10, restarts: int = 1,
                 random_start: bool = True, objective: str = "selective", side: str = "ood",
                 n: int | None = None, check: bool = True, batch_size: int = 256,
                 pixel_step: float | None = None):
        self._init_severity(severity, {"eps": eps, "alpha": alpha, "steps": steps,
                                       "restarts": restarts, "random_start": random_start,
                                       "objective": objective, "side": side, "n": n,
                                       "check": check, "batch_size": batch_size,
                                       "pixel_step": pixel_step})
        who = self.name
        check_number(who, "eps", self.eps, 0.0, 1.0)
        resolve_alpha(self)
        check_int(who, "steps", self.steps)
        check_int(who, "restarts", self.restarts)
        check_int(who, "batch_size", self.batch_size)
        if self.n is not None:
            check_int(who, "n", self.n)
        for key in ("random_start", "check"):
            if not isinstance(getattr(self, key), bool):
                raise BenchError(f"{who}: {key} must be True or False, got {getattr(self, key)!r}")
        if self.restarts > 1 and not self.random_start:
            raise BenchError(f"{who}: restarts={self.restarts} without random_start repeat the "
                             f"same attack; drop restarts or keep random_start=True")
        if self.objective not in ("orthogonal", "selective"):
            raise BenchError(f"{who}: objective must be 'orthogonal' or 'selective', "
                             f"got {self.objective!r}")
        if self.side not in ("ood", "both"):
            raise BenchError(f"{who}: side must be 'ood' (OOD images only) or 'both' (also the "
                             f"ID images, toward OOD), got {self.side!r}")

    def changed_params(self) -> dict:
        return drop_default_alpha(self, super().changed_params())

    def reference_spec(self) -> str:
        """The non-adaptive ``pgd`` with the same budget, steps and start (the honesty check)."""
        from bench.registry import Spec

        params = drop_default_alpha(self, {
            "eps": self.eps, "steps": self.steps, "random_start": self.random_start,
            "batch_size": self.batch_size, "alpha": self.alpha})
        return str(Spec("pgd", None, params))

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator) -> Tensor:
        raise BenchError(f"{self.spec()} aims at a detector: it runs inside `bench run` (one "
                         f"attacked set per detector), not as a plain shift")

    # ----------------------------------------------------------------------------------------
    def attack(self, x: Tensor, y: Tensor | None, *, forward: Forward, goal: str,
               generator: torch.Generator, device: torch.device) -> AdaptiveOutput:
        """Attack the float images ``x`` (N, C, H, W) in [0, 1] (true labels ``y`` for ``evade``).

        ``forward(x)`` returns the classifier's logits and the detector's scores of a batch, with
        autograd. Returns the best iterates (see the class doc), float32, on the CPU."""
        if goal not in GOALS:
            raise ValueError(f"goal must be one of {GOALS}, got {goal!r}")
        if goal == "evade" and y is None:
            raise BenchError(f"{self.name}: evading detection needs the true labels")
        x = x.detach().to(torch.float32).cpu()
        eps, alpha = float(self.eps), float(self.alpha)
        total = 2 * self.steps if self.check else self.steps
        starts = [uniform(x.shape, -eps, eps, generator, device=torch.device("cpu"))
                  if self.random_start else None for _ in range(self.restarts)]
        best = x.clone()
        best_check = x.clone() if self.check else None
        with torch.inference_mode(False), torch.enable_grad(), ieee_fp32_convs(device), \
                progress.task(f"{self.name} ({goal})", total=x.shape[0]) as bar:
            for start in range(0, x.shape[0], self.batch_size):
                rows = slice(start, start + self.batch_size)
                xb = x[rows].to(device)
                yb = y[rows].to(device, torch.long) if y is not None else None
                track = _Best(goal)
                track_check = _Best(goal) if self.check else None
                for r_start in starts:
                    xa = xb.clone()
                    if r_start is not None:
                        xa = (xb + r_start[rows].to(device)).clamp_(0.0, 1.0)
                    for t in range(total + 1):
                        xa = xa.detach().requires_grad_(True)
                        logits, s = forward(xa)
                        s = s.to(device)
                        wrong = (logits.argmax(1) != yb) if yb is not None else None
                        if t <= self.steps:
                            track.update(xa.detach(), s.detach(), wrong)
                        if track_check is not None:
                            track_check.update(xa.detach(), s.detach(), wrong)
                        if t == total:
                            break
                        g = self._direction(goal, xa, logits, s, yb)
                        xa = xa.detach() + alpha * g.sign()
                        xa = (xb + (xa - xb).clamp_(-eps, eps)).clamp_(0.0, 1.0)
                best[rows] = track.images.cpu()
                if track_check is not None:
                    best_check[rows] = track_check.images.cpu()
                bar.advance(xb.shape[0])
        return AdaptiveOutput(best, best_check)

    def _direction(self, goal: str, xa: Tensor, logits: Tensor, s: Tensor,
                   y: Tensor | None) -> Tensor:
        """The ascent direction at ``xa`` (before ``sign``): see the class doc."""
        if goal != "evade":
            (g,) = torch.autograd.grad(s.sum(), xa)
            return g if goal == "raise" else -g
        assert y is not None
        ce = F.cross_entropy(logits.float(), y, reduction="none")
        # the classifier loses once another logit beats the true one by the margin
        margin = logits.detach().clone()
        margin[torch.arange(y.shape[0], device=y.device), y] += SWITCH_MARGIN
        fooled = margin.argmax(1) != y
        if self.objective == "selective":
            # images are independent (eval mode): one backward of the per-image choice
            (g,) = torch.autograd.grad(torch.where(fooled, s.to(ce.dtype), ce).sum(), xa)
            return g
        g_cls, = torch.autograd.grad(ce.sum(), xa, retain_graph=True)
        g_det, = torch.autograd.grad(s.sum(), xa)
        g_cls, g_det = _orthogonal(g_cls, g_det), _orthogonal(g_det, g_cls)
        return torch.where(fooled.view(-1, *([1] * (xa.ndim - 1))), g_det.to(g_cls.dtype), g_cls)


def _orthogonal(g: Tensor, other: Tensor) -> Tensor:
    """``g`` minus its projection on ``other``, per image (float64 inner products)."""
    a, b = g.flatten(1).double(), other.flatten(1).double()
    coef = (a * b).sum(1) / ((b * b).sum(1) + 1e-20)
    return (a - coef[:, None] * b).view_as(g).to(g.dtype)


class _Best:
    """Best iterate per image so far, by the goal's order (see :class:`AdaptivePGD`)."""

    def __init__(self, goal: str):
        self.goal = goal
        self.images: Tensor | None = None    # the first update sets all three
        self.score: Tensor | None = None
        self.wrong: Tensor | None = None

    def update(self, x: Tensor, s: Tensor, wrong: Tensor | None) -> None:
        s = s.to(torch.float64)
        if self.images is None:
            self.images, self.score = x.clone(), s.clone()
            self.wrong = None if wrong is None else wrong.clone()
            return
        if self.goal == "lower":
            better = s < self.score
        else:
            better = s > self.score
        if self.goal == "evade":
            assert wrong is not None
            better = (wrong & ~self.wrong) | ((wrong == self.wrong) & better)
            self.wrong = torch.where(better, wrong, self.wrong)
        self.score = torch.where(better, s, self.score)
        self.images = torch.where(better.view(-1, *([1] * (x.ndim - 1))), x, self.images)


__all__ = ["AdaptivePGD", "AdaptiveOutput", "GOALS"]
