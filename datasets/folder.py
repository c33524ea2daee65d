"""``folder:PATH``: an ImageFolder tree (one subfolder per class) or a flat folder of images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench._lazy import torch
from bench.datasets._proximity import guess_proximity
from bench.datasets.base import Dataset, ImageSet, LoadContext, check_proximity, resolve_data_path
from bench.errors import BenchError
from bench.registry import DATASETS, Spec

#: torchvision's IMG_EXTENSIONS
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_GREY_MODES = frozenset({"1", "L", "LA"})


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in EXTENSIONS)


@DATASETS.register("folder")
class Folder(Dataset):
    """Images decoded once with Pillow from ``PATH/<class>/*.png|jpg|...`` (as ImageFolder).

    Classes are the subfolder names, sorted; label = class index (as ImageFolder). A folder with
    images and no class subfolders gives an unlabelled set. Files are sorted by path. Images are
    grey (N, 1, H, W) when every file is grey, else RGB (N, 3, H, W) (Pillow ``convert``).
    All images must share one size, or give ``size=S`` to resize each to S x S with Pillow's
    bilinear filter (antialiased when shrinking) as it is decoded. ``proximity`` as for ``npz``.
    A relative PATH is looked for in the current directory first, then under the data root.
    """

    takes_arg = True

    def __init__(self, arg: str, *, size: int | None = None, proximity: str | None = None) -> None:
        self.arg = arg
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise BenchError(f"folder:{arg}: size must be a positive integer, e.g. size=32; "
                             f"got {size!r}")
        self.size = size
        self.proximity = (check_proximity(proximity, f"folder:{arg}") if proximity is not None
                          else guess_proximity(Path(arg).name))

    def display_name(self) -> str:
        """The folder name with the non-default parameters, e.g. ``textures(size=32)``."""
        params = {"size": self.size} if self.size is not None else {}
        return str(Spec(Path(self.arg.rstrip("/\\")).name or self.arg, None, params))

    def load(self, split: str, ctx: LoadContext) -> ImageSet:
        self.check_split(split)
        where = f"folder:{self.arg}"
        root = resolve_data_path(self.arg, ctx, where)
        if not root.is_dir():
            raise BenchError(f"{where}: {root} is not a folder; use npz:{self.arg} for .npz files")
        class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and _images_in(d))
        if class_dirs:
            classes: list[str] | None = [d.name for d in class_dirs]
            files = [(p, i) for i, d in enumerate(class_dirs) for p in _images_in(d)]
        else:
            classes = None
            files = [(p, -1) for p in _images_in(root)]
        if not files:
            raise BenchError(f"{where}: no images ({', '.join(EXTENSIONS)}) in {root} or its "
                             f"subfolders (empty set)")
        from PIL import Image, UnidentifiedImageError

        modes, sizes = [], []
        for p, _ in files:          # headers only: decide one mode and check sizes before decoding
            try:
                with Image.open(p) as im:
                    modes.append(im.mode)
                    sizes.append(im.size)
            except (OSError, UnidentifiedImageError) as exc:
                raise BenchError(f"{where}: cannot read image {p} ({exc})") from None
        mode = "L" if all(m in _GREY_MODES for m in modes) else "RGB"
        if self.size is None and len(set(sizes)) > 1:
            i = next(k for k, s in enumerate(sizes) if s != sizes[0])
            raise BenchError(f"{where}: images differ in size ({files[0][0].name} is "
                             f"{sizes[0][0]}x{sizes[0][1]}, {files[i][0].name} is "
                             f"{sizes[i][0]}x{sizes[i][1]}); add size=32 (or another size)")
        w, h = (self.size, self.size) if self.size is not None else sizes[0]
        c = 1 if mode == "L" else 3
        out = np.empty((len(files), h, w, c), dtype=np.uint8)
        for k, (p, _) in enumerate(files):   # one decode per file (no per-image work later)
            with Image.open(p) as im:
                im = im.convert(mode)
                if im.size != (w, h):
                    im = im.resize((w, h), Image.BILINEAR)
                out[k] = np.asarray(im).reshape(h, w, c)
        labels = None if classes is None else torch.tensor([i for _, i in files], dtype=torch.int64)
        return ImageSet(self.display_name(), torch.from_numpy(out.transpose(0, 3, 1, 2).copy()),
                        labels, classes, source=str(root))
