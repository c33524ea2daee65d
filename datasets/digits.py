"""``digits``: scikit-learn's embedded 8x8 digits, the default ID set (METHODS.md §1)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from bench._lazy import torch
from bench.datasets.base import Dataset, ImageSet, LoadContext
from bench.registry import DATASETS


@DATASETS.register("digits")
class Digits(Dataset):
    """scikit-learn ``load_digits``: 1,797 grey 8x8 digits, 10 classes, shipped with scikit-learn.

    Pixels 0..16 are stored as uint8 ``round(v * 255 / 16)``, shape (N, 1, 8, 8). The split is
    ``train_test_split(arange(1797), test_size=0.5, stratify=y, random_state=0)`` (898 train,
    899 test); each split keeps the original file order (indices ascending), so the test split
    is ordered like every other ID test split before ``split_val_test`` picks val from it.
    Needs no files and no network, which is why it is the default.
    """

    is_id: ClassVar[bool] = True
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    default_model: ClassVar[str | None] = "cnn"
    #: 17 grey levels (0..16 stored as round(v * 255 / 16)): one step is 16/255
    pixel_step: ClassVar[float] = 16 / 255

    def load(self, split: str, ctx: LoadContext) -> ImageSet:
        self.check_split(split)
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        d = load_digits()
        y = d.target.astype(np.int64)
        x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
        train, test = train_test_split(np.arange(len(y)), test_size=0.5, stratify=y,
                                       random_state=0)
        idx = np.sort(train if split == "train" else test)
        return ImageSet(self.display_name(), torch.from_numpy(np.ascontiguousarray(x[idx])),
                        torch.from_numpy(y[idx]), [str(c) for c in d.target_names],
                        source="sklearn.datasets.load_digits")
