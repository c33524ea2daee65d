"""``cifar10`` and ``cifar100``: torchvision's on-disk python format, read with pickle + numpy.

The batches are pickles; they are read by an unpickler that builds only dicts, lists, strings,
numbers and numpy arrays, so a crafted file in the data root cannot run code (docs/security.md).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench._lazy import torch
from bench.datasets._files import check_md5, download
from bench.datasets.base import Dataset, ImageSet, LoadContext
from bench.errors import BenchError
from bench.registry import DATASETS


class _ArrayUnpickler(pickle.Unpickler):
    """Refuses every global except what pickled numpy arrays need (no call of anything else)."""

    allowed: ClassVar[frozenset[tuple[str, str]]] = frozenset({
        (mod, name) for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")} | {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),   # how Python 3 writes bytes in protocol-2 pickles
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: not array data")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    # The official files are Python-2 pickles; latin1 gives str keys (as torchvision reads them).
    with open(path, "rb") as f:
        try:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, ImportError,
                AttributeError) as exc:
            raise BenchError(f"{path} is not a CIFAR batch of plain arrays ({exc}); "
                             f"re-create the folder") from None
    if not isinstance(obj, dict):
        raise BenchError(f"{path} holds a {type(obj).__name__}, not a CIFAR batch dict; "
                         f"re-create the folder")
    return obj


class _Cifar(Dataset):
    """Shared reader: ``<data_root>/<base_folder>/`` batches of ``data`` (N, 3072) uint8 rows.

    Each row holds the 32x32 planes R, G, B, so a reshape gives (N, 3, 32, 32) without a copy
    per image. Official md5s are checked; a mismatch is logged once per process and the files
    are used anyway (the shared development copy of CIFAR-10 is JPEG re-encoded on purpose).
    """

    is_id: ClassVar[bool] = True
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    base_folder: ClassVar[str]
    files: ClassVar[dict[str, tuple[tuple[str, str], ...]]]   # split -> ((file, md5), ...)
    meta: ClassVar[tuple[str, str]]                           # (file, md5)
    label_key: ClassVar[str]
    names_key: ClassVar[str]
    how_to_get: ClassVar[str]
    torchvision_name: ClassVar[str]
    md5_note: ClassVar[str] = ""

    def load(self, split: str, ctx: LoadContext) -> ImageSet:
        self.check_split(split)
        root = Path(ctx.data_root).expanduser()
        folder = root / self.base_folder
        needed = (*self.files[split], self.meta)
        if ctx.download and self._missing(folder, needed):
            self._download(root, split)
        missing = self._missing(folder, needed)
        if missing:
            raise BenchError(f"{self.name}: {folder / missing[0]} not found (looked in {folder}); "
                             f"{self.how_to_get}")
        check_md5(self.name, {folder / f: md5 for f, md5 in needed}, self.md5_note)
        data, labels = [], []
        for f, _ in self.files[split]:
            batch = _unpickle(folder / f)
            data.append(np.asarray(batch["data"], dtype=np.uint8))
            labels.append(np.asarray(batch[self.label_key], dtype=np.int64))
        x, y = np.concatenate(data), np.concatenate(labels)
        if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(y) != len(x):
            raise BenchError(f"{self.name}: {folder} holds {x.shape} data with {len(y)} labels, "
                             f"not (N, 3072) rows with N labels; re-create the folder")
        classes = [str(c) for c in _unpickle(folder / self.meta[0])[self.names_key]]
        return ImageSet(self.display_name(), torch.from_numpy(x.reshape(-1, 3, 32, 32)),
                        torch.from_numpy(y), classes, source=str(folder))

    @staticmethod
    def _missing(folder: Path, needed: tuple[tuple[str, str], ...]) -> list[str]:
        return [f for f, _ in needed if not (folder / f).is_file()]

    def _download(self, root: Path, split: str) -> None:
        download(self.name, self.torchvision_name, root, self.how_to_get.split("; ")[-1],
                 train=split == "train")


@DATASETS.register("cifar10")
class Cifar10(_Cifar):
    """CIFAR-10 (Krizhevsky 2009): 50,000 train / 10,000 test RGB 32x32 images, 10 classes.

    Reads ``<data_root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``
    (torchvision's layout, e.g. written by ``shared/data/prepare_cifar10.py``). md5s are
    torchvision's list; the development copy is JPEG re-encoded and differs, which is logged once.
    As an OOD set for CIFAR-100 it is "near" (OpenOOD v1.5).
    """

    proximity = "near"
    default_model = "resnet20"
    base_folder = "cifar-10-batches-py"
    files = {"train": (("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                       ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                       ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                       ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                       ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb")),
             "test": (("test_batch", "40351d587109b95175f43aff81a1287e"),)}
    meta = ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888")
    label_key, names_key = "labels", "label_names"
    torchvision_name = "CIFAR10"
    how_to_get = ("run with --download (needs internet); or "
                  "`python ../shared/data/prepare_cifar10.py --out DIR` then --data-root DIR")
    md5_note = (" (expected for the JPEG re-encoded development copy from prepare_cifar10.py, "
                "see shared/data/MANIFEST.md)")


@DATASETS.register("cifar100")
class Cifar100(_Cifar):
    """CIFAR-100 (Krizhevsky 2009): 50,000 / 10,000 RGB 32x32 images, 100 fine classes.

    Reads ``<data_root>/cifar-100-python/{train, test, meta}`` with the fine labels. As an OOD
    set for CIFAR-10 it is "near" (OpenOOD v1.5). md5s are torchvision's list.
    """

    proximity = "near"
    default_model = "resnet20"
    base_folder = "cifar-100-python"
    files = {"train": (("train", "16019d7e3df5f24257cddd939b257f8d"),),
             "test": (("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),)}
    meta = ("meta", "7973b15100ade9c7d40fb424638fde48")
    label_key, names_key = "fine_labels", "fine_label_names"
    torchvision_name = "CIFAR100"

    @classmethod
    def available(cls, data_root: Path, id_dataset: str) -> list[str]:
        return (["cifar100"] if id_dataset != "cifar100"
                and (data_root / cls.base_folder / "test").is_file() else [])
    how_to_get = ("run with --download (needs internet); or unpack "
                  "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz into --data-root DIR")
