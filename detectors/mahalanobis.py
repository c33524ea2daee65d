"""Mahalanobis distance to the nearest class mean (Lee et al., NeurIPS 2018), penultimate layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from bench._lazy import torch
from bench.detectors.base import Detector
from bench.errors import BenchError
from bench.registry import DETECTORS
from bench.views import Views

if TYPE_CHECKING:
    from torch import Tensor

#: rows per chunk are chosen so a chunk holds about this many float64 numbers (32 MiB)
_CHUNK_ELEMS = 1 << 22


def _rows(width: int) -> int:
    """Rows per chunk for chunks ``width`` numbers wide."""
    return max(1, _CHUNK_ELEMS // max(1, width))


@DETECTORS.register("mahalanobis")
class Mahalanobis(Detector):
    """Minus the Mahalanobis distance to the nearest class mean, tied covariance (Lee et al. 2018).

    Lee, Lee, Lee & Shin, "A Simple Unified Framework for Detecting Out-of-Distribution Samples
    and Adversarial Attacks", NeurIPS 2018: class-conditional Gaussians with a tied covariance.
    Fit, on the ID **fit** views only (features and true labels; val is not used):
    ``mu_c = mean of f_i over y_i = c``, ``Sigma = 1/N sum_i (f_i - mu_{y_i})(f_i - mu_{y_i})^T``,
    ``P = pinv(Sigma)`` (``torch.linalg.pinv(..., hermitian=True)``, float64).
    Score: ``-min_c (f - mu_c)^T P (f - mu_c)``; higher = more ID. Shapes: features (N, H) ->
    scores (N,) float64; labels (N,) int for the fit set.

    As OpenOOD's MDS: penultimate layer only, no input pre-processing, no feature ensemble
    (the paper's full method adds both, tuned on OOD or adversarial data). The pseudo-inverse
    (OpenOOD uses ``numpy.linalg.pinv``) keeps a rank-deficient Sigma usable; pytorch-ood instead
    inverts the un-normalised scatter matrix plus a 1e-6 ridge in float32, and returns half the
    distance with the opposite sign. Both give the same ranking up to float32 rounding.

    Classes with no fit image are ignored (no mean to measure a distance to), so the minimum
    runs over the classes present in the fit set. Distances are computed chunk by chunk as
    ``q(f) - 2 f^T P mu_c + q(mu_c)`` around the mean of the class means (translation does not
    change a distance, and centring limits cancellation): an (N, C) matrix, never (N, N).
    """

    needs: ClassVar[frozenset[str]] = frozenset({"features", "labels"})
    row_wise: ClassVar[bool] = True
    differentiable: ClassVar[bool] = True

    def __init__(self) -> None:
        pass

    def fit(self, fit: Views, val: Views | None = None) -> "Mahalanobis":
        if fit.features is None:
            raise RuntimeError(f"views {fit.name!r} carry no features")
        feats = fit.features          # float64, or float32 memory-mapped: cast per chunk
        if fit.labels is None:
            raise BenchError(f"mahalanobis needs the true labels of the fit set {fit.name!r}; "
                             f"load the dataset with labels")
        y = torch.as_tensor(fit.labels).reshape(-1).long().cpu()
        if feats.ndim != 2 or feats.shape[0] == 0:
            raise BenchError(f"mahalanobis needs fit features of shape (N, H) with N > 0, "
                             f"got {tuple(feats.shape)}")
        if y.shape[0] != feats.shape[0]:
            raise BenchError(f"mahalanobis: {feats.shape[0]} fit features but {y.shape[0]} "
                             f"labels")
        if bool((y < 0).any()):
            raise BenchError("mahalanobis: fit labels must be class indices >= 0")
        n, h = int(feats.shape[0]), int(feats.shape[1])
        step = _rows(h)

        def chunks():
            for s in range(0, n, step):
                yield s, feats[s:s + step].to("cpu", torch.float64)

        classes, code = torch.unique(y, return_inverse=True)   # present classes only
        counts = torch.bincount(code, minlength=classes.numel()).to(torch.float64)
        means = torch.zeros(classes.numel(), h, dtype=torch.float64)
        for s, f in chunks():
            means.index_add_(0, code[s:s + step], f)
        means.div_(counts[:, None])
        sigma = torch.zeros(h, h, dtype=torch.float64)
        for s, f in chunks():
            r = f - means[code[s:s + step]]
            sigma += r.T @ r
        sigma /= n
        self.classes_ = classes
        self.means_ = means
        self.precision_ = torch.linalg.pinv(sigma, hermitian=True)
        self.fitted_ = True
        return self

    def distances(self, features: Tensor) -> Tensor:
        """Squared Mahalanobis distances to every class mean: (N, H) -> (N, C) float64,
        differentiable with respect to ``features``."""
        self.check_fitted()
        f = features.to("cpu", torch.float64)
        h = self.means_.shape[1]
        if f.ndim != 2 or f.shape[1] != h:
            raise BenchError(f"mahalanobis was fit on {h}-dim features but got shape "
                             f"{tuple(f.shape)}; fit and score with the same model")
        p = self.precision_
        origin = self.means_.mean(dim=0)
        mu = self.means_ - origin
        mu_p = mu @ p                                   # (C, H)
        q_mu = (mu_p * mu).sum(dim=1)                   # (C,)
        out = []
        step = _rows(max(h, mu.shape[0]))
        for s in range(0, f.shape[0], step):
            x = f[s:s + step] - origin
            xp = x @ p
            d = (xp * x).sum(dim=1, keepdim=True) - 2.0 * (x @ mu_p.T) + q_mu
            # P is positive semi-definite: a negative value is rounding only
            out.append(d.clamp_min(0.0))
        # chunks are concatenated (not written into a buffer) so gradients flow (score_images)
        return torch.cat(out) if out else torch.empty(0, mu.shape[0], dtype=torch.float64)

    def score(self, views: Views) -> Tensor:
        return -self.distances(self.features64(views)).amin(dim=1)

    def state(self) -> dict[str, Any]:
        self.check_fitted()
        return {"classes": self.classes_, "means": self.means_, "precision": self.precision_}

    def load_state(self, state: dict[str, Any]) -> "Mahalanobis":
        self.classes_ = torch.as_tensor(state["classes"]).long()
        self.means_ = torch.as_tensor(state["means"]).to(torch.float64)
        self.precision_ = torch.as_tensor(state["precision"]).to(torch.float64)
        self.fitted_ = True
        return self
