"""Datasets: uint8 image tensors in memory, METHODS.md §1 splits, resizing to the ID format."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench._lazy import torch
from bench.errors import BenchError
from bench.registry import DATASETS, Component, Spec, signature_params

if TYPE_CHECKING:
    from torch import Tensor

#: values of the ``proximity`` attribute (relative to the dataset's usual ID partner)
PROXIMITIES = ("near", "far")


@dataclass
class ImageSet:
    """Images as uint8 (N, C, H, W), labels (N,) int64 or None, and where they came from.

    ``images`` is a tensor in memory, or :class:`~bench.datasets._stream.FileImages` (the same
    shape, decoded batch by batch) for sets too large to hold (``imagefolder:``)."""

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
    def streams(self) -> bool:
        """Images are files decoded batch by batch (:class:`~bench.datasets._stream.FileImages`)."""
        return not isinstance(self.images, torch.Tensor)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def sha256(self) -> str:
        """Hash of the arrays (images, then labels): identifies the data in records and caches."""
        h = hashlib.sha256()
        h.update(str(tuple(self.images.shape)).encode())
        if self.streams:
            h.update(self.images.digest().encode())
        else:
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
    cwd: Path | None = None                         # relative paths in specs; None = os.getcwd()
    #: the classifier's geometric preprocessing (``datasets._stream.Preprocess``) for sets read
    #: from files batch by batch (``imagefolder:``); None for in-memory sets
    preprocess: Any = None


class Dataset(Component):
    """A named data source. ``load(split, ctx)`` returns an :class:`ImageSet` (uint8, in memory),
    or, for ``streams = True`` sources, an ImageSet whose images are files read batch by batch.

    ID datasets (``is_id = True``) provide ``train`` and ``test`` splits with labels; OOD sets
    provide ``test``. ``proximity`` marks OOD sets as "near" (semantically close to their usual ID
    partner, e.g. CIFAR-100 for CIFAR-10) or "far", following OpenOOD v1.5 where it says.
    """

    is_id: ClassVar[bool] = False
    #: True: ``load`` returns FileImages (decoded per batch, never held in memory at once)
    streams: ClassVar[bool] = False
    splits: ClassVar[tuple[str, ...]] = ("test",)
    proximity: ClassVar[str | None] = None  # "near" / "far" for the leaderboard, when known
    #: constructor parameters left out of :meth:`display_name` (they do not change the data)
    display_exclude: ClassVar[tuple[str, ...]] = ("proximity",)
    #: ID datasets: the ``--model`` used when none is given
    default_model: ClassVar[str | None] = None
    #: the quantisation step of the stored pixels on [0, 1]; attacks' eps tables count steps
    pixel_step: ClassVar[float] = 1 / 255

    @classmethod
    def available(cls, data_root: Path, id_dataset: str) -> list[str]:
        """``--ood all``: the specs of this source's OOD sets found under ``data_root``, for
        the ID dataset named ``id_dataset`` (none by default)."""
        return []

    def __init__(self) -> None:
        """Datasets without parameters store nothing (subclasses store their keyword arguments)."""

    def load(self, split: str, ctx: LoadContext) -> ImageSet:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_split(self, split: str) -> None:
        """BenchError unless ``split`` is one of :attr:`splits`."""
        if split not in self.splits:
            raise BenchError(f"dataset {self.display_name()!r} has no split {split!r} "
                             f"(splits: {', '.join(self.splits)})")

    def display_name(self) -> str:
        """Short readable name for tables and ``ImageSet.name``: the spec without default params."""
        defaults = signature_params(type(self))
        params = {k: v for k, v in self.get_params().items()
                  if k != "arg" and k not in self.display_exclude and v != defaults.get(k)}
        arg = getattr(self, "arg", None) if self.takes_arg else None
        return str(Spec(self.name, arg, params))


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


def split_val_test(labels: Tensor | np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """METHODS.md §1: val indices out of the ID test split, the rest (ascending) is scored.

    ``seed`` is the split's random_state: METHODS.md uses 0; ``--split-seed`` varies it."""
    y = np.asarray(labels)
    n = len(y)
    n_val = min(1000, round(0.1 * n))
    idx = np.arange(n)
    from sklearn.model_selection import train_test_split

    _, val = train_test_split(idx, test_size=n_val, stratify=y, random_state=seed)
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
    # not in place: after a channel expand without resizing, xf is a view sharing memory
    return torch.round(xf).clamp_(0, 255).to(torch.uint8)


def check_proximity(value: str | None, where: str) -> str | None:
    """Validate a user-given ``proximity=`` parameter ("near", "far" or None)."""
    if value is not None and value not in PROXIMITIES:
        raise BenchError(f"{where}: proximity must be near or far, got {value!r}: write "
                         f"proximity=near or proximity=far")
    return value


def resolve_data_path(arg: str, ctx: LoadContext, where: str) -> Path:
    """A user-given path: absolute as is; relative against ``ctx.cwd`` (the directory the user
    ran bench in) first, then ``ctx.data_root``."""
    p = Path(arg).expanduser()
    cwd = Path.cwd() if ctx.cwd is None else Path(ctx.cwd)
    tried = [p] if p.is_absolute() else [cwd / p, Path(ctx.data_root).expanduser() / p]
    for cand in tried:
        if cand.exists():
            return cand
    looked = " or ".join(str(c) for c in tried)
    raise BenchError(f"{where}: {arg} not found (looked for {looked}); give an existing path, "
                     f"absolute or relative to the current directory or to --data-root")


def load_set(spec: str | Spec, split: str, ctx: LoadContext) -> tuple[Dataset, ImageSet]:
    """Create the dataset named by ``spec`` from :data:`DATASETS` and load one non-empty split."""
    ds = DATASETS.create(spec)
    ds.check_split(split)
    images = ds.load(split, ctx)
    if len(images) == 0:
        raise BenchError(f"dataset {str(spec)!r} split {split!r} is an empty set "
                         f"(read from {images.source or 'nowhere'})")
    return ds, images


__all__ = ["Dataset", "DATASETS", "ImageSet", "LoadContext", "default_data_root", "bench_home",
           "split_val_test", "resize_to", "load_set", "resolve_data_path", "check_proximity",
           "PROXIMITIES"]
