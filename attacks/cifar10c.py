"""``cifar10c:NAME``: the released CIFAR-10-C images of the ID test images, looked up by index."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench._lazy import nn, torch
from bench.attacks.base import CORRUPTION, SHIFTS, Shift
from bench.errors import BenchError, did_you_mean

if TYPE_CHECKING:
    from torch import Tensor

#: the 19 files of the release (Hendrycks & Dietterich 2019, zenodo record 2535967)
CORRUPTIONS = ("brightness", "contrast", "defocus_blur", "elastic_transform", "fog", "frost",
               "gaussian_blur", "gaussian_noise", "glass_blur", "impulse_noise",
               "jpeg_compression", "motion_blur", "pixelate", "saturate", "shot_noise", "snow",
               "spatter", "speckle_noise", "zoom_blur")
FOLDER = "CIFAR-10-C"


@SHIFTS.register("cifar10c")
class Cifar10C(Shift):
    """The official CIFAR-10-C files as a shift: ``cifar10c:fog(severity=3)``.

    Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
    Perturbations", ICLR 2019. ``<data_root>/CIFAR-10-C/NAME.npy`` holds 5 x 10,000 uint8
    32x32x3 images (severities 1..5 in that order, each block the CIFAR-10 test set in its
    original order) and ``labels.npy`` the matching labels. Severity ``s`` (default 3) selects
    rows ``(s-1)*n : s*n`` with ``n = rows / 5``.

    Nothing is computed: for the ID test images at split positions ``index`` the shift returns
    row ``(s-1)*n + index``, i.e. the released corrupted version of the same image.
    ``Shift.__call__`` passes ``index`` because the class sets ``needs_index = True``. As a
    check that the data root's CIFAR-10 is the original one (same order), ``labels.npy`` at
    those rows must equal the given labels ``y``. Unlike our own corruptions (METHODS.md §5)
    these images are uint8-quantised, as released; they are returned as float in [0, 1].
    Shapes: x (N, 3, 32, 32) float (only its shape, dtype and device are used), y (N,),
    index (N,) int64 -> (N, 3, 32, 32).
    """

    takes_arg: ClassVar[bool] = True
    group: ClassVar[str] = CORRUPTION
    needs_index: ClassVar[bool] = True

    def __init__(self, arg: str, *, severity: int | None = None, data_root: Any = None):
        self.arg = arg
        severity = 3 if severity is None else severity
        if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
            raise BenchError(f"cifar10c:{arg}: severity must be an integer 1..5, got {severity!r}")
        self.severity = severity
        # where the files are is context, not a parameter: records stay comparable across machines
        self.data_root = None if data_root is None else Path(data_root).expanduser()

    def get_params(self) -> dict[str, Any]:
        return {"arg": self.arg, "severity": self.severity}

    def folder(self) -> Path:
        if self.data_root is None:
            raise BenchError(f"cifar10c:{self.arg} needs a data root: pass --data-root DIR (with "
                             f"DIR/{FOLDER}/{self.arg}.npy) or set BENCH_DATA")
        return self.data_root / FOLDER

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        folder = self.folder()
        path, labels_path = folder / f"{self.arg}.npy", folder / "labels.npy"
        if not path.is_file():
            found = sorted(p.stem for p in folder.glob("*.npy") if p.stem != "labels") \
                if folder.is_dir() else []
            names = found or list(CORRUPTIONS)
            hint = did_you_mean(self.arg, names, show=lambda c: f"cifar10c:{c}")
            raise BenchError(f"CIFAR-10-C file {path} not found{hint} (download CIFAR-10-C.tar "
                             f"from zenodo.org/record/2535967 and unpack it into "
                             f"{self.data_root})")
        if not labels_path.is_file():
            raise BenchError(f"CIFAR-10-C labels {labels_path} not found (it comes with the "
                             f"release, beside {path.name})")
        # memory-mapped: a 150 MB file, of which only the requested rows are read
        images = np.load(path, mmap_mode="r")
        labels = np.load(labels_path, mmap_mode="r")
        if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or images.dtype != np.uint8:
            raise BenchError(f"{path}: expected uint8 images of shape (5*n, 32, 32, 3), got "
                             f"{images.dtype} {images.shape}")
        if images.shape[0] % 5 or labels.shape != (images.shape[0],):
            raise BenchError(f"{path}: {images.shape[0]} images and {labels.shape} labels; "
                             f"expected 5 severities of n images and 5*n labels")
        return images, labels

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator, index: Tensor) -> Tensor:
        """x: (N,3,32,32) float, y: (N,), index: (N,) test-split positions -> (N,3,32,32)."""
        if x.shape[1:] != (3, 32, 32):
            raise BenchError(f"cifar10c:{self.arg} holds 3x32x32 CIFAR-10 images; the ID images "
                             f"are {tuple(x.shape[1:])} (use --dataset cifar10)")
        images, labels = self._load()
        n = images.shape[0] // 5
        idx = index.detach().cpu().numpy().astype(np.int64)
        if idx.shape != (x.shape[0],):
            raise ValueError(f"index has shape {idx.shape}, expected ({x.shape[0]},)")
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise BenchError(f"cifar10c:{self.arg}: test index {int(idx.max())} outside the "
                             f"{n} images per severity of {self.folder() / self.arg}.npy")
        rows = (self.severity - 1) * n + idx
        if not np.array_equal(labels[rows].astype(np.int64), y.detach().cpu().numpy()):
            raise BenchError("CIFAR-10-C labels do not match the ID test set: is the data root's "
                             "CIFAR-10 the original? (the test images must be in the original "
                             "CIFAR-10 order)")
        out = torch.from_numpy(np.ascontiguousarray(images[rows])).permute(0, 3, 1, 2)
        return out.to(device=x.device, dtype=x.dtype).div_(255.0)


__all__ = ["Cifar10C", "CORRUPTIONS"]
