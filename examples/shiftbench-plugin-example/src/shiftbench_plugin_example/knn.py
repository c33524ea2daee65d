"""``knn``: deep nearest neighbours (Sun et al., ICML 2022) as a shiftbench detector."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from bench.detectors.base import Detector
from bench.errors import BenchError
from bench.views import Views


def _normalize(f: Tensor) -> Tensor:
    return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)


class KNN(Detector):
    """Minus the distance to the k-th nearest ID fit feature, on L2-normalised features.

    Sun, Ming, Zhu & Li, "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML 2022
    (reference code deeplearning-wisc/knn-ood). With ``z = f / ||f||`` the normalised
    penultimate feature and ``Z`` the normalised fit features (the whole ID training split):
    ``score(x) = -|| z - Z_(k)(z) ||_2``, the distance to the k-th nearest neighbour, k = 50
    by default (the paper's CIFAR-10 value). Higher = more in-distribution.
    The paper searches with faiss; here the search is exact, in float64, on chunks of
    ``chunk_size`` query rows: ``||z - Z_j||^2 = ||z||^2 + ||Z_j||^2 - 2 z.Z_j`` (one matrix
    product per chunk, as ``torch.cdist``'s mm mode; the norms are 1 except for an all-zero
    feature vector, which stays zero), then ``topk`` of the k smallest, so
    memory is ``chunk_size x N_fit`` and never ``N x N_fit``.
    Shapes: features (N, H) -> scores (N,) float64.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"features"})
    chunk_size: ClassVar[int] = 256

    def __init__(self, *, k: int = 50):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise BenchError(f"knn: k must be a positive integer, got {k!r}")
        self.k = k

    def fit(self, fit: Views, val: Views) -> "KNN":
        bank = _normalize(self.features64(fit))
        if bank.shape[0] < self.k:
            raise BenchError(f"knn: k={self.k} exceeds the {bank.shape[0]} fit images; "
                             f"use knn(k={bank.shape[0]}) or fewer")
        self.bank_ = bank
        self.bank_sq_ = bank.square().sum(1)[None, :]
        self.fitted_ = True
        return self

    def score(self, views: Views) -> Tensor:
        self.check_fitted()
        z = _normalize(self.features64(views))
        out = torch.empty(z.shape[0], dtype=torch.float64)
        for start in range(0, z.shape[0], self.chunk_size):
            q = z[start:start + self.chunk_size]
            sq = (q.square().sum(1, keepdim=True) + self.bank_sq_ - 2.0 * q @ self.bank_.T)
            sq.clamp_min_(0.0)  # rounding can make a zero distance slightly negative
            out[start:start + self.chunk_size] = sq.topk(self.k, dim=1, largest=False).values[:, -1]
        return -out.sqrt_()
