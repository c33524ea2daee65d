"""Datasets: uint8 image tensors in memory, METHODS.md §1 splits, resizing to the ID format."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from bench.errors import BenchError
from bench.registry import DATASETS, Component


@dataclass
class ImageSet:
    """Images as uint8 (N, C, H, W), labels (N,) int64 or None, and where they came from."""

    name: str
    images: Tensor
    labels: Tensor | None = None
    classes: list[str] | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"{self.name}: images must be uint8 (N,C,H,W), got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels is not None and self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(f"{self.name}: {self.labels.shape[0]} labels for "
                             f"{self.images.shape[0]} images")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def sha256(self) -> str:
        """Hash of the arrays (images, then labels): identifies the data in records and caches."""
        h = hashlib.sha256()
        h.update(str(tuple(self.images.shape)).encode())
        h.update(self.images.contiguous().numpy().tobytes())
        if self.labels is not None:
            h.update(self.labels.to(torch.int64).numpy().tobytes())
        return h.hexdigest()


@dataclass
class LoadContext:
    """What a dataset needs to know to load: where data lives and what the ID data look like."""

    data_root: Path
    download: bool = False
    seed: int = 0
    id_shape: tuple[int, int, int] | None = None   # (C, H, W) of the ID set, for OOD/synthetic
    n_id_test: int | None = None                    # size of the scored ID test set


class Dataset(Component):
    """A named data source. ``load(split, ctx)`` returns an :class:`ImageSet` (uint8, in memory).

    ID datasets (``is_id = True``) provide ``train`` and ``test`` splits with labels; OOD sets
    provide ``test``. ``near_ood`` marks OOD sets semantically close to their usual ID partner.
    """

    is_id: ClassVar[bool] = False
    splits: ClassVar[tuple[str, ...]] = ("test",)
    proximity: ClassVar[str | None] = None  # "near" / "far" for the leaderboard, when known

    def load(self, split: str, ctx: LoadContext) -> ImageSet:  # pragma: no cover - abstract
        raise NotImplementedError


def default_data_root() -> Path:
    """``$BENCH_DATA``, else ``~/.cache/shiftbench/data``."""
    env = os.environ.get("BENCH_DATA")
    if env:
        return Path(env).expanduser()
    return bench_home() / "data"


def bench_home() -> Path:
    """``$BENCH_HOME``, else ``~/.cache/shiftbench``: models, fitted detectors, view caches."""
    env = os.environ.get("BENCH_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "shiftbench"


def split_val_test(labels: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """METHODS.md §1: val indices out of the ID test split, the rest (ascending) is scored."""
    y = np.asarray(labels)
    n = len(y)
    n_val = min(1000, round(0.1 * n))
    idx = np.arange(n)
    _, val = train_test_split(idx, test_size=n_val, stratify=y, random_state=0)
    val = np.sort(val)
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    return val, idx[mask]


def resize_to(images: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """uint8 (N,C,H,W) -> uint8 (N,*shape): bilinear+antialias resize, grey<->RGB (ITU-R 601)."""
    c, h, w = shape
    x = images
    if x.shape[1] == c and tuple(x.shape[2:]) == (h, w):
        return x
    xf = x.to(torch.float32)
    if x.shape[1] == 1 and c == 3:
        xf = xf.expand(-1, 3, -1, -1)
    elif x.shape[1] == 3 and c == 1:
        wts = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        xf = (xf * wts).sum(1, keepdim=True)
    elif x.shape[1] != c:
        raise BenchError(f"cannot map {x.shape[1]}-channel images to {c} channels")
    if tuple(xf.shape[2:]) != (h, w):
        out = []
        for start in range(0, xf.shape[0], 2048):  # bounded memory
            out.append(torch.nn.functional.interpolate(
                xf[start:start + 2048], size=(h, w), mode="bilinear", align_corners=False,
                antialias=True))
        xf = torch.cat(out) if out else xf.new_empty(0, c, h, w)
    return xf.round_().clamp_(0, 255).to(torch.uint8)


__all__ = ["Dataset", "DATASETS", "ImageSet", "LoadContext", "default_data_root", "bench_home",
           "split_val_test", "resize_to"]
