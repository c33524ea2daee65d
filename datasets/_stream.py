"""Image sets read from files batch by batch: never decoded all at once.

:class:`FileImages` is a list of image files and the :class:`Preprocess` that turns each
decoded file into the classifier's input pixels (resize the shorter side, centre-crop, as
torchvision's ``ImageClassification`` and timm's eval transform). :meth:`FileImages.batches` reads
it through a ``torch.utils.data.DataLoader`` with worker processes; memory holds one batch per
worker, whatever the size of the set.

Private module (not auto-registered): the registry imports every public module of the package.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from bench._lazy import torch
from bench.errors import BenchError

if TYPE_CHECKING:
    from torch import Tensor

#: torchvision's IMG_EXTENSIONS (compared lower-case, as its ``has_file_allowed_extension``)
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class Preprocess:
    """Decoded RGB image -> uint8 (3, crop, crop): shorter side resized to ``resize`` pixels with
    ``interpolation`` (antialiased), then the centre ``crop`` x ``crop`` pixels.

    These are the geometric steps of torchvision's ``ImageClassification`` (``resize_size``,
    ``crop_size``) and of timm's eval transform (``floor(img_size / crop_pct)``, ``img_size``);
    scaling to [0, 1] and ``mean``/``std`` normalisation belong to the classifier, so shifts act
    on the pixels the model sees. ``mean``/``std`` are the library's, kept for the model."""

    resize: int
    crop: int
    interpolation: str = "bilinear"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise BenchError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got "
                             f"{self.interpolation!r}")
        for k in ("resize", "crop"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise BenchError(f"{k} must be a positive integer number of pixels, got {v!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (3, self.crop, self.crop)

    def key(self) -> dict[str, Any]:
        """What the pixels depend on (cache keys, records)."""
        return {"resize": self.resize, "crop": self.crop, "interpolation": self.interpolation}

    def __call__(self, image: Any) -> Tensor:
        """A PIL image -> uint8 (3, crop, crop), exactly torchvision's steps before scaling."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        mode = InterpolationMode(self.interpolation)
        image = TF.resize(image, [self.resize], interpolation=mode, antialias=True)
        image = TF.center_crop(image, [self.crop, self.crop])
        return TF.pil_to_tensor(image)


def find_images(root: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    """ImageFolder's layout: ``root/<class>/**/*.jpg`` (classes sorted, files sorted per class,
    label = class position), or a flat folder of images (no labels). Extensions as torchvision."""
    def images_under(folder: Path) -> list[Path]:
        out = []
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            dirnames.sort()
            out += [Path(dirpath) / f for f in sorted(filenames)
                    if f.lower().endswith(EXTENSIONS)]
        return out

    class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
    files: list[Path] = []
    labels: list[int] = []
    classes: list[str] = []
    for d in class_dirs:
        found = images_under(d)
        if found:
            labels += [len(classes)] * len(found)
            classes.append(d.name)
            files += found
    if classes:
        return files, labels, classes
    flat = sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(EXTENSIONS))
    return flat, None, None


def fingerprint(root: Path, files: list[Path]) -> str:
    """sha256 of every file's path (relative to ``root``), size and modification time.

    Hashing the bytes of ImageNet would read 150 GB before any work; a file rewritten in place
    with the same size and time would go unnoticed (as ``make`` would miss it)."""
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


class _Decode:
    """Map-style dataset for the DataLoader: position -> (uint8 image, error text or "")."""

    def __init__(self, files: tuple[str, ...], preprocess: Preprocess):
        self.files = files
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor | None, str]:
        from PIL import Image, UnidentifiedImageError

        path = self.files[i]
        try:
            with Image.open(path) as im:
                return self.preprocess(im.convert("RGB")), ""
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            return None, f"cannot read image {path} ({exc})"


def _collate(items: list[tuple[Tensor | None, str]]) -> tuple[Tensor | None, str]:
    errors = [e for _, e in items if e]
    if errors:
        return None, errors[0]
    return torch.stack([x for x, _ in items]), ""


class FileImages:
    """Image files that stand where a uint8 (N, 3, crop, crop) tensor would: ``shape``,
    ``dtype``, ``len``, indexing (a slice or positions gives another FileImages), plus
    :meth:`batches` (decoded by DataLoader workers) and :meth:`digest` (names the content).

    ``fingerprint`` names the files (see :func:`fingerprint`); a subset's fingerprint also
    covers the positions it took."""

    dtype = property(lambda self: torch.uint8)
    ndim = 4

    def __init__(self, files: tuple[str, ...], preprocess: Preprocess | None, fingerprint: str,
                 name: str = "images"):
        self.files = tuple(files)
        self.preprocess = preprocess
        self.fingerprint = fingerprint
        self.name = name

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"FileImages({self.name!r}, {len(self)} files)"

    def checked_preprocess(self) -> Preprocess:
        if self.preprocess is None:
            raise BenchError(f"{self.name}: the images need a size: use a torchvision: or timm: "
                             f"model (their preprocessing is used) or give crop=224")
        return self.preprocess

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), *self.checked_preprocess().shape)

    def digest(self) -> str:
        """sha256 naming these images: files, order and preprocessing."""
        h = hashlib.sha256(self.fingerprint.encode())
        h.update(repr(sorted(self.checked_preprocess().key().items())).encode())
        h.update(repr(len(self.files)).encode())
        return h.hexdigest()

    def __getitem__(self, idx: Any) -> "FileImages":
        if isinstance(idx, slice):
            rows = list(range(len(self.files)))[idx]
        else:
            rows = [int(i) for i in torch.as_tensor(idx).reshape(-1)]
        h = hashlib.sha256(self.fingerprint.encode())
        h.update(torch.as_tensor(rows, dtype=torch.int64).numpy().tobytes())
        return FileImages(tuple(self.files[i] for i in rows), self.preprocess, h.hexdigest(),
                          self.name)

    def batches(self, batch_size: int, *, workers: int = 0,
                pin_memory: bool = False) -> Iterator[tuple[int, Tensor]]:
        """``(first row, uint8 (B, 3, crop, crop))`` in order, decoded by ``workers`` processes
        (0: in this one)."""
        from torch.utils.data import DataLoader

        loader = DataLoader(_Decode(self.files, self.checked_preprocess()),
                            batch_size=batch_size, shuffle=False, num_workers=workers,
                            collate_fn=_collate, pin_memory=pin_memory)
        row = 0
        for images, error in loader:
            if error:
                raise BenchError(f"{self.name}: {error}")
            yield row, images
            row += images.shape[0]

    def head(self, n: int = 8) -> Tensor:
        """The first ``n`` images, decoded (example grids in records)."""
        for _, images in self[:n].batches(n):
            return images
        return torch.empty(0, *self.checked_preprocess().shape, dtype=torch.uint8)


def image_batches(images: Any, batch_size: int, *, workers: int = 0,
                  pin_memory: bool = False) -> Iterator[tuple[int, Tensor]]:
    """``(first row, batch)`` of an in-memory tensor (slices) or of :class:`FileImages`."""
    if isinstance(images, FileImages):
        yield from images.batches(batch_size, workers=workers, pin_memory=pin_memory)
        return
    for start in range(0, images.shape[0], batch_size):
        yield start, images[start:start + batch_size]


def first_images(images: Any, n: int = 8) -> Tensor:
    """The first ``n`` images as a uint8 tensor (decoded when they are files)."""
    return images.head(n) if isinstance(images, FileImages) else images[:n]


__all__ = ["Preprocess", "FileImages", "find_images", "fingerprint", "image_batches",
           "first_images", "EXTENSIONS"]
