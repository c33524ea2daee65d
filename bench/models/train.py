"""Training classifiers: ``bench train``, and first-use training of small nets (``cnn``).

Recipe of :func:`train_classifier` (the usual CIFAR ResNet schedule, e.g. He et al. 2016 and
akamaster's trainer, with a one-cycle rate instead of step decay so that short runs converge):
SGD with Nesterov momentum 0.9 and weight decay 5e-4, one-cycle learning rate (15 % linear
warm-up to ``lr``, cosine annealing to ~0, per step; ``schedule="cosine"`` anneals from ``lr``
without warm-up), cross-entropy, random pad-and-crop (zero padding, one offset per image) and
horizontal flips, done as whole-batch tensor ops on the training device.

All randomness (initial weights, shuffling, augmentation, the hold-out split) comes from
``seed``: a CPU ``torch.Generator`` and scikit-learn's ``random_state``; no global seeding.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from bench._lazy import F, torch
from bench.errors import BenchError

from bench.models.base import (CHECKPOINT_FORMAT, Architecture, read_checkpoint,
                               resolve_norm)
from bench.registry import MODELS, parse_spec
from bench.results import atomic_write_bytes
from bench.views import to_float01

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from torch import Tensor

    from bench.datasets.base import ImageSet
    from bench.models._classifier import Classifier

Progress = Callable[[int, int, float], None]


def augment_batch(x: Tensor, *, pad: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Random crop after zero-padding by ``pad`` (one offset per image) and random h-flip.

    x: (N, C, H, W) float on any device -> same shape. Offsets and flips are drawn on the CPU
    ``generator`` (so the draws do not depend on the device), then gathered in one indexing op.
    """
    n, c, h, w = x.shape
    if pad > 0:
        off = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).to(x.device)
        xp = F.pad(x, (pad, pad, pad, pad))
        rows = off[:, :1] + torch.arange(h, device=x.device)          # (N, H)
        cols = off[:, 1:] + torch.arange(w, device=x.device)          # (N, W)
        batch = torch.arange(n, device=x.device)[:, None, None]
        # advanced indices around a slice put the indexed dims first: (N, H, W, C)
        x = xp[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
    if flip:
        m = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(m.view(n, 1, 1, 1), x.flip(3), x)
    return x


def accuracy(model: Classifier, images: Tensor, labels: Tensor, *, batch_size: int = 512,
             device: str | torch.device | None = None) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on uint8 ``images`` (N, C, H, W)."""
    device = device or model.device
    was_training = model.training
    model.eval()
    try:
        correct = 0
        with torch.inference_mode():
            for s in range(0, images.shape[0], batch_size):
                x = to_float01(images[s:s + batch_size].to(device))
                correct += int((model(x).argmax(1).cpu() == labels[s:s + batch_size]).sum())
    finally:
        model.train(was_training)
    return correct / max(1, images.shape[0])


def fit(model: Classifier, images: Tensor, labels: Tensor, *, epochs: int, batch_size: int,
        lr: float, optimizer: str = "sgd", weight_decay: float = 5e-4,
        schedule: str = "onecycle", crop_pad: int = 4, flip: bool = True,
        device: str | torch.device = "cpu", generator: torch.Generator,
        progress: Progress | None = None) -> list[float]:
    """Train ``model`` in place on uint8 ``images`` (N,C,H,W) and ``labels`` (N,).

    Returns the mean training loss of each epoch. The model is left in eval mode.
    """
    model.to(device).train()
    x_all, y_all = images.to(device), labels.to(device=device, dtype=torch.int64)
    n = x_all.shape[0]
    steps = math.ceil(n / batch_size)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        raise BenchError(f"unknown optimizer {optimizer!r}: use sgd or adam")
    if schedule == "onecycle":
        # cycle_momentum=False: keep momentum at 0.9 as the recipe says
        sched: Any = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=epochs * steps, pct_start=0.15, cycle_momentum=False)
    elif schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps)
    elif schedule == "constant":
        sched = None
    else:
        raise BenchError(f"unknown schedule {schedule!r}: use onecycle, cosine or constant")
    losses: list[float] = []
    try:
        for epoch in range(epochs):
            perm = torch.randperm(n, generator=generator).to(device)
            total = torch.zeros((), device=device)
            for i in range(steps):
                idx = perm[i * batch_size:(i + 1) * batch_size]
                xb = augment_batch(to_float01(x_all[idx]), pad=crop_pad, flip=flip,
                                   generator=generator)
                loss = F.cross_entropy(model(xb), y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                total += loss.detach() * idx.shape[0]  # stays on the device: no sync per step
            losses.append(float(total) / n)
            if not math.isfinite(losses[-1]):
                raise BenchError(f"training diverged in epoch {epoch + 1} (loss "
                                 f"{losses[-1]}): lower --lr")
            if progress is not None:
                progress(epoch + 1, epochs, losses[-1])
    finally:
        model.eval()
    return losses


def save_checkpoint(model: Classifier, path: str | Path, *, info: dict[str, Any] | None = None
                    ) -> str:
    """Write ``model`` (weights + arch + normalisation) atomically; returns the file's sha256.

    Format ``{'format': 'shiftbench.model', 'format_version': 1, 'arch', 'num_classes', 'norm',
    'mean', 'std', 'state_dict', 'info'}``; ``load_classifier(arch, weights=path)`` reads it and
    takes its normalisation by default. ``info`` must hold only JSON-like values.
    """
    payload = {
        "format": CHECKPOINT_FORMAT, "format_version": 1, "arch": model.arch,
        "num_classes": model.num_classes, "norm": model.norm,
        "mean": [float(v) for v in model.mean.flatten()],
        "std": [float(v) for v in model.std.flatten()],
        "state_dict": {k: v.detach().cpu() for k, v in model.net.state_dict().items()},
        "info": json.loads(json.dumps(info or {})),   # fails loudly on non-JSON values
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def _indices_sha256(idx: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.sort(idx), dtype="<i8").tobytes()).hexdigest()


def holdout_split(labels: Tensor | np.ndarray, holdout: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train indices, held-out indices), both ascending; holdout = fraction kept out."""
    y = np.asarray(labels)
    idx = np.arange(len(y))
    if holdout <= 0:
        return idx, idx[:0]
    try:
        from sklearn.model_selection import train_test_split

        tr, ho = train_test_split(idx, test_size=holdout, stratify=y, random_state=seed)
    except ValueError as exc:  # e.g. a class with one image cannot be split
        raise BenchError(f"cannot hold out a stratified {holdout} of the training split: {exc}"
                         ) from None
    return np.sort(tr), np.sort(ho)


def train_classifier(arch_spec: str, train_set: "ImageSet", *, num_classes: int | None = None,
                     epochs: int = 30, batch_size: int = 128, lr: float = 0.1,
                     device: str | torch.device | None = None, seed: int = 0,
                     holdout: float = 0.0, progress: Progress | None = None,
                     norm: str | None = None, weight_decay: float = 5e-4,
                     optimizer: str = "sgd", schedule: str = "onecycle",
                     crop_pad: int | None = None, flip: bool = True
                     ) -> tuple[Classifier, dict[str, Any]]:
    """Train ``arch_spec`` (a MODELS spec, e.g. ``resnet20``) from scratch on ``train_set``.

    ``train_set``: an ImageSet with uint8 images (N, C, H, W) and labels. ``holdout`` keeps a
    stratified fraction of it out of training (``random_state=seed``) and reports accuracy on
    it. ``device`` None = CUDA when present. ``crop_pad`` None = image_size // 8 (4 for 32x32).
    ``norm`` None = the architecture's default (resolve_norm names).

    Returns the classifier (eval mode, on ``device``) and an info dict: spec, arch, norm, mean,
    std, source "trained", the full training config, n_train, n_holdout,
    ``holdout_indices_sha256`` (sha256 of the sorted int64 indices), train_data_sha256,
    losses per epoch, ``train_acc`` (eval mode, un-augmented, on the images trained on),
    ``holdout_acc`` (None without hold-out) and seconds. Save it with :func:`save_checkpoint`.
    """
    if train_set.labels is None:
        raise BenchError(f"{train_set.name} has no labels: training needs a labelled ID split")
    if not 0.0 <= holdout < 1.0:
        raise BenchError(f"holdout must be a fraction in [0, 1), got {holdout}")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise BenchError("epochs and batch_size must be >= 1 and lr > 0")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    images, labels = train_set.images, train_set.labels.to(torch.int64)
    _, c, h, w = images.shape
    if num_classes is None:
        num_classes = len(train_set.classes) if train_set.classes else int(labels.max()) + 1
    arch: Architecture = MODELS.create(parse_spec(arch_spec))
    norm_name, mean, std = resolve_norm(norm or arch.default_norm, c)
    pad = max(1, h // 8) if crop_pad is None else crop_pad

    tr, ho = holdout_split(labels, holdout, seed)
    g = torch.Generator().manual_seed(seed)
    net = arch.build(num_classes, c, h)
    arch.init_weights(net, g)
    from bench.models._classifier import Classifier

    model = Classifier(net, mean=mean, std=std, num_classes=num_classes, arch=arch.spec(),
                       norm=norm_name)
    t0 = time.perf_counter()
    tr_t = torch.from_numpy(tr)
    losses = fit(model, images[tr_t], labels[tr_t], epochs=epochs, batch_size=batch_size, lr=lr,
                 optimizer=optimizer, weight_decay=weight_decay, schedule=schedule,
                 crop_pad=pad, flip=flip, device=device, generator=g, progress=progress)
    seconds = time.perf_counter() - t0
    ho_t = torch.from_numpy(ho)
    info: dict[str, Any] = {
        "spec": arch_spec, "arch": arch.spec(), "weights": None, "weights_sha256": None,
        "norm": norm_name, "mean": list(mean), "std": list(std), "source": "trained",
        "config": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
                   "momentum": 0.9 if optimizer == "sgd" else None,
                   "nesterov": optimizer == "sgd", "weight_decay": weight_decay,
                   "schedule": schedule, "crop_pad": pad, "flip": flip, "seed": seed,
                   "holdout": holdout, "device": str(device)},
        "n_train": int(len(tr)), "n_holdout": int(len(ho)),
        "holdout_indices_sha256": _indices_sha256(ho),
        "train_data_sha256": train_set.sha256(),
        "losses": losses,
        "train_acc": accuracy(model, images[tr_t], labels[tr_t]),
        "holdout_acc": accuracy(model, images[ho_t], labels[ho_t]) if len(ho) else None,
        "seconds": seconds,
    }
    return model, info


def first_use_key(arch: Architecture, *, num_classes: int, in_channels: int, image_size: int,
                  mean: tuple[float, ...], std: tuple[float, ...], seed: int,
                  data_sha256: str) -> str:
    """Cache key of a first-use training: arch config, training config, norm, seed, data hash."""
    key = {"format_version": 1, "arch": arch.spec(), "num_classes": num_classes,
           "in_channels": in_channels, "image_size": image_size,
           "train": arch.first_use_training, "mean": list(mean), "std": list(std), "seed": seed,
           "data_sha256": data_sha256}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def train_on_first_use(arch: Architecture, *, num_classes: int, in_channels: int,
                       image_size: int, train_set: "ImageSet", norm: str, mean: tuple[float, ...],
                       std: tuple[float, ...], seed: int,
                       home: Path | None = None) -> tuple[Path, str]:
    """Path of the cached trained net (training it now if needed) and ``"trained"``/``"cache"``.

    Trains on the CPU with one thread whatever the run's device: a few seconds for these small
    nets, and the cached file is then the same whichever device or machine asked first.
    A cached file that does not read as a checkpoint with ``weights_only=True`` (damaged, or
    holding anything but tensors and plain data) is warned about and trained again, never run.
    """
    from bench.datasets.base import bench_home

    if train_set.labels is None:
        raise BenchError(f"{arch.name} is trained on first use, but {train_set.name} has no labels")
    digest = train_set.sha256()
    key = first_use_key(arch, num_classes=num_classes, in_channels=in_channels,
                        image_size=image_size, mean=mean, std=std, seed=seed,
                        data_sha256=digest)
    path = (bench_home() if home is None else Path(home)) / "models" / f"{arch.name}-{key}.pt"
    if path.is_file():
        try:
            read_checkpoint(path)
        except BenchError as exc:
            log.warning("ignoring the cached %s, training it again: %s", arch.name, exc)
        else:
            return path, "cache"
    cfg = dict(arch.first_use_training or {})
    g = torch.Generator().manual_seed(seed)
    net = arch.build(num_classes, in_channels, image_size)
    arch.init_weights(net, g)
    from bench.models._classifier import Classifier

    model = Classifier(net, mean=mean, std=std, num_classes=num_classes, arch=arch.spec(),
                       norm=norm)
    threads = torch.get_num_threads()
    # One thread: float reductions then do not depend on the machine's core count, so the cache
    # key (which cannot see it) names one set of weights; and these tiny ops run 10-20x slower
    # with several OpenMP threads on a busy machine (measured: 2.7 s vs 50 s for 10 epochs).
    torch.set_num_threads(1)
    try:
        losses = fit(model, train_set.images, train_set.labels, device="cpu", generator=g, **cfg)
    finally:
        torch.set_num_threads(threads)
    save_checkpoint(model, path, info={"trained_on": train_set.name, "data_sha256": digest,
                                       "seed": seed, "config": cfg, "losses": losses,
                                       "train_acc": accuracy(model, train_set.images,
                                                             train_set.labels)})
    return path, "trained"


__all__ = ["accuracy", "augment_batch", "first_use_key", "fit", "holdout_split",
           "save_checkpoint", "train_classifier", "train_on_first_use"]
