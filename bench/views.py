"""What detectors and metrics see of one image set: logits, features, labels, pixels, the model.

Views of a set are computed once (one forward pass) and shared by every detector; logits and
features are stored as float64 (METHODS.md §0: float32 softmax saturates and creates ties).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from bench._lazy import torch

if TYPE_CHECKING:
    from torch import Tensor
    from bench.models.base import Classifier


def to_float01(images: Tensor) -> Tensor:
    """uint8 (N,C,H,W) in 0..255 -> float32 in [0,1]; float input is returned as float32."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images.to(torch.float32)


@dataclass
class Views:
    """One image set as a detector sees it. Fields a detector did not declare may be None.

    logits:   (N, K) float64      features: (N, H) float64 (penultimate layer)
    labels:   (N,) int64 or None  images:   (N, C, H, W) uint8 or float in [0,1]
    model:    the deployed classifier (eval mode), for detectors that declare ``"model"``
    index:    (N,) int64 positions of these images in their source split (for leak checks)
    """

    name: str
    logits: Tensor | None = None
    features: Tensor | None = None
    labels: Tensor | None = None
    images: Tensor | None = None
    model: "Classifier | None" = None
    index: Tensor | None = None

    def __len__(self) -> int:
        for t in (self.logits, self.features, self.images, self.labels):
            if t is not None:
                return int(t.shape[0])
        return 0

    def subset(self, idx: Tensor, name: str | None = None) -> "Views":
        """Rows ``idx`` of every tensor field."""
        def take(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[idx]
        return replace(self, name=name or self.name, logits=take(self.logits),
                       features=take(self.features), labels=take(self.labels),
                       images=take(self.images), index=take(self.index))


#: ``--precision``: the dtype of the classifier's forward pass when computing views
PRECISIONS = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


def forward_context(device: torch.device | str, precision: str = "fp32") -> Any:
    """``torch.autocast`` for ``precision`` (bf16/fp16) on ``device``; a no-op for fp32."""
    import contextlib

    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=getattr(torch, dtype))


def compute_views(model: "Classifier", images: Any, *, name: str, labels: Tensor | None = None,
                  batch_size: int = 256, device: torch.device | str = "cpu",
                  keep_images: bool = False, index: Tensor | None = None,
                  progress: Callable[[int], None] | None = None, workers: int = 0,
                  precision: str = "fp32") -> Views:
    """One forward pass over ``images`` in batches: float64 logits and penultimate features.

    ``images``: a uint8 tensor, or FileImages decoded by ``workers`` DataLoader processes.
    uint8 batches go to the device as they are (4x fewer bytes than float), pinned and
    non-blocking on CUDA. ``precision`` bf16/fp16 runs the forward pass under autocast; the
    views are stored as float64 all the same (METHODS.md §0)."""
    from bench.datasets._stream import image_batches

    dev = torch.device(device)
    with torch.no_grad(), forward_context(dev, precision):
        model.eval()
        logits, feats = [], []
        for _, batch in image_batches(images, batch_size, workers=workers,
                                      pin_memory=dev.type == "cuda"):
            x = to_float01(batch.to(dev, non_blocking=True))
            z, f = model.forward_features(x)
            logits.append(z.double().cpu())
            feats.append(f.double().cpu())
            if progress is not None:
                progress(x.shape[0])
    k = model.num_classes
    return Views(
        name=name,
        logits=torch.cat(logits) if logits else torch.empty(0, k, dtype=torch.float64),
        features=torch.cat(feats) if feats else torch.empty(0, 0, dtype=torch.float64),
        labels=labels, images=images if keep_images else None, model=model, index=index)


def views_entry(cache_dir: Path, name: str, key: dict[str, Any],
                model_key: dict[str, Any]) -> tuple[Path, str]:
    """Path and full key of the views cache entry for the images named by ``key`` under the
    network named by ``model_key`` (weights, normalisation, code)."""
    from bench import cache
    from bench.plan import slug

    full_key = cache.config_hash({"model": model_key, "data": key})
    return cache_dir / f"{slug(name, 40)}-{full_key[:24]}.pt", full_key


def load_views(path: Path, full_key: str, name: str, n: int) -> tuple[Views, dict[str, Any]] | None:
    """The cached views at ``path`` (and what was stored beside them) if they hold ``n`` rows."""
    from bench import cache

    stored = cache.load(path, full_key)
    if (isinstance(stored, dict) and isinstance(stored.get("logits"), torch.Tensor)
            and stored["logits"].shape[0] == n):
        return Views(name=name, logits=stored["logits"], features=stored["features"]), \
            stored.get("extra") or {}
    return None


def store_views(path: Path, full_key: str, views: Views, extra: dict[str, Any] | None = None) -> None:
    from bench import cache

    cache.store(path, full_key, {"logits": views.logits, "features": views.features,
                                 "extra": extra or {}})


def forward_views(model: "Classifier", images: Any, *, name: str, batch_size: int,
                  device: torch.device | str, workers: int = 0, precision: str = "fp32") -> Views:
    """:func:`compute_views` with a progress bar."""
    from bench import progress

    with progress.task(f"features: {name}", images.shape[0]) as t:
        return compute_views(model, images, name=name, batch_size=batch_size, device=device,
                             progress=t.advance, workers=workers, precision=precision)


def cached_views(model: "Classifier", images: Any, *, name: str, key: dict[str, Any],
                 model_key: dict[str, Any], cache_dir: Path, batch_size: int,
                 device: torch.device | str, workers: int = 0,
                 precision: str = "fp32") -> tuple[Views, bool]:
    """Views of ``images`` (named by content in ``key``) from the cache, else one forward pass,
    stored. The second value says whether they came from the cache."""
    path, full_key = views_entry(cache_dir, name, key, model_key)
    hit = load_views(path, full_key, name, images.shape[0])
    if hit is not None:
        return hit[0], True
    v = forward_views(model, images, name=name, batch_size=batch_size, device=device,
                      workers=workers, precision=precision)
    store_views(path, full_key, v)
    return v, False
