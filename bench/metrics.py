"""Detector and classifier metrics: pure functions of score arrays, in float64 (METHODS.md §2).

Conventions (METHODS.md §0): a detector's score is **higher = more in-distribution**; ``s_in``
holds the scores of the ID test images (the positives, label 1), ``s_out`` those of the shifted
images (the negatives, label 0), ``s_val`` those of the held-out ID val images. Every metric is a
fraction in [0, 1]. Ties are handled as scikit-learn handles them: tied scores enter a curve at
the same threshold, and AUROC counts a tie between an ID and a shifted image as one half.

======================  ===============================================================  =======
key                     definition                                                       better
======================  ===============================================================  =======
``auroc``               ``roc_auc_score(y, s)``                                          higher
``aupr_in``             ``average_precision_score(y, s)`` (ID positive)                  higher
``aupr_out``            ``average_precision_score(1 - y, -s)`` (shifted positive)        higher
``aupr_in_trapz``       ``auc(recall, precision)`` of ``precision_recall_curve(y, s)``   higher
``aupr_out_trapz``      the same with ``(1 - y, -s)`` (pytorch-ood / OpenOOD AUPR)       higher
``fpr95``               FPR at the first threshold with TPR >= 0.95, ID positive         lower
``fpr95_oodpos``        the same with the shifted images positive (pytorch-ood FPR95TPR) lower
``detect95``            ``mean(s_out < tau)``, ``tau = numpy.quantile(s_val, 0.05)``     higher
``id_accept95``         ``mean(s_in >= tau)`` (about 0.95 when val and test agree)       —
======================  ===============================================================  =======

The classifier under a shift gets ``acc`` (top-1) and ``ece`` (15 equal-width bins of the
max-softmax confidence, Guo et al. 2017). See docs/metrics.md for worked examples.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal, Sequence, Union

import numpy as np

from bench.errors import BenchError

if TYPE_CHECKING:
    from torch import Tensor

# torch and scikit-learn are imported where they are used: bench.results and the leaderboard
# read the metric table below, and loading a folder of records should not pay for either
ArrayLike = Union[np.ndarray, "Tensor", list, tuple]


# --------------------------------------------------------------------------------------------
# the metric table: every other list of metric keys, labels or directions is derived from it
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """One number of a result record: its key, names, direction and how it is reported.

    ``label`` heads narrow columns (``bench run``'s table), ``title`` names it in the
    leaderboard. ``direction`` is ``"higher"`` or ``"lower"`` (is better), or ``"neither"``
    for numbers that describe the run rather than rank detectors (``id_accept95`` should be
    about 0.95; ``attack_success`` measures the attack). ``bootstrappable``: the record holds
    a bootstrap 95 % interval for it. ``kind``: ``"detector"`` (a function of the scores),
    ``"classifier"`` (the classifier on the shifted set) or ``"failure"`` (the score against
    the classifier's correctness, a record's ``failure`` block). ``summary``: a column of ``bench
    run``'s table. ``secondary``: kept in records for comparison with other libraries only.
    """

    key: str
    label: str
    title: str
    direction: Literal["higher", "lower", "neither"]
    bootstrappable: bool = False
    kind: Literal["detector", "classifier", "failure"] = "detector"
    summary: bool = False
    secondary: bool = False
    #: gets a leaderboard matrix and ranking (``--metric``); False for numbers that exist only
    #: for some columns (``undetected_success``: ID-side shifts), shown in their own tables
    ranked: bool = True

    @property
    def higher_is_better(self) -> bool:
        """False only for lower-is-better metrics (a metric without direction sorts high first)."""
        return self.direction != "lower"


METRIC_TABLE: tuple[Metric, ...] = (
    Metric("auroc", "AUROC", "AUROC", "higher", bootstrappable=True, summary=True),
    Metric("aupr_in", "AUPRin", "AUPR-In", "higher", bootstrappable=True, summary=True),
    Metric("aupr_out", "AUPRout", "AUPR-Out", "higher", bootstrappable=True, summary=True),
    Metric("fpr95", "FPR95", "FPR@95TPR (ID+)", "lower", bootstrappable=True, summary=True),
    Metric("fpr95_oodpos", "FPR95o", "FPR@95TPR (OOD+)", "lower", bootstrappable=True),
    Metric("detect95", "Det95", "Detected @95% val accept", "higher", summary=True),
    Metric("id_accept95", "IDacc95", "ID accepted @95% val", "neither"),
    Metric("undetected_success", "Undet95", "misclassified and accepted @95% val", "lower",
           ranked=False),
    Metric("aupr_in_trapz", "AUPRin~", "AUPR-In (trapezoid)", "higher", secondary=True),
    Metric("aupr_out_trapz", "AUPRout~", "AUPR-Out (trapezoid)", "higher", secondary=True),
    Metric("acc", "acc", "accuracy", "higher", kind="classifier", summary=True),
    Metric("ece", "ECE", "ECE", "lower", kind="classifier", summary=True),
    Metric("attack_success", "ASR", "attack success", "neither", kind="classifier"),
    Metric("fd_auroc", "FD-AUROC", "failure detection AUROC (correct+)", "higher",
           kind="failure"),
    Metric("aurc", "AURC", "area under risk-coverage", "lower", kind="failure"),
    Metric("e_aurc", "E-AURC", "excess AURC", "lower", kind="failure"),
    Metric("risk80", "risk@80", "selective risk at 80% coverage", "lower", kind="failure"),
    Metric("risk90", "risk@90", "selective risk at 90% coverage", "lower", kind="failure"),
    Metric("risk95", "risk@95", "selective risk at 95% coverage", "lower", kind="failure"),
)
#: key -> :class:`Metric`
METRIC_SPECS: dict[str, Metric] = {m.key: m for m in METRIC_TABLE}
#: the detector metrics of a record's ``metrics`` (validated, DataFrame columns), in order
DETECTOR_METRICS: tuple[str, ...] = tuple(m.key for m in METRIC_TABLE
                                          if m.kind == "detector" and not m.secondary)
#: the classifier numbers of a record's ``classifier``
CLASSIFIER_METRICS: tuple[str, ...] = tuple(m.key for m in METRIC_TABLE if m.kind == "classifier")
#: the detector metrics that get a bootstrap interval (``metrics_ci``), in table order
BOOTSTRAPPED: tuple[str, ...] = tuple(m.key for m in METRIC_TABLE
                                      if m.kind == "detector" and m.bootstrappable)
#: metrics that rank detectors (leaderboard matrices, ``--metric``)
RANKED: tuple[str, ...] = tuple(k for k in DETECTOR_METRICS
                                if METRIC_SPECS[k].direction != "neither" and METRIC_SPECS[k].ranked)
LOWER_IS_BETTER: frozenset[str] = frozenset(m.key for m in METRIC_TABLE if m.direction == "lower")
#: failure-detection numbers of a record's ``failure`` block
FAILURE_METRICS: tuple[str, ...] = tuple(m.key for m in METRIC_TABLE if m.kind == "failure")


#: fewest scores per side (ID test, shifted) for a cell's bootstrap interval; smaller cells are
#: marked ``small_set`` (docs/metrics.md explains the choice)
MIN_SET_SIZE = 30


def small_set(n_in: int, n_out: int) -> bool:
    """Whether a cell is too small for a confident interval: either side < :data:`MIN_SET_SIZE`.

    ``n_in``: ID test images scored, ``n_out``: shifted images scored (after any
    ``successful_only`` restriction). Records of such cells carry ``small_set: true`` and the
    leaderboard marks their numbers; :func:`bench.metrics.bootstrap_ci` returns ``(nan, nan)``.
    """
    return int(n_in) < MIN_SET_SIZE or int(n_out) < MIN_SET_SIZE


def higher_is_better(metric: str) -> bool:
    """Direction of ``metric``: False for lower-is-better ones (``fpr95*``, ``ece``)."""
    spec = METRIC_SPECS.get(metric)
    return spec is None or spec.higher_is_better


def _is_tensor(x: object) -> bool:
    torch = sys.modules.get("torch")  # no tensor can exist before torch is imported
    return torch is not None and isinstance(x, torch.Tensor)

#: TPR at which fpr95 / fpr95_oodpos are read, and the val quantile that sets detect95's threshold
TPR = 0.95
VAL_QUANTILE = 0.05
#: ECE bins (Guo et al. 2017 use 15)
N_BINS = 15


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def as_scores(x: ArrayLike, what: str = "scores") -> np.ndarray:
    """A 1-D float64 numpy copy of ``x``; BenchError (one line) when empty or not finite."""
    if _is_tensor(x):
        import torch

        x = x.detach().to("cpu", torch.float64).numpy()
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise BenchError(f"no {what} to score: the set is empty")
    finite = np.isfinite(a)
    if not finite.all():
        n_nan = int(np.isnan(a).sum())
        kind = "NaN" if n_nan else "inf"
        raise BenchError(f"scores of {what} contain {kind} ({int((~finite).sum())} of {a.size}); "
                         f"the detector produced invalid scores")
    return a


def _pair(s_in: ArrayLike, s_out: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    return as_scores(s_in, "ID test images"), as_scores(s_out, "shifted images")


def _labels_scores(s_in: np.ndarray, s_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y = 1 for ID, 0 for shifted; scores concatenated in the same order."""
    y = np.concatenate([np.ones(s_in.size, dtype=np.int64), np.zeros(s_out.size, dtype=np.int64)])
    return y, np.concatenate([s_in, s_out])


# --------------------------------------------------------------------------------------------
# ranking metrics
# --------------------------------------------------------------------------------------------
def auroc(s_in: ArrayLike, s_out: ArrayLike) -> float:
    """P(score of an ID image > score of a shifted image), ties counted 1/2; 0.5 = chance."""
    from sklearn.metrics import roc_auc_score

    y, s = _labels_scores(*_pair(s_in, s_out))
    return float(roc_auc_score(y, s))


def aupr_in(s_in: ArrayLike, s_out: ArrayLike) -> float:
    """Average precision with ID images positive: ``sum_k (R_k - R_{k-1}) P_k``."""
    from sklearn.metrics import average_precision_score

    y, s = _labels_scores(*_pair(s_in, s_out))
    return float(average_precision_score(y, s))


def aupr_out(s_in: ArrayLike, s_out: ArrayLike) -> float:
    """Average precision with shifted images positive and ``-s`` as their score."""
    from sklearn.metrics import average_precision_score

    y, s = _labels_scores(*_pair(s_in, s_out))
    return float(average_precision_score(1 - y, -s))


def aupr_in_trapz(s_in: ArrayLike, s_out: ArrayLike) -> float:
    """Trapezoid-rule area under the ID-positive PR curve, as pytorch-ood and OpenOOD report it.

    Linear interpolation between PR points is optimistic (Davis & Goadrich 2006); the record
    keeps it beside :func:`aupr_in` only so numbers can be compared with those libraries.
    """
    from sklearn.metrics import auc, precision_recall_curve

    y, s = _labels_scores(*_pair(s_in, s_out))
    precision, recall, _ = precision_recall_curve(y, s)
    return float(auc(recall, precision))


def aupr_out_trapz(s_in: ArrayLike, s_out: ArrayLike) -> float:
    """Trapezoid-rule area under the shifted-positive PR curve (pytorch-ood ``AUPR-OUT``)."""
    from sklearn.metrics import auc, precision_recall_curve

    y, s = _labels_scores(*_pair(s_in, s_out))
    precision, recall, _ = precision_recall_curve(1 - y, -s)
    return float(auc(recall, precision))


def _fpr_at_tpr(y: np.ndarray, s: np.ndarray, tpr: float) -> float:
    from sklearn.metrics import roc_curve

    # every unique score is a threshold (drop_intermediate=False), so ties behave as in
    # pytorch-ood; the default would drop points and can move the first point with TPR >= tpr
    fpr_curve, tpr_curve, _ = roc_curve(y, s, drop_intermediate=False)
    k = int(np.searchsorted(tpr_curve, tpr, side="left"))
    return float(fpr_curve[k])


def fpr95(s_in: ArrayLike, s_out: ArrayLike, tpr: float = TPR) -> float:
    """Fraction of shifted images accepted when ``tpr`` (95 %) of ID test images are accepted.

    From ``roc_curve(y, s, drop_intermediate=False)`` with ID positive: the FPR at the first
    threshold (scanning from the highest score down) where TPR >= ``tpr``. Lower is better.
    """
    y, s = _labels_scores(*_pair(s_in, s_out))
    return _fpr_at_tpr(y, s, tpr)


def fpr95_oodpos(s_in: ArrayLike, s_out: ArrayLike, tpr: float = TPR) -> float:
    """Fraction of ID test images rejected when ``tpr`` (95 %) of shifted images are caught.

    The OOD-positive FPR@95TPR of pytorch-ood (``FPR95TPR``) and OpenOOD v1.5: the same rule
    as :func:`fpr95` on ``roc_curve(1 - y, -s, drop_intermediate=False)``. Lower is better.
    """
    y, s = _labels_scores(*_pair(s_in, s_out))
    return _fpr_at_tpr(1 - y, -s, tpr)


def threshold95(s_val: ArrayLike, q: float = VAL_QUANTILE) -> float:
    """``tau = numpy.quantile(s_val, 0.05)`` (linear interpolation): accepts ~95 % of ID val."""
    return float(np.quantile(as_scores(s_val, "ID val images"), q))


def detect95(s_out: ArrayLike, s_val: ArrayLike) -> float:
    """Fraction of shifted images rejected, ``mean(s_out < tau)``, at the val threshold ``tau``."""
    tau = threshold95(s_val)
    return float(np.mean(as_scores(s_out, "shifted images") < tau))


def id_accept95(s_in: ArrayLike, s_val: ArrayLike) -> float:
    """Fraction of ID test images accepted, ``mean(s_in >= tau)``, at the val threshold ``tau``."""
    tau = threshold95(s_val)
    return float(np.mean(as_scores(s_in, "ID test images") >= tau))


def undetected_success(s_out: ArrayLike, wrong: ArrayLike, tau: float) -> float:
    """Fraction of shifted images the classifier gets wrong AND the detector accepts:
    ``mean(wrong & (s_out >= tau))`` over all shifted images, ``tau`` = :func:`threshold95`.

    What an attacker (or a deployment) cares about: errors that pass the detector. Recorded for
    every cell of a shift of the ID test images (``metrics.undetected_success``; null for OOD
    sets, which have no labels). Lower is better for the detector."""
    s = as_scores(s_out, "shifted images")
    w = np.asarray(wrong, dtype=bool).reshape(-1)
    if w.shape != s.shape:
        raise ValueError(f"undetected_success: {s.shape[0]} scores but {w.shape[0]} flags")
    return float(np.mean(w & (s >= tau)))


#: the (s_in, s_out) metrics by record key
PAIR_METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "auroc": auroc, "aupr_in": aupr_in, "aupr_out": aupr_out, "fpr95": fpr95,
    "fpr95_oodpos": fpr95_oodpos, "aupr_in_trapz": aupr_in_trapz,
    "aupr_out_trapz": aupr_out_trapz,
}


def detector_metrics(s_in: ArrayLike, s_out: ArrayLike, s_val: ArrayLike | None,
                     wrong_out: ArrayLike | None = None) -> dict[str, float | None]:
    """Every detector metric of one (detector, shift) cell, keyed as in the result records.

    ``s_in`` (n_in,), ``s_out`` (n_out,), ``s_val`` (n_val,): scores, higher = more ID.
    ``s_val=None`` leaves ``detect95``, ``id_accept95`` and ``undetected_success`` as None (no
    threshold to fit). ``wrong_out`` (n_out,) bool: the classifier is wrong on those shifted
    images (shifts of the ID test images; None for OOD sets): gives ``undetected_success``.
    """
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

    a, b = _pair(s_in, s_out)
    y, s = _labels_scores(a, b)
    out: dict[str, float | None] = {
        "auroc": float(roc_auc_score(y, s)),
        "aupr_in": float(average_precision_score(y, s)),
        "aupr_out": float(average_precision_score(1 - y, -s)),
        "fpr95": _fpr_at_tpr(y, s, TPR),
        "fpr95_oodpos": _fpr_at_tpr(1 - y, -s, TPR),
        "detect95": None,
        "id_accept95": None,
        "undetected_success": None,
    }
    if s_val is not None:
        tau = threshold95(s_val)
        out["detect95"] = float(np.mean(b < tau))
        out["id_accept95"] = float(np.mean(a >= tau))
        if wrong_out is not None:
            out["undetected_success"] = undetected_success(b, wrong_out, tau)
    p, r, _ = precision_recall_curve(y, s)
    out["aupr_in_trapz"] = float(auc(r, p))
    p, r, _ = precision_recall_curve(1 - y, -s)
    out["aupr_out_trapz"] = float(auc(r, p))
    return out


def roc_points(s_in: ArrayLike, s_out: ArrayLike,
               max_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of the ID-positive ROC curve with at most ``max_points`` points, for plots.

    Collinear points are dropped first (``drop_intermediate=True`` changes no plotted line);
    if more remain, evenly spaced points along the curve are kept. Always starts at (0, 0) and
    ends at (1, 1).
    """
    from sklearn.metrics import roc_curve

    if max_points < 2:
        raise BenchError(f"roc_points needs max_points >= 2, got {max_points}")
    y, s = _labels_scores(*_pair(s_in, s_out))
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=True)
    if fpr.size > max_points:
        keep = np.unique(np.round(np.linspace(0, fpr.size - 1, max_points)).astype(np.int64))
        fpr, tpr = fpr[keep], tpr[keep]
    return fpr.astype(np.float64), tpr.astype(np.float64)


# --------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------
def _weighted_rank_metrics(names: Sequence[str], c_in: np.ndarray,
                           c_out: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric of ``names`` for B resamples at once, from counts per unique score.

    ``c_in`` (B, U) / ``c_out`` (B, U): how often each of the U unique scores (ascending, the
    union of ``s_in`` and ``s_out``) occurs among the ID / shifted images of each resample. The
    curves are scikit-learn's (one point per unique score), so at unit counts every value equals
    the corresponding function above. Cumulative counts are computed once per direction and
    shared by the metrics that need them. Returns ``{name: (B,) float64}``.
    """
    n_in = c_in.sum(1, dtype=np.float64)
    n_out = c_out.sum(1, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    sides: dict[bool, tuple[np.ndarray, ...]] = {}

    def side(id_positive: bool) -> tuple[np.ndarray, ...]:
        if id_positive not in sides:   # ID positive: thresholds from the top score down
            if id_positive:
                new_pos = c_in[:, ::-1]
                tps, fps = np.cumsum(new_pos, 1), np.cumsum(c_out[:, ::-1], 1)
                sides[True] = (tps, fps, n_in, n_out, new_pos)
            else:                      # shifted positive, score -s: from the bottom up
                sides[False] = (np.cumsum(c_out, 1), np.cumsum(c_in, 1), n_out, n_in, c_out)
        return sides[id_positive]

    for name in names:
        if name == "auroc":
            below = np.cumsum(c_out, 1) - c_out      # shifted images strictly below each score
            out[name] = (c_in * (below + 0.5 * c_out)).sum(1) / (n_in * n_out)
            continue
        if name not in ("fpr95", "aupr_in", "fpr95_oodpos", "aupr_out"):
            raise KeyError(name)  # pragma: no cover - guarded by the caller
        tps, fps, n_pos, n_neg, new_pos = side(name in ("fpr95", "aupr_in"))
        if name.startswith("fpr95"):
            # first threshold with TPR >= 0.95 (same float comparison as roc_curve's tps / tps[-1])
            k = np.argmax(tps / n_pos[:, None] >= TPR, axis=1)
            out[name] = np.take_along_axis(fps, k[:, None], 1)[:, 0] / n_neg
        else:
            precision = np.divide(tps, tps + fps, out=np.zeros(tps.shape),
                                  where=(tps + fps) > 0)
            out[name] = (new_pos * precision).sum(1) / n_pos
    return out


#: metrics that :func:`bootstrap_ci` computes for many resamples at once (what
#: :func:`_weighted_rank_metrics` implements; it covers :data:`BOOTSTRAPPED`)
VECTORISED = ("auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_oodpos")


def bootstrap_ci(s_in: ArrayLike, s_out: ArrayLike,
                 metric: str | Callable[[np.ndarray, np.ndarray], float] = "auroc",
                 n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                 max_cells: int = 2_000_000, *, paired: bool = False) -> tuple[float, float]:
    """Percentile bootstrap interval (default 95 %) of a metric over ID and shifted images.

    Unpaired (default): each resample draws ``n_in`` ID and ``n_out`` shifted scores with
    replacement, separately (a stratified bootstrap: n_in and n_out, which AUPR depends on,
    stay fixed); per chunk of resamples the ID indices are drawn first, then the shifted ones.
    ``paired=True``: ``s_in[i]`` and ``s_out[i]`` are the same image i, clean and shifted (a
    corruption or attack of the ID test set), so ``n_in == n_out`` is required; each resample
    draws one set of image indices ``idx`` (``rng.integers(0, n, (m, n))`` per chunk of m
    resamples) and takes ``s_in[idx]`` and ``s_out[idx]``, keeping the correlation between an
    image's two scores, which the unpaired bootstrap breaks.

    ``metric`` is a key of :data:`PAIR_METRICS` or a callable ``f(s_in, s_out) -> float``. The
    metrics in :data:`VECTORISED` are computed for many resamples at once from per-unique-score
    counts (chunks of at most ``max_cells`` counts); others call the function once per
    resample. Randomness comes from ``numpy.random.default_rng(seed)`` only. Returns
    ``(low, high)``; ``(nan, nan)`` when either side has fewer than :data:`MIN_SET_SIZE` scores
    (:func:`small_set`): no interval is claimed there (records store it as nulls).
    """
    key = metric if isinstance(metric, str) else "metric"
    return bootstrap_cis(s_in, s_out, {key: metric}, n_boot=n_boot, seed=seed, level=level,
                         max_cells=max_cells, paired=paired)[key]


def bootstrap_cis(s_in: ArrayLike, s_out: ArrayLike,
                  metrics: Sequence[str] | dict[str, str | Callable[..., float]],
                  n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                  max_cells: int = 2_000_000, *,
                  paired: bool = False) -> dict[str, tuple[float, float]]:
    """:func:`bootstrap_ci` of several metrics on the same resamples, drawn once.

    Each interval equals what ``bootstrap_ci(..., metric, seed=seed)`` returns alone (it draws
    the same resamples from the same seed); the draws and per-score counts are made once for
    all of them. ``metrics``: names, or ``{label: name or callable}``."""
    a, b = _pair(s_in, s_out)
    if n_boot < 2:
        raise BenchError(f"bootstrap_ci needs n_boot >= 2, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise BenchError(f"bootstrap_ci needs 0 < level < 1, got {level}")
    wanted = dict(metrics) if isinstance(metrics, dict) else {m: m for m in metrics}
    for m in wanted.values():
        if isinstance(m, str) and m not in PAIR_METRICS:
            raise BenchError(f"unknown metric {m!r} for bootstrap_ci "
                             f"(choose from: {', '.join(PAIR_METRICS)})")
    if paired and a.size != b.size:
        raise BenchError(f"paired bootstrap_ci needs one shifted score per ID image, got "
                         f"{a.size} ID and {b.size} shifted scores; use paired=False")
    if small_set(a.size, b.size):
        return {k: (float("nan"), float("nan")) for k in wanted}
    rng = np.random.default_rng(seed)
    values = {k: np.empty(n_boot, dtype=np.float64) for k in wanted}
    u, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    code_in, code_out, n_u = codes[:a.size], codes[a.size:], u.size
    fast = {k: m for k, m in wanted.items() if isinstance(m, str) and m in VECTORISED}
    slow = {k: (PAIR_METRICS[m] if isinstance(m, str) else m) for k, m in wanted.items()
            if k not in fast}
    # the resamples are drawn chunk by chunk in the same way on both paths, so a callable gets
    # exactly the resamples the vectorised code sees (the tests rely on it)
    chunk = max(1, min(n_boot, max_cells // max(n_u, a.size, b.size)))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        if paired:
            idx_in = idx_out = rng.integers(0, a.size, (m, a.size))
        else:
            idx_in = rng.integers(0, a.size, (m, a.size))
            idx_out = rng.integers(0, b.size, (m, b.size))
        if fast:
            rows = np.arange(m)[:, None] * n_u
            c_in = np.bincount((rows + code_in[idx_in]).ravel(),
                               minlength=m * n_u).reshape(m, n_u)
            c_out = np.bincount((rows + code_out[idx_out]).ravel(),
                                minlength=m * n_u).reshape(m, n_u)
            got = _weighted_rank_metrics(tuple(dict.fromkeys(fast.values())), c_in, c_out)
            for k, name in fast.items():
                values[k][start:start + m] = got[name]
        for k, f in slow.items():
            for i in range(m):  # one call per resample: the metric is opaque
                values[k][start + i] = f(a[idx_in[i]], b[idx_out[i]])
    out = {}
    for k, v in values.items():
        lo, hi = np.quantile(v, [(1 - level) / 2, (1 + level) / 2])
        out[k] = (float(lo), float(hi))
    return out


# --------------------------------------------------------------------------------------------
# classifier metrics
# --------------------------------------------------------------------------------------------
def ece(confidences: ArrayLike, correct: ArrayLike, n_bins: int = N_BINS) -> float:
    """Expected calibration error (Guo et al. 2017): ``sum_b |B_b|/n * |acc(B_b) - conf(B_b)|``.

    Bins are ``(0, 1/n_bins], (1/n_bins, 2/n_bins], ..., ((n_bins-1)/n_bins, 1]`` with edges
    ``numpy.linspace(0, 1, n_bins + 1)``, as in Guo et al.'s code (``conf > lower & conf <=
    upper``); a confidence of exactly 0 joins the first bin. Empty bins contribute nothing.
    ``confidences`` (n,) in [0, 1], ``correct`` (n,) bool or 0/1. Computed in float64.
    """
    conf = as_scores(confidences, "confidences")
    if _is_tensor(correct):
        correct = correct.detach().cpu().numpy()
    hit = np.asarray(correct, dtype=np.float64).reshape(-1)
    if hit.shape != conf.shape:
        raise BenchError(f"ece: {conf.size} confidences but {hit.size} correct flags")
    if n_bins < 1:
        raise BenchError(f"ece needs n_bins >= 1, got {n_bins}")
    if conf.min() < 0.0 or conf.max() > 1.0:
        raise BenchError("ece: confidences must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted(side="left") - 1 puts c in bin b iff edges[b] < c <= edges[b + 1]
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    gap = np.abs(np.bincount(b, weights=hit, minlength=n_bins)
                 - np.bincount(b, weights=conf, minlength=n_bins))
    # |B|/n * |acc(B) - conf(B)| = |sum_B correct - sum_B conf| / n
    return float(gap.sum() / conf.size)


def classifier_metrics(logits: ArrayLike, labels: ArrayLike | None) -> dict[str, float | None]:
    """``{"acc", "ece"}`` of the classifier on one set: top-1 accuracy, ECE of max softmax (T = 1).

    ``logits`` (N, K) (cast to float64), ``labels`` (N,) int. ``labels=None`` (an OOD set: no
    labels in the ID label space) gives ``{"acc": None, "ece": None}``.
    """
    if labels is None:
        return {"acc": None, "ece": None}
    import torch

    z_all = torch.as_tensor(logits).detach()
    y = torch.as_tensor(labels).detach().to("cpu").reshape(-1).long()
    if z_all.ndim != 2 or z_all.shape[0] == 0:
        raise BenchError(f"classifier_metrics needs logits of shape (N, K) with N > 0, "
                         f"got {tuple(z_all.shape)}")
    if y.shape[0] != z_all.shape[0]:
        raise BenchError(f"classifier_metrics: {z_all.shape[0]} logits but {y.shape[0]} labels")
    confs, preds = [], []
    step = max(1, (1 << 22) // z_all.shape[1])    # rows per float64 chunk (32 MiB)
    for s in range(0, z_all.shape[0], step):
        z = z_all[s:s + step].to("cpu", torch.float64)
        if not torch.isfinite(z).all():
            raise BenchError("classifier logits contain NaN or inf")
        conf, pred = torch.softmax(z, dim=1).max(dim=1)
        confs.append(conf)
        preds.append(pred)
    conf, pred = torch.cat(confs), torch.cat(preds)
    correct = (pred == y).numpy()
    return {"acc": float(correct.mean()), "ece": ece(conf.numpy(), correct)}


# --------------------------------------------------------------------------------------------
# failure detection: does the score flag the images the classifier gets wrong?
# --------------------------------------------------------------------------------------------
#: coverages at which the selective risk is reported (``risk80``, ``risk90``, ``risk95``)
COVERAGES = (0.80, 0.90, 0.95)
#: points kept of a risk-coverage curve in a record
N_RC_POINTS = 200


def _correct_flags(correct: ArrayLike, n: int) -> np.ndarray:
    if _is_tensor(correct):
        correct = correct.detach().cpu().numpy()
    c = np.asarray(correct).reshape(-1)
    if c.size != n:
        raise BenchError(f"failure detection: {n} scores but {c.size} correct flags")
    return c.astype(bool)


def risk_coverage(scores: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Selective risk at every coverage ``k/n`` (k = 1..n), accepting the k highest scores.

    ``risk(k) = (errors among the k most confident) / k``. Images with tied scores enter
    together: inside a tie group the errors count in expectation over a random order of the
    group, ``errors_before + (k - start) * group_errors / group_size`` (so a constant score
    gives the base error rate at every coverage, not an order-dependent curve).
    Returns (coverage, risk), both (n,) float64.
    """
    s = as_scores(scores, "failure-detection scores")
    err = (~_correct_flags(correct, s.size)).astype(np.float64)
    order = np.argsort(-s, kind="stable")
    s_sorted, e_sorted = s[order], err[order]
    n = s.size
    starts = np.r_[0, np.flatnonzero(np.diff(s_sorted) != 0) + 1]
    ends = np.r_[starts[1:], n]
    group_err = np.add.reduceat(e_sorted, starts)
    err_before = np.r_[0.0, np.cumsum(group_err)[:-1]]
    k = np.arange(1, n + 1)
    g = np.searchsorted(ends, k, side="left")
    errors = err_before[g] + (k - starts[g]) * group_err[g] / (ends[g] - starts[g])
    return k / n, errors / k


def aurc(scores: ArrayLike, correct: ArrayLike) -> float:
    """Area under the risk-coverage curve (Geifman et al. 2019): ``mean_k risk(k)``. Lower = better."""
    return float(risk_coverage(scores, correct)[1].mean())


def aurc_optimal(correct: ArrayLike) -> float:
    """AURC of the best possible ranking (every correct image before every error), exactly:
    ``mean_k max(0, k - n_correct) / k``."""
    c = _correct_flags(correct, np.asarray(correct).size)
    k = np.arange(1, c.size + 1)
    return float((np.maximum(0, k - int(c.sum())) / k).mean())


def e_aurc(scores: ArrayLike, correct: ArrayLike) -> float:
    """Excess AURC (Geifman et al. 2019): ``aurc - aurc_optimal``; 0 for a perfect ranking."""
    return aurc(scores, correct) - aurc_optimal(correct)


def selective_risk(scores: ArrayLike, correct: ArrayLike, coverage: float) -> float:
    """Risk among the ``ceil(coverage * n)`` most confident images (ties in expectation)."""
    cov, risk = risk_coverage(scores, correct)
    k = max(1, int(np.ceil(coverage * cov.size - 1e-9)))
    return float(risk[k - 1])


def fd_auroc(scores: ArrayLike, correct: ArrayLike) -> float | None:
    """AUROC of the score for correct (positive) vs wrong predictions; None with only one kind."""
    from sklearn.metrics import roc_auc_score

    s = as_scores(scores, "failure-detection scores")
    c = _correct_flags(correct, s.size)
    if c.all() or not c.any():
        return None
    return float(roc_auc_score(c.astype(np.int64), s))


def failure_metrics(scores: ArrayLike, correct: ArrayLike) -> dict[str, float | int | None]:
    """Failure detection of one set (Jaeger et al. 2023): ``fd_auroc``, ``aurc``, ``e_aurc``,
    ``risk80/90/95`` (selective risk at those coverages), ``n`` and ``n_errors``."""
    s = as_scores(scores, "failure-detection scores")
    c = _correct_flags(correct, s.size)
    cov, risk = risk_coverage(s, c)
    out: dict[str, float | int | None] = {"fd_auroc": fd_auroc(s, c), "aurc": float(risk.mean())}
    out["e_aurc"] = out["aurc"] - aurc_optimal(c)
    for q in COVERAGES:
        out[f"risk{round(q * 100)}"] = float(risk[max(1, int(np.ceil(q * s.size - 1e-9))) - 1])
    out["n"], out["n_errors"] = int(s.size), int((~c).sum())
    return out


def rc_points(scores: ArrayLike, correct: ArrayLike,
              n_points: int = N_RC_POINTS) -> tuple[list[float], list[float]]:
    """At most ``n_points`` (coverage, risk) points of the curve, evenly spaced in k, for plots."""
    cov, risk = risk_coverage(scores, correct)
    idx = np.unique(np.linspace(0, cov.size - 1, min(n_points, cov.size)).round().astype(int))
    return [float(v) for v in cov[idx]], [float(v) for v in risk[idx]]


__all__ = [
    "as_scores", "auroc", "aupr_in", "aupr_out", "aupr_in_trapz", "aupr_out_trapz", "fpr95",
    "fpr95_oodpos", "threshold95", "detect95", "id_accept95", "detector_metrics", "roc_points",
    "bootstrap_ci", "bootstrap_cis", "ece", "classifier_metrics", "PAIR_METRICS", "VECTORISED", "Metric",
    "METRIC_TABLE", "METRIC_SPECS", "DETECTOR_METRICS", "CLASSIFIER_METRICS", "BOOTSTRAPPED",
    "RANKED", "LOWER_IS_BETTER", "higher_is_better", "COVERAGES", "risk_coverage", "aurc",
    "aurc_optimal", "e_aurc", "selective_risk", "fd_auroc", "failure_metrics", "rc_points",
    "FAILURE_METRICS",
    "MIN_SET_SIZE", "small_set",
]
