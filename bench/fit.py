"""Stage 3 of a run: every detector that has cells to compute is fitted once per seed.

Fitting is its own stage, before any unit runs: units receive fitted detectors (with their
scores of the ID test and val images, which every cell of that detector shares) and never
train anything. Trained detectors (``cacheable = True``) are stored under ``home/detectors``,
keyed by everything their state depends on, and loaded from there on later runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from bench import cache
from bench.context import Context, IdViews
from bench.errors import BenchError
from bench.plan import slug
from bench.registry import DETECTORS
from bench.views import Views

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fitted:
    """One detector fitted for one seed, or the reason it could not be."""

    spec: str
    seed: int
    detector: Any | None           # the fitted Detector (None when fitting failed)
    fit_s: float
    from_cache: bool
    s_in: Tensor | None            # scores of the scored ID test images (float64)
    s_val: Tensor | None           # scores of the val images
    error: str | None = None


def make_detector(spec: str, seed: int, device: str) -> Any:
    """The detector named by ``spec``, with the run's device and seed (for those that take them)."""
    return DETECTORS.create(spec, device=device, seed=seed)


#: numbers (rows x width of logits + features) per chunk of a chunked score: 128 MiB in float64
SCORE_CHUNK_ELEMS = 1 << 24


def checked_scores(det: Any, views: Views) -> Tensor:
    """``det.score(views)``, checked. Detectors that declare ``row_wise`` are scored chunk by
    chunk of rows, so a large memory-mapped set is never cast to float64 at once."""
    from bench.detectors.base import check_scores

    n = len(views)
    width = sum(int(t.shape[1]) for t in (views.logits, views.features)
                if t is not None and t.ndim == 2) or 1
    rows = max(1024, SCORE_CHUNK_ELEMS // width)
    if det.row_wise and n > rows:   # each chunk is checked as it comes
        return torch.cat([check_scores(det.score(views.subset(slice(s, s + rows))),
                                       min(rows, n - s), det.spec())
                          for s in range(0, n, rows)])
    return check_scores(det.score(views), n, det.spec())


def detector_key(det: Any, ctx: Context) -> str:
    """Everything a fitted state depends on: spec, class, code, data, split, seed, model.

    The spec leaves out the device (a context parameter): where it trained does not change what
    a fitted detector is."""
    uses_model = bool(set(det.needs) & {"logits", "features", "model"})
    return cache.config_hash({
        "detector": det.spec(), "class": f"{type(det).__module__}.{type(det).__qualname__}",
        "code": cache.source_hash(type(det)), "dataset": ctx.dataset["sha256"],
        "split": ["METHODS-1", ctx.dataset["split_seed"]], "seed": det.seed,
        "model": {k: v for k, v in ctx.model_key.items() if k != "code"} if uses_model else None,
        "model_code": ctx.model_key["code"] if uses_model else None})


def fit_one(spec: str, seed: int, ctx: Context, views: IdViews, *, home: Path,
            refit: bool) -> Fitted:
    """Fit (or load) detector ``spec`` for ``seed`` and score the ID test and val images.

    A failure is returned as ``Fitted(error=...)``: a broken detector fails its cells, not the run.
    """
    t = time.perf_counter()
    try:
        det = make_detector(spec, seed, ctx.device)
        from_cache = False
        path = None
        if det.cacheable:
            key = detector_key(det, ctx)
            path = cache.cache_dir("detectors", home) / f"{slug(det.name, 30)}-{key[:24]}.pt"
            state = None if refit else cache.load(path, key)
            if state is not None:
                det.load_state(state)
                from_cache = True
        if not from_cache:
            det.fit(views.fit, views.val)
            if path is not None:
                cache.store(path, key, det.state())
        fit_s = time.perf_counter() - t
        return Fitted(spec, seed, det, fit_s, from_cache, checked_scores(det, views.test),
                      checked_scores(det, views.val))
    except BenchError as exc:
        return Fitted(spec, seed, None, time.perf_counter() - t, False, None, None, str(exc))
    except Exception as exc:  # a broken detector fails its cells, not the run
        log.debug("detector %s failed", spec, exc_info=True)
        return Fitted(spec, seed, None, time.perf_counter() - t, False, None, None,
                      f"{type(exc).__name__}: {exc}")


def fit_detectors(wanted: list[tuple[str, int]], ctx: Context, views: IdViews, *, home: Path,
                  refit: bool, say: Callable[[str], None] = lambda msg: None
                  ) -> dict[tuple[str, int], Fitted]:
    """:func:`fit_one` for every (spec, seed) in ``wanted``, in order."""
    from bench import progress

    out: dict[tuple[str, int], Fitted] = {}
    with progress.task("fitting detectors", len(wanted)) as bar:
        for spec, seed in wanted:
            f = fit_one(spec, seed, ctx, views, home=home, refit=refit)
            if f.from_cache:
                say(f"{f.detector.spec()}: fitted detector loaded from cache")
            out[(spec, seed)] = f
            bar.advance(1)
    return out


__all__ = ["Fitted", "fit_one", "fit_detectors", "make_detector", "checked_scores",
           "detector_key"]
