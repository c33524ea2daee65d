"""``npz:PATH``: images (and optional labels) from a numpy ``.npz`` archive, loaded at once."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from bench._lazy import torch
from bench.datasets._proximity import guess_proximity
from bench.datasets.base import Dataset, ImageSet, LoadContext, check_proximity, resolve_data_path
from bench.errors import BenchError
from bench.registry import DATASETS, Spec


@DATASETS.register("npz")
class Npz(Dataset):
    """An image set stored as ``images`` uint8 (N, H, W, C) or (N, H, W) grey, optional ``labels``.

    Spec: ``npz:PATH``, ``npz:PATH(exclude=KEY)``, ``npz:PATH(exclude=(KEY1, KEY2))``,
    ``npz:PATH(proximity=near)``. ``exclude`` drops every image whose label indexes a true entry
    of the boolean array ``KEY`` (one entry per class) in the same file; several keys drop the
    union. Example, Tiny-ImageNet val without its CIFAR-10 classes (8,800 of 10,000 images):
    ``npz:ood/tinyimagenet_val_resize32.npz(exclude=cifar10_overlap)``. A relative PATH is looked
    for in the current directory first, then under the data root. Class names come from
    ``class_names`` when the file has it. ``proximity`` defaults to what the file name says
    (OpenOOD v1.5: tinyimagenet/cifar -> near; mnist, svhn, dtd/textures, places -> far), else None.
    Output (N, C, H, W) uint8; no resizing here (the runner resizes OOD sets to the ID format).
    """

    takes_arg = True

    @classmethod
    def available(cls, data_root: Path, id_dataset: str) -> list[str]:
        """Every ``<data_root>/ood/*.npz``; a file carrying CIFAR-10 class flags
        (``cifar10_overlap``) is scored without those classes for CIFAR-10 (as OpenOOD)."""
        folder = data_root / "ood"
        out = []
        for p in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
            with np.load(p) as z:
                overlap = "cifar10_overlap" in z.files
            out.append(f"npz:{p}(exclude=cifar10_overlap)" if overlap and id_dataset == "cifar10"
                       else f"npz:{p}")
        return out

    def __init__(self, arg: str, *, exclude: str | tuple[str, ...] | None = None,
                 proximity: str | None = None) -> None:
        self.arg = arg
        if exclude is not None and not (
                (isinstance(exclude, str) and exclude)
                or (isinstance(exclude, tuple) and exclude
                    and all(isinstance(k, str) and k for k in exclude))):
            raise BenchError(f"npz:{arg}: exclude must name a boolean array of the file, e.g. "
                             f"exclude=cifar10_overlap or exclude=(a, b); got {exclude!r}")
        self.exclude = exclude
        self.proximity = (check_proximity(proximity, f"npz:{arg}") if proximity is not None
                          else guess_proximity(Path(arg).stem))

    def display_name(self) -> str:
        """File stem and non-default parameters, e.g. ``tin_val(exclude=cifar10_overlap)``."""
        params = {"exclude": self.exclude} if self.exclude is not None else {}
        return str(Spec(Path(self.arg).stem, None, params))

    def load(self, split: str, ctx: LoadContext) -> ImageSet:
        self.check_split(split)
        where = f"npz:{self.arg}"
        path = resolve_data_path(self.arg, ctx, where)
        if path.is_dir():
            raise BenchError(f"{where}: {path} is a folder; use folder:{self.arg} for image "
                             f"folders")
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise BenchError(f"{where}: cannot read {path} as .npz ({exc})") from None
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise BenchError(f"{where}: {path} is a single .npy array, not an .npz archive; "
                             f"save with numpy.savez(PATH, images=...)")
        with z:
            arrays = {k: z[k] for k in z.files}
        x = self._images(arrays, path, where)
        labels = self._labels(arrays, len(x), path, where)
        classes = self._classes(arrays)
        extra: dict[str, Any] = {}
        if self.exclude is not None:
            keep = self._keep(arrays, labels, classes, path, where)
            x, labels = x[keep], (labels[keep] if labels is not None else None)
            extra = {"exclude": self.exclude, "n_excluded": int((~keep).sum())}
            if len(x) == 0:
                raise BenchError(f"{where}: exclude={self.exclude} leaves an empty set "
                                 f"(all {len(keep)} images excluded); exclude fewer classes")
        elif len(x) == 0:
            raise BenchError(f"{where}: {path} holds no images (empty set)")
        return ImageSet(self.display_name(), torch.from_numpy(np.ascontiguousarray(x)),
                        None if labels is None else torch.from_numpy(labels), classes,
                        source=str(path), extra=extra)

    @staticmethod
    def _images(arrays: dict[str, np.ndarray], path: Path, where: str) -> np.ndarray:
        if "images" not in arrays:
            raise BenchError(f"{where}: {path} has no array 'images' (arrays: "
                             f"{', '.join(sorted(arrays)) or 'none'}); save it with "
                             f"numpy.savez(PATH, images=uint8 NHWC array)")
        x = arrays["images"]
        if x.dtype != np.uint8:
            raise BenchError(f"{where}: images must be uint8 0..255, got {x.dtype}; convert with "
                             f"(x * 255).round().astype(numpy.uint8) if they are floats in [0, 1]")
        if x.ndim == 3:                       # (N, H, W) grey
            return x[:, None]
        if x.ndim == 4 and x.shape[3] in (1, 3):
            return x.transpose(0, 3, 1, 2)    # NHWC -> NCHW
        hint = (" (looks like NCHW: transpose with x.transpose(0, 2, 3, 1))"
                if x.ndim == 4 and x.shape[1] in (1, 3) else "")
        raise BenchError(f"{where}: images must be (N, H, W, C) with C = 1 or 3, or (N, H, W); "
                         f"got shape {x.shape}{hint}")

    @staticmethod
    def _labels(arrays: dict[str, np.ndarray], n: int, path: Path,
                where: str) -> np.ndarray | None:
        if "labels" not in arrays:
            return None
        y = arrays["labels"]
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise BenchError(f"{where}: labels must be a 1-D integer array, got {y.dtype} "
                             f"shape {y.shape} in {path}")
        if len(y) != n:
            raise BenchError(f"{where}: {len(y)} labels for {n} images in {path}; "
                             f"labels need one entry per image")
        return y.astype(np.int64)

    @staticmethod
    def _classes(arrays: dict[str, np.ndarray]) -> list[str] | None:
        names = arrays.get("class_names")
        if names is None or names.ndim != 1 or names.dtype.kind not in "US":
            return None
        return [str(c) for c in names]

    def _keep(self, arrays: dict[str, np.ndarray], labels: np.ndarray | None,
              classes: list[str] | None, path: Path, where: str) -> np.ndarray:
        """Boolean mask of the images to keep: label does not index a true entry of any KEY."""
        if labels is None:
            raise BenchError(f"{where}: exclude= needs per-image 'labels' in {path}, which has "
                             f"none; drop the exclude parameter")
        keys = (self.exclude,) if isinstance(self.exclude, str) else tuple(self.exclude or ())
        drop = np.zeros(len(labels), dtype=bool)
        for key in keys:
            if key not in arrays:
                bools = sorted(k for k, a in arrays.items() if a.dtype == np.bool_ and a.ndim == 1)
                raise BenchError(f"{where}: no array {key!r} in {path} for exclude= "
                                 f"(boolean arrays there: {', '.join(bools) or 'none'})")
            m = arrays[key]
            if m.dtype != np.bool_ or m.ndim != 1:
                raise BenchError(f"{where}: exclude array {key!r} must be 1-D bool (one entry "
                                 f"per class), got {m.dtype} shape {m.shape}")
            n_classes = len(classes) if classes is not None else None
            if (n_classes is not None and len(m) != n_classes) or (
                    len(labels) and (labels.min() < 0 or labels.max() >= len(m))):
                want = (f"{n_classes} (one per class)" if n_classes is not None
                        else f"more than the largest label {labels.max()}")
                raise BenchError(f"{where}: exclude array {key!r} has length {len(m)}, "
                                 f"expected {want}")
            drop |= m[labels]
        return ~drop
