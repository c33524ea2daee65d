"""``imagefolder:ROOT``: ImageNet-style folders read batch by batch (``ROOT/train``, ``ROOT/val``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from bench._lazy import torch
from bench.datasets._proximity import guess_proximity
from bench.datasets._stream import INTERPOLATIONS, FileImages, Preprocess, find_images, fingerprint
from bench.datasets.base import (Dataset, ImageSet, LoadContext, check_proximity,
                                 resolve_data_path)
from bench.errors import BenchError
from bench.registry import DATASETS, Spec


@DATASETS.register("imagefolder")
class ImageFolderSet(Dataset):
    """torchvision's ImageFolder layout, streamed: ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*``.

    As an ID dataset: ``train`` fits the detectors, ``val`` is the test split that METHODS.md §1
    divides into the suite's val and scored test images. As an OOD set (``--ood
    imagefolder:ROOT``): ``ROOT/val`` if it exists, else every image under ROOT (class
    subfolders or flat). Classes are the sorted subfolder names, label = position (as
    ImageFolder); files are sorted; every image is converted to RGB (as torchvision's loader).

    Images are decoded per batch by DataLoader workers (``--workers``), never all at once, with
    the classifier's own preprocessing: a ``torchvision:`` or ``timm:`` model's resize, centre
    crop and interpolation. ``resize=``, ``crop=`` and ``interpolation=`` override them (needed
    with the built-in models, which have none): the shorter side goes to ``resize`` pixels
    (default: ``crop``), then the centre ``crop`` x ``crop`` pixels are kept. The data are named
    in caches by every file's path, size and modification time, not by their bytes.
    """

    is_id: ClassVar[bool] = True
    streams: ClassVar[bool] = True
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    takes_arg = True

    def __init__(self, arg: str, *, resize: int | None = None, crop: int | None = None,
                 interpolation: str | None = None, proximity: str | None = None) -> None:
        self.arg = arg
        where = f"imagefolder:{arg}"
        for k, v in (("resize", resize), ("crop", crop)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise BenchError(f"{where}: {k} must be a positive integer, e.g. {k}=224; got {v!r}")
        if interpolation is not None and interpolation not in INTERPOLATIONS:
            raise BenchError(f"{where}: interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                             f"got {interpolation!r}")
        if resize is not None and crop is None:
            raise BenchError(f"{where}: resize= needs crop= (e.g. resize=256, crop=224)")
        self.resize, self.crop, self.interpolation = resize, crop, interpolation
        self.proximity = (check_proximity(proximity, where) if proximity is not None
                          else guess_proximity(Path(arg).name))

    def display_name(self) -> str:
        params = {k: getattr(self, k) for k in ("resize", "crop", "interpolation")
                  if getattr(self, k) is not None}
        return str(Spec(Path(self.arg.rstrip("/\\")).name or self.arg, None, params))

    def preprocess(self, model: Preprocess | None) -> Preprocess | None:
        """The model's preprocessing with this set's overrides (None: neither gives a size)."""
        if self.crop is None:
            if model is not None and self.interpolation is not None:
                return Preprocess(model.resize, model.crop, self.interpolation, model.mean,
                                  model.std, model.source)
            return model
        interp = self.interpolation or (model.interpolation if model is not None else "bilinear")
        return Preprocess(self.resize or self.crop, self.crop, interp,
                          source=f"imagefolder:{self.arg}")

    def load(self, split: str, ctx: LoadContext) -> ImageSet:
        self.check_split(split)
        where = f"imagefolder:{self.arg}"
        root = resolve_data_path(self.arg, ctx, where)
        if not root.is_dir():
            raise BenchError(f"{where}: {root} is not a folder")
        sub = root / ("train" if split == "train" else "val")
        if not sub.is_dir():
            if split == "train":
                raise BenchError(f"{where}: no {sub} folder; an ID imagefolder holds "
                                 f"train/<class>/* and val/<class>/*")
            sub = root
        files, labels, classes = find_images(sub)
        if not files:
            raise BenchError(f"{where}: no images in {sub} or its subfolders (empty set)")
        images = FileImages(tuple(str(p) for p in files), self.preprocess(ctx.preprocess),
                            fingerprint(sub, files), f"{where} ({split})")
        images.checked_preprocess()
        return ImageSet(self.display_name(), images,
                        None if labels is None else torch.tensor(labels, dtype=torch.int64),
                        classes, source=str(sub))
