"""``mnist``: LeCun's handwritten digits from torchvision's raw idx files, read with numpy."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import ClassVar

import numpy as np

from bench._lazy import torch
from bench.datasets._files import check_md5, download
from bench.datasets.base import Dataset, ImageSet, LoadContext
from bench.errors import BenchError
from bench.registry import DATASETS

# torchvision's md5s of the official gzip files
_GZ_MD5 = {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
           "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
           "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
           "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (LeCun's format; ``.gz`` or not) as a uint8 array of the shape in its header.

    Header: two zero bytes, type code 0x08 (unsigned byte), number of dims, then each dim as a
    big-endian uint32; the data follow.
    """
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise BenchError(f"mnist: {path} is not an unsigned-byte idx file; re-download it")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)):
        raise BenchError(f"mnist: {path} is truncated ({len(raw) - offset} bytes of data for "
                         f"shape {dims}); re-download it")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


@DATASETS.register("mnist")
class Mnist(Dataset):
    """MNIST (LeCun et al. 1998): grey 28x28 digits, 10,000 test (and 60,000 train) images.

    Reads ``<data_root>/MNIST/raw/{t10k,train}-{images-idx3,labels-idx1}-ubyte`` (or the ``.gz``
    files), torchvision's raw layout; shape (N, 1, 28, 28). Only the test files are required;
    the train split loads when its files are there, so MNIST can also serve as an ID set. As an
    OOD set for CIFAR-10 it is "far" (OpenOOD v1.5).
    """

    is_id: ClassVar[bool] = True
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    proximity = "far"
    default_model: ClassVar[str | None] = "cnn"

    @classmethod
    def available(cls, data_root: Path, id_dataset: str) -> list[str]:
        return ["mnist"] if id_dataset != "mnist" and (data_root / "MNIST" / "raw").is_dir() else []

    def load(self, split: str, ctx: LoadContext) -> ImageSet:
        self.check_split(split)
        raw = Path(ctx.data_root).expanduser() / "MNIST" / "raw"
        prefix = "train" if split == "train" else "t10k"
        names = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
        paths = [self._find(raw, n) for n in names]
        if None in paths and ctx.download:
            self._download(ctx.data_root, split)
            paths = [self._find(raw, n) for n in names]
        if None in paths:
            missing = names[paths.index(None)]
            raise BenchError(f"mnist: {raw / missing}(.gz) not found; run with --download "
                             f"(needs internet), or use --data-root DIR where DIR/MNIST/raw/ holds "
                             f"the idx files (../shared/data has the test split)")
        ipath, lpath = paths
        assert ipath is not None and lpath is not None
        check_md5("mnist", {p: _GZ_MD5[p.name] for p in (ipath, lpath) if p.suffix == ".gz"})
        x, y = read_idx(ipath), read_idx(lpath)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise BenchError(f"mnist: {ipath} and {lpath} do not match ({x.shape} images, "
                             f"{y.shape} labels); re-download them")
        return ImageSet(self.display_name(), torch.from_numpy(x[:, None].copy()),
                        torch.from_numpy(y.astype(np.int64)), [str(i) for i in range(10)],
                        source=str(ipath))

    @staticmethod
    def _find(raw: Path, name: str) -> Path | None:
        for cand in (raw / name, raw / f"{name}.gz"):
            if cand.is_file():
                return cand
        return None

    @staticmethod
    def _download(root: Path, split: str) -> None:
        download("mnist", "MNIST", Path(root).expanduser(),
                 "use --data-root ../shared/data (test split only)", train=split == "train")
