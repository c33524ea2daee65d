"""What detectors and metrics see of one image set: logits, features, labels, pixels, the model.

Views of a set are computed once (one forward pass) and shared by every detector; logits and
features are stored as float64 (METHODS.md §0: float32 softmax saturates and creates ties).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

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

    logits:   (N, K) float64      features: (N, H) float64 (penultimate layer); float32 and
              memory-mapped for sets read from files (``imagefolder:``): cast with
              ``Detector.logits64`` / ``features64``, chunk by chunk for large sets
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
    """``torch.autocast`` for ``precision`` (bf16/fp16) on ``device``; for fp32, IEEE float32
    convolutions on CUDA (:func:`ieee_fp32_convs`: the views are scored against attacks
    crafted in IEEE float32, and fp32 means fp32), nothing elsewhere."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return ieee_fp32_convs(torch.device(device))
    return torch.autocast(torch.device(device).type, dtype=getattr(torch, dtype))


@contextlib.contextmanager
def ieee_fp32_convs(device: torch.device) -> Iterator[None]:
    """cuDNN convolutions in IEEE float32, not TF32, for the duration (CUDA only).

    PyTorch lets cuDNN convolutions use TF32 (10-bit mantissa) by default on Ampere and later.
    The input gradient then carries ~1e-3 relative errors that flip sign(grad) wherever it is
    small, so PGD's output changed with the batch size (cuDNN picks its algorithm per shape):
    on an H200 with a random CIFAR ResNet-20, 9,000 images, batch 256 vs 1000, 4.8 % of values
    with TF32 and 0.05 % without (CPU vs CUDA: 5.9 % vs 0.06 %), for 30 % more PGD time at
    batch 1024. The flag is process-wide; it is restored on exit. Matmuls keep the user's
    setting (PyTorch's default is full float32).
    """
    if device.type != "cuda":
        yield
        return
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # PyTorch >= 2.9 API
        old = conv.fp32_precision
        conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            conv.fp32_precision = old
    else:
        old_flag = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = old_flag


def compute_views(model: "Classifier", images: Any, *, name: str, labels: Tensor | None = None,
                  batch_size: int = 256, device: torch.device | str = "cpu",
                  keep_images: bool = False, index: Tensor | None = None,
                  progress: Callable[[int], None] | None = None, workers: int = 0,
                  precision: str = "fp32", out: Path | None = None) -> Views:
    """One forward pass over ``images`` in batches: float64 logits and penultimate features.

    ``images``: a uint8 tensor, or FileImages decoded by ``workers`` DataLoader processes.
    uint8 batches go to the device as they are (4x fewer bytes than float), pinned and
    non-blocking on CUDA. ``precision`` bf16/fp16 runs the forward pass under autocast; the
    views are stored as float64 all the same (METHODS.md §0). ``out``: write them instead to
    ``out.logits.npy`` / ``out.features.npy`` as float32 (what the network computed, so
    nothing is lost) and return them memory-mapped (:class:`ViewFiles`)."""
    from bench.datasets._stream import image_batches

    dev = torch.device(device)
    sink = view_sink(int(images.shape[0]), out)
    with torch.no_grad(), forward_context(dev, precision):
        model.eval()
        for start, batch in image_batches(images, batch_size, workers=workers,
                                          pin_memory=dev.type == "cuda"):
            x = to_float01(batch.to(dev, non_blocking=True))
            z, f = model.forward_features(x)
            sink.write(start, z, f)
            if progress is not None:
                progress(x.shape[0])
    z_all, f_all = sink.finish(model.num_classes)
    return Views(name=name, logits=z_all, features=f_all, labels=labels,
                 images=images if keep_images else None, model=model, index=index)


def view_sink(n: int, out: Path | None = None) -> "ViewTensors | ViewFiles":
    """Where the logits and features of ``n`` images go, batch by batch: float64 tensors in
    memory, or float32 files at ``out`` (:class:`ViewFiles`)."""
    return ViewTensors(n) if out is None else ViewFiles(out, n)


def _check_all_rows(written: int, n: int) -> None:
    """Refuse views with rows never written: they would hold zeros (files) or whatever the
    memory held (tensors)."""
    if written != n:
        raise RuntimeError(f"views of {n} images expected, {written} written")


class ViewTensors:
    """Logits and features of ``n`` images written batch by batch into float64 tensors
    (METHODS.md §0) allocated at the first batch: no per-batch pieces kept and concatenated, so
    the heap holds one block per set instead of two copies in hundreds of small pieces."""

    def __init__(self, n: int):
        self.n, self.written = n, 0
        self.logits: Tensor | None = None
        self.features: Tensor | None = None

    def write(self, start: int, z: Tensor, f: Tensor) -> None:
        if self.logits is None:
            self.logits = torch.empty(self.n, z.shape[1], dtype=torch.float64)
            self.features = torch.empty(self.n, f.shape[1], dtype=torch.float64)
        rows = slice(start, start + z.shape[0])
        self.logits[rows] = z.detach()      # copy_: float32 -> float64 is exact, device -> CPU
        self.features[rows] = f.detach()
        self.written += int(z.shape[0])

    def finish(self, num_classes: int) -> tuple[Tensor, Tensor]:
        _check_all_rows(self.written, self.n)
        if self.logits is None:   # an empty set
            return (torch.empty(0, num_classes, dtype=torch.float64),
                    torch.empty(0, 0, dtype=torch.float64))
        return self.logits, self.features


def _view_file(base: Path, kind: str) -> Path:
    """``<base>.logits.npy`` / ``<base>.features.npy``."""
    return base.with_name(f"{base.name}.{kind}.npy")


def _temporary(final: Path) -> Path:
    """A file beside ``final`` that becomes it, complete, with ``os.replace``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


class ViewFiles:
    """Logits and features of ``n`` images written batch by batch to ``<base>.logits.npy`` and
    ``<base>.features.npy`` (float32, the network's own precision), then read back memory-mapped:
    the operating system pages them in as they are read and may drop them again, so a set's
    views need not fit in memory. Files appear under their names only when complete."""

    def __init__(self, base: Path, n: int):
        self.base, self.n, self.written = Path(base), n, 0
        self.arrays: dict[str, np.ndarray] = {}
        self.tmp: dict[str, Path] = {}

    def write(self, start: int, z: Tensor, f: Tensor) -> None:
        for kind, t in (("logits", z), ("features", f)):
            if kind not in self.arrays:
                self.tmp[kind] = _temporary(_view_file(self.base, kind))
                self.arrays[kind] = np.lib.format.open_memmap(
                    self.tmp[kind], mode="w+", dtype=np.float32, shape=(self.n, int(t.shape[1])))
            self.arrays[kind][start:start + t.shape[0]] = t.detach().float().cpu().numpy()
        self.written += int(z.shape[0])

    def finish(self, num_classes: int) -> tuple[Tensor, Tensor]:
        _check_all_rows(self.written, self.n)
        if not self.arrays:   # an empty set: a memory map cannot be empty, np.save writes it
            for kind, width in (("logits", num_classes), ("features", 0)):
                self.tmp[kind] = _temporary(_view_file(self.base, kind))
                with open(self.tmp[kind], "wb") as fh:
                    np.save(fh, np.zeros((0, width), dtype=np.float32), allow_pickle=False)
        for arr in self.arrays.values():
            arr.flush()
        self.arrays.clear()
        for kind, tmp in self.tmp.items():
            os.replace(tmp, _view_file(self.base, kind))
        return self.read(self.base)

    @staticmethod
    def read(base: Path, n: int | None = None) -> tuple[Tensor, Tensor] | None:
        """The two arrays memory-mapped (copy-on-write, never written back), or None when a file
        is missing or holds another number of rows."""
        out = []
        for kind in ("logits", "features"):
            try:
                arr = np.load(_view_file(Path(base), kind), mmap_mode="c", allow_pickle=False)
            except (OSError, ValueError):
                return None
            if arr.ndim != 2 or (n is not None and arr.shape[0] != n):
                return None
            out.append(torch.from_numpy(arr))
        return out[0], out[1]


def views_entry(cache_dir: Path, name: str, key: dict[str, Any],
                model_key: dict[str, Any]) -> tuple[Path, str]:
    """Path and full key of the views cache entry for the images named by ``key`` under the
    network named by ``model_key`` (weights, normalisation, code)."""
    from bench import cache
    from bench.plan import slug

    full_key = cache.config_hash({"model": model_key, "data": key})
    return cache_dir / f"{slug(name, 40)}-{full_key[:24]}.pt", full_key


def load_views(path: Path, full_key: str, name: str, n: int) -> tuple[Views, dict[str, Any]] | None:
    """The cached views at ``path`` (and what was stored beside them) if they hold ``n`` rows.
    Entries stored on disk (:class:`ViewFiles`) come back memory-mapped."""
    from bench import cache

    stored = cache.load(path, full_key)
    if not isinstance(stored, dict):
        return None
    if stored.get("on_disk"):
        arrays = ViewFiles.read(files_base(path), n)
        if arrays is None:
            return None
        return Views(name=name, logits=arrays[0], features=arrays[1]), stored.get("extra") or {}
    if isinstance(stored.get("logits"), torch.Tensor) and stored["logits"].shape[0] == n:
        return Views(name=name, logits=stored["logits"], features=stored["features"]), \
            stored.get("extra") or {}
    return None


def files_base(path: Path) -> Path:
    """Where the :class:`ViewFiles` of the cache entry ``path`` live (beside it)."""
    return path.with_suffix("")


def store_views(path: Path, full_key: str, views: Views, extra: dict[str, Any] | None = None,
                *, on_disk: bool = False) -> None:
    """Store views under ``path``; ``on_disk``: they are already in :func:`files_base`'s files,
    and only the entry naming them (with its key) is written, last."""
    from bench import cache

    if on_disk:
        cache.store(path, full_key, {"on_disk": True, "n": len(views), "extra": extra or {}})
        return
    cache.store(path, full_key, {"logits": views.logits, "features": views.features,
                                 "extra": extra or {}})


def forward_views(model: "Classifier", images: Any, *, name: str, batch_size: int,
                  device: torch.device | str, workers: int = 0, precision: str = "fp32",
                  out: Path | None = None) -> Views:
    """:func:`compute_views` with a progress bar."""
    from bench import progress

    with progress.task(f"features: {name}", images.shape[0]) as t:
        return compute_views(model, images, name=name, batch_size=batch_size, device=device,
                             progress=t.advance, workers=workers, precision=precision, out=out)


def cached_views(model: "Classifier", images: Any, *, name: str, key: dict[str, Any],
                 model_key: dict[str, Any], cache_dir: Path, batch_size: int,
                 device: torch.device | str, workers: int = 0,
                 precision: str = "fp32", on_disk: bool = False) -> tuple[Views, bool]:
    """Views of ``images`` (named by content in ``key``) from the cache, else one forward pass,
    stored. The second value says whether they came from the cache. ``on_disk``: stored as
    float32 files and returned memory-mapped (sets read from files: ``imagefolder:``)."""
    path, full_key = views_entry(cache_dir, name, key, model_key)
    hit = load_views(path, full_key, name, images.shape[0])
    if hit is not None:
        return hit[0], True
    v = forward_views(model, images, name=name, batch_size=batch_size, device=device,
                      workers=workers, precision=precision,
                      out=files_base(path) if on_disk else None)
    store_views(path, full_key, v, on_disk=on_disk)
    return v, False
