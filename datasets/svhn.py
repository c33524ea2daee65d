"""``svhn``: Street View House Numbers test set from torchvision's ``test_32x32.mat``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from bench._lazy import torch
from bench.datasets._files import check_md5, download
from bench.datasets.base import Dataset, ImageSet, LoadContext
from bench.errors import BenchError
from bench.registry import DATASETS

_TEST_MD5 = "eb5a983be6a315427106f1b164d9cef3"  # torchvision's md5 of test_32x32.mat


@DATASETS.register("svhn")
class Svhn(Dataset):
    """SVHN (Netzer et al. 2011) test split: 26,032 RGB 32x32 digit crops, labels 0..9.

    Reads ``<data_root>/svhn/test_32x32.mat`` (where ``--download`` puts it), else
    ``<data_root>/test_32x32.mat`` (torchvision's root layout), with ``scipy.io.loadmat``:
    ``X`` is (32, 32, 3, N) and becomes (N, 3, 32, 32); label 10 means digit 0 and becomes 0,
    as in torchvision. As an OOD set for CIFAR-10 it is "far" (OpenOOD v1.5).
    """

    splits: ClassVar[tuple[str, ...]] = ("test",)
    proximity = "far"

    @classmethod
    def available(cls, data_root: Path, id_dataset: str) -> list[str]:
        found = any(p.is_file() for p in (data_root / "svhn" / "test_32x32.mat",
                                          data_root / "test_32x32.mat"))
        return ["svhn"] if found else []

    def load(self, split: str, ctx: LoadContext) -> ImageSet:
        self.check_split(split)
        root = Path(ctx.data_root).expanduser()
        cands = (root / "svhn" / "test_32x32.mat", root / "test_32x32.mat")
        path = next((p for p in cands if p.is_file()), None)
        if path is None and ctx.download:
            self._download(root / "svhn")
            path = next((p for p in cands if p.is_file()), None)
        if path is None:
            raise BenchError(f"svhn: test_32x32.mat not found (looked for {cands[0]} and "
                             f"{cands[1]}); run with --download (needs internet), or put "
                             f"http://ufldl.stanford.edu/housenumbers/test_32x32.mat there")
        check_md5("svhn", {path: _TEST_MD5})
        try:
            import scipy.io

            mat = scipy.io.loadmat(path)
        except (OSError, ValueError) as exc:
            raise BenchError(f"svhn: cannot read {path} ({exc}); re-download it") from None
        if "X" not in mat or "y" not in mat or mat["X"].ndim != 4 or mat["X"].shape[2] != 3:
            raise BenchError(f"svhn: {path} lacks X (32, 32, 3, N) and y; re-download it")
        x = np.ascontiguousarray(mat["X"].astype(np.uint8, copy=False).transpose(3, 2, 0, 1))
        y = mat["y"].astype(np.int64).reshape(-1)
        if len(y) != len(x):
            raise BenchError(f"svhn: {path} has {len(x)} images but {len(y)} labels; "
                             f"re-download it")
        y[y == 10] = 0
        return ImageSet(self.display_name(), torch.from_numpy(x), torch.from_numpy(y),
                        [str(i) for i in range(10)], source=str(path))

    @staticmethod
    def _download(folder: Path) -> None:
        download("svhn", "SVHN", folder, f"copy test_32x32.mat into {folder}", split="test")
