"""Classifiers: :func:`load_classifier` turns a model spec plus weights (a file, a zoo name, or
first-use training for small nets) into an eval-mode :class:`Classifier`.

The building blocks (the :class:`Classifier` wrapper, the :class:`Architecture` base registered in
``MODELS``, the normalisation presets, checkpoint reading with clear errors) live in
:mod:`bench.models.base` and are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench._lazy import torch
from bench.cache import file_sha256
from bench.errors import BenchError
from bench.models.base import (CHECKPOINT_FORMAT, NORMS, Architecture,
                               load_state_dict_checked, model_device, read_checkpoint,
                               resolve_norm)
from bench.registry import MODELS, parse_spec

if TYPE_CHECKING:
    from bench.datasets.base import ImageSet
    from bench.models._classifier import Classifier

#: the old name of :func:`bench.cache.file_sha256`
sha256_file = file_sha256


# --------------------------------------------------------------------------------------------
# load_classifier
# --------------------------------------------------------------------------------------------
def _default_norm(arch: Architecture, in_channels: int) -> str:
    name = arch.default_norm
    preset = NORMS.get(name)
    # a 3-channel preset cannot apply to grey images; "none" is the only neutral choice there
    return "none" if preset is not None and len(preset[0]) != in_channels else name


def load_classifier(spec: str, *, num_classes: int, in_channels: int, image_size: int,
                    dataset: str, weights: str | Path | None = None, norm: str | None = None,
                    device: str | torch.device = "cpu", train_set: "ImageSet | None" = None,
                    seed: int = 0, home: Path | None = None,
                    download: bool = False) -> tuple[Classifier, dict[str, Any]]:
    """Build ``spec`` from ``MODELS``, load its weights, wrap it with its input normalisation.

    ``weights``: a checkpoint path, ``zoo:NAME`` or ``akamaster`` (see :mod:`bench.models.zoo`),
    or None: then nets with ``first_use_training`` (``cnn``) are trained on ``train_set`` once
    and cached under ``home/models`` (``home`` None = ``bench_home()``); other nets take the dataset's default zoo checkpoint
    if it is already cached, else this is an error (never a silently random model).

    ``norm``: ``imagenet``, ``cifar10``, ``none`` or ``mean:a,b,c/std:d,e,f``; None = what the
    checkpoint says (our own files store it), else the zoo entry's, else the architecture's.

    Returns the classifier (eval mode, on ``device``) and the info dict for records:
    ``{spec, arch, weights, weights_sha256, norm, mean, std, source}``.
    """
    from bench.models import train as train_mod
    from bench.models import zoo

    arch: Architecture = MODELS.create(parse_spec(spec))
    arch_str = arch.spec()
    if arch.external:  # torchvision: / timm: (bench.models.library)
        return _load_external(arch, spec, num_classes=num_classes, in_channels=in_channels,
                              weights=weights, norm=norm, device=device, home=home,
                              download=download)
    net = arch.build(num_classes, in_channels, image_size)

    entry: zoo.ZooEntry | None = None
    if weights is None:
        if arch.first_use_training is not None:
            if train_set is None:
                raise BenchError(f"{arch.name} is trained on first use and needs the ID train "
                                 f"split (train_set=...), or pass --weights PATH")
            norm_name, mean, std = resolve_norm(norm or _default_norm(arch, in_channels),
                                                in_channels)
            path, source = train_mod.train_on_first_use(
                arch, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                train_set=train_set, norm=norm_name, mean=mean, std=std, seed=seed, home=home)
        else:
            entry = zoo.default_for(arch.name, dataset)
            path = zoo.cached_path(entry, home) if entry is not None else None
            if path is None or not path.is_file():
                names = ", ".join(f"zoo:{e.name}" for e in zoo.ZOO if e.arch == arch.name)
                zoo_hint = f" or a zoo name ({names})" if names else ""
                raise BenchError(f"{arch.name} needs weights: pass --weights PATH{zoo_hint}")
            source = "zoo"
    elif isinstance(weights, str) and zoo.is_zoo_ref(weights):
        entry = zoo.lookup(weights, arch=arch.name)
        path, source = zoo.fetch(entry, home=home), "zoo"
    else:
        path, source = Path(weights).expanduser(), "file"

    state_dict, meta = read_checkpoint(path)
    digest = file_sha256(path)
    if entry is None:
        entry = zoo.by_sha256(digest)
    load_state_dict_checked(net, state_dict, label=f"weights {str(weights or path)!r}",
                            arch=arch_str)

    if norm is None:
        if "mean" in meta and "std" in meta:
            norm_name = str(meta.get("norm", "custom"))
            mean = tuple(float(v) for v in meta["mean"])
            std = tuple(float(v) for v in meta["std"])
            if len(mean) != in_channels or len(std) != in_channels:
                raise BenchError(f"weights {str(path)!r} were trained on {len(mean)}-channel "
                                 f"images, the data have {in_channels} channels")
        else:
            norm_name, mean, std = resolve_norm(
                entry.norm if entry is not None else _default_norm(arch, in_channels),
                in_channels)
    else:
        norm_name, mean, std = resolve_norm(norm, in_channels)

    from bench.models._classifier import Classifier

    clf = Classifier(net, mean=mean, std=std, num_classes=num_classes, arch=arch_str,
                     norm=norm_name)
    clf.to(device).eval()
    info: dict[str, Any] = {
        "spec": spec, "arch": arch_str, "weights": str(path), "weights_sha256": digest,
        "norm": norm_name, "mean": list(mean), "std": list(std), "source": source,
        "zoo": entry.name if entry is not None else None,
    }
    return clf, info


def _load_external(arch: Any, spec: str, *, num_classes: int, in_channels: int,
                   weights: str | Path | None, norm: str | None, device: str | torch.device,
                   home: Path | None, download: bool) -> tuple[Classifier, dict[str, Any]]:
    """A library's model with its own weights and mean/std (``--norm`` overrides them)."""
    from bench.models._classifier import Classifier

    net, meta = arch.load_external(weights=None if weights is None else str(weights),
                                   download=download, home=home)
    n_out = meta.pop("num_classes")
    if num_classes > n_out:
        raise BenchError(f"{arch.spec()} has {n_out} outputs but the dataset has {num_classes} "
                         f"classes; labels must be indices of the model's classes")
    if in_channels != len(meta["mean"]):
        raise BenchError(f"{arch.spec()} takes {len(meta['mean'])}-channel images, the data have "
                         f"{in_channels}")
    norm_name, mean, std = meta["norm"], tuple(meta["mean"]), tuple(meta["std"])
    if norm is not None:
        norm_name, mean, std = resolve_norm(norm, in_channels)
    clf = Classifier(net, mean=mean, std=std, num_classes=n_out, arch=arch.spec(), norm=norm_name)
    clf.to(device).eval()
    info = {"spec": spec, "arch": arch.spec(), "weights": meta["weights"],
            "weights_sha256": meta["weights_sha256"], "norm": norm_name, "mean": list(mean),
            "std": list(std), "source": meta["source"], "zoo": None, "library": meta["library"]}
    return clf, info


__all__ = ["Architecture", "CHECKPOINT_FORMAT", "Classifier", "NORMS", "load_classifier",
           "load_state_dict_checked", "model_device", "read_checkpoint", "resolve_norm",
           "sha256_file"]


def __getattr__(name: str):
    """``Classifier`` stays importable from here (PEP 562), loaded on first use."""
    if name == "Classifier":
        from bench.models._classifier import Classifier

        return Classifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
