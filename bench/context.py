"""Stage 2 of a run: the ID side, built once and never changed afterwards.

:func:`build_context` loads the ID dataset, splits its test set (METHODS.md §1), loads the
classifier and computes (or reads from the cache) the views of the training split and of the
test split. It returns the immutable :class:`Context` that every unit of work receives, and the
:class:`IdViews` that only the fit stage needs (so they never travel to workers).
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from bench import cache, progress
from bench.errors import BenchError
from bench.plan import Paths, Plan, slug
from bench.views import Views, cached_views

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    """What every unit needs of the ID side: picklable, shared read-only by all units."""

    dataset: dict[str, Any]      # the records' dataset block
    model: Any                   # bench.models.Classifier, eval mode, no gradients
    model_meta: dict[str, Any]   # the records' model block (with clean_acc, clean_ece)
    model_key: dict[str, Any]    # what names the network in cache keys (weights, norm, code)
    id_shape: tuple[int, int, int]
    test_images: Tensor          # (n_test, C, H, W) uint8: the scored ID test images
    test_labels: Tensor          # (n_test,) int64
    test_index: Tensor           # (n_test,) positions of the scored images in the test split
    clean_pred: Tensor           # (n_test,) the classifier's predictions on them
    clean: dict[str, Any]        # acc, ece on them
    env: dict[str, Any]
    device: str
    batch_size: int
    keep_images: bool            # some detector needs pixels
    views_s: float               # seconds the ID views took (records' timings.views)
    out_dir: Path                # this (dataset, model, weights)'s records folder
    workers: int = 0             # DataLoader processes decoding file-based sets
    precision: str = "fp32"      # dtype of the forward pass for views (autocast)

    @property
    def streams(self) -> bool:
        """The ID test images are files decoded batch by batch (``imagefolder:``)."""
        return not isinstance(self.test_images, torch.Tensor)

    def view_opts(self) -> dict[str, Any]:
        """Keyword arguments of :func:`bench.views.cached_views` / ``forward_views``."""
        return {"batch_size": self.batch_size, "device": self.device, "workers": self.workers,
                "precision": self.precision}


@dataclass(frozen=True)
class IdData:
    """The ID dataset's splits (METHODS.md §1): train, the whole test split, val/test indices."""

    train: Any                   # bench.datasets.base.ImageSet
    test_full: Any
    val_idx: Tensor
    test_idx: Tensor
    #: the geometric preprocessing of file-based sets (None: in-memory sets)
    preprocess: Any = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.train.shape

    @property
    def n_test(self) -> int:
        return len(self.test_idx)


@dataclass(frozen=True)
class IdViews:
    """Views the fit stage uses: ``fit`` (train split), ``val`` and ``test`` (test split)."""

    fit: Views
    val: Views
    test: Views


def environment(device: str) -> dict[str, Any]:
    import scipy
    import sklearn

    import bench

    return {"python": sys.version.split()[0], "shiftbench": bench.__version__,
            "torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__, "platform": platform.platform(),
            "device": device}


def load_id_data(plan: Plan, paths: Paths) -> IdData:
    """The ID dataset's train and test splits, and the val/test split of the latter."""
    from bench.datasets.base import LoadContext, load_set, split_val_test
    from bench.registry import MODELS, parse_spec

    # file-based sets take the classifier's own preprocessing (torchvision:, timm: models)
    preprocess = None
    if plan.streams:
        arch = MODELS.create(parse_spec(plan.model))
        preprocess = arch.preprocess(plan.weights)
    ctx = LoadContext(data_root=paths.data_root, download=plan.download, seed=0, cwd=paths.cwd,
                      preprocess=preprocess)
    with progress.task(f"loading {plan.dataset}", None):
        _, train = load_set(plan.dataset, "train", ctx)
        _, test_full = load_set(plan.dataset, "test", ctx)
    if test_full.labels is None or train.labels is None:
        raise BenchError(f"{plan.dataset}: the ID dataset needs labels")
    val_idx, test_idx = (torch.as_tensor(i, dtype=torch.long)
                         for i in split_val_test(test_full.labels, plan.split_seed))
    return IdData(train, test_full, val_idx, test_idx,
                  train.images.preprocess if train.streams else None)


def build_context(plan: Plan, paths: Paths, data: IdData,
                  say: Callable[[str], None] = lambda msg: None) -> tuple[Context, IdViews]:
    """Load the classifier, compute the ID views; ``say`` receives one-line progress news."""
    from bench.metrics import classifier_metrics
    from bench.models import load_classifier
    from bench.registry import MODELS, parse_spec

    train, test_full, val_idx, test_idx = data.train, data.test_full, data.val_idx, data.test_idx
    num_classes = int(max(int(train.labels.max()), int(test_full.labels.max())) + 1)
    if train.classes:
        num_classes = max(num_classes, len(train.classes))
    c, h, w = train.shape
    data_sha = {"train": train.sha256(), "test": test_full.sha256()}

    device = torch.device(plan.device)
    model, info = load_classifier(
        plan.model, num_classes=num_classes, in_channels=c, image_size=h,
        dataset=plan.dataset_name, weights=plan.weights, norm=plan.norm, device=device,
        train_set=train, seed=plan.model_seed, home=paths.home, download=plan.download)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model_key = {"spec": info.get("spec", plan.model), "weights_sha256": info.get("weights_sha256"),
                 "norm": info.get("norm"), "mean": info.get("mean"), "std": info.get("std"),
                 # cached features also depend on the network's code, not only on its weights
                 "code": cache.config_hash([cache.source_hash(type(model)),
                                            cache.source_hash(type(model.net))])}
    # keys added only when they say something, so the caches of earlier runs stay valid
    if info.get("library"):
        model_key["library"] = info["library"]
    if plan.precision != "fp32":
        model_key["precision"] = plan.precision
    if info.get("library") and not plan.streams:
        arch = MODELS.create(parse_spec(plan.model))
        crop = arch.preprocess(plan.weights).crop
        if (h, w) != (crop, crop):
            log.warning("%s was made for %dx%d inputs (its library's preprocessing); %s images "
                        "are %dx%d and reach it as they are; imagefolder: datasets apply the "
                        "library's resize and crop", plan.model, crop, crop, plan.dataset, h, w)

    t = time.perf_counter()
    views_dir = cache.cache_dir("views", paths.home)

    def views(images: Tensor, name: str, key: dict[str, Any], labels: Tensor) -> Views:
        v, _ = cached_views(model, images, name=name, key=key, model_key=model_key,
                            cache_dir=views_dir, batch_size=plan.batch_size, device=device,
                            workers=plan.workers, precision=plan.precision,
                            on_disk=plan.streams)
        v.labels, v.model, v.index = labels, model, torch.arange(images.shape[0])
        return v

    # ID views: fit = train split, val/test from the test split (METHODS.md §1)
    fit_v = views(train.images, "fit", {"set": "train", "sha": data_sha["train"]}, train.labels)
    test_all = views(test_full.images, "test", {"set": "test", "sha": data_sha["test"]},
                     test_full.labels)
    test_all.images = test_full.images
    if plan.keep_images:
        fit_v.images = train.images
    val_v = test_all.subset(val_idx, name="val")
    test_v = test_all.subset(test_idx, name="test")
    if not plan.keep_images:
        val_v.images = test_v.images = None
    views_s = time.perf_counter() - t
    _check_no_leak(fit_v, val_v, test_idx)

    clean = classifier_metrics(test_v.logits, test_v.labels)
    say(f"clean accuracy of {model_key['spec']} on {plan.dataset} test ({len(test_v)} images): "
        f"{clean['acc']:.4f}  ECE {clean['ece']:.4f}")
    # a folder is named by itself in tables (imagefolder:/data/imagenet -> imagenet)
    dataset = {"name": train.name if plan.streams else plan.dataset_name, "spec": plan.dataset,
               "sha256": data_sha,
               "n_fit": len(fit_v), "n_val": len(val_v), "n_test": len(test_v),
               "shape": [c, h, w], "data_root": str(paths.data_root),
               "split_seed": plan.split_seed, "pixel_step": plan.pixel_step}
    # the seed that trained the network, for networks trained here (not for checkpoints)
    trained = info.get("source") in ("trained", "cache")
    out_dir = paths.out / slug(
        f"{plan.dataset}__{model_key['spec']}__{(model_key['weights_sha256'] or 'none')[:8]}", 100)
    context = Context(
        dataset=dataset, model=model,
        model_meta={**info, "train_seed": plan.model_seed if trained else None,
                    "precision": plan.precision,
                    "clean_acc": clean["acc"], "clean_ece": clean["ece"]},
        model_key=model_key, id_shape=(c, h, w), test_images=test_full.images[test_idx],
        test_labels=test_full.labels[test_idx], test_index=test_idx,
        clean_pred=test_v.logits.argmax(1), clean=clean, env=environment(str(device)),
        device=str(device), batch_size=plan.batch_size, keep_images=plan.keep_images,
        views_s=views_s, out_dir=out_dir, workers=plan.workers, precision=plan.precision)
    return context, IdViews(fit=fit_v, val=val_v, test=test_v)


def _check_no_leak(fit: Views, val: Views, test_idx: Tensor) -> None:
    """Fit and val never contain a scored ID test image (METHODS.md §1)."""
    overlap = np.intersect1d(val.index.numpy(), test_idx.numpy())
    if overlap.size:
        raise RuntimeError(f"val set overlaps the scored test set ({overlap.size} images)")
    if fit.name != "fit":
        raise RuntimeError("fit views must come from the training split")


__all__ = ["Context", "IdData", "IdViews", "build_context", "load_id_data", "environment"]
