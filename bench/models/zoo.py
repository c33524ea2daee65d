"""Known public checkpoints, cached under ``bench_home()/weights`` and checked by sha256.

``--weights zoo:NAME`` (or ``--weights akamaster`` for the akamaster file of the model's own
depth) resolves to ``bench_home()/weights/<file>``. A missing file is downloaded from its URL
(only when asked for by name; nothing is downloaded otherwise), hash-checked against the full
sha256 below, and moved into place atomically; a wrong hash leaves no file behind. Offline, the
error says to pass a local copy with ``--weights PATH``.

Accuracies are top-1 on the 10,000 images of the JPEG CIFAR-10 test set with each input
normalisation, as measured in shared/data/MANIFEST.md (sections 2 and 2b).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


from bench.errors import BenchError, did_you_mean

_AKAMASTER = ("https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/"
              "pretrained_models/")


@dataclass(frozen=True)
class ZooEntry:
    """One public checkpoint: where it comes from, its hash, how it was trained and scores."""

    name: str                 # --weights zoo:<name>
    arch: str                 # MODELS name it loads into
    dataset: str              # ID dataset it was trained on
    file: str                 # file name in the cache
    sha256: str
    url: str | None           # None: no public download; pass the file with --weights PATH
    norm: str                 # input normalisation it was trained with
    shared_path: str          # where the development copy lives, relative to shared/data
    source: str               # "akamaster", "shiftbench"
    default: bool = False     # taken by load_classifier when no weights are given (if cached)
    acc_jpeg: dict[str, float] = field(default_factory=dict)  # norm -> top-1 on JPEG test
    note: str = ""


ZOO: tuple[ZooEntry, ...] = (
    ZooEntry("resnet20", "resnet20", "cifar10", "resnet20-12fca82f.th",
             "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8",
             _AKAMASTER + "resnet20-12fca82f.th", "imagenet",
             "weights/akamaster/resnet20-12fca82f.th", "akamaster", True,
             {"imagenet": 0.8103, "cifar10": 0.8073, "none": 0.2779},
             "best_prec1 91.78 on the original CIFAR-10 test set"),
    ZooEntry("resnet32", "resnet32", "cifar10", "resnet32-d509ac18.th",
             "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850",
             _AKAMASTER + "resnet32-d509ac18.th", "imagenet",
             "weights/akamaster/resnet32-d509ac18.th", "akamaster", True,
             {"imagenet": 0.8256, "cifar10": 0.8201, "none": 0.2887},
             "best_prec1 92.78 on the original CIFAR-10 test set"),
    ZooEntry("resnet44", "resnet44", "cifar10", "resnet44-014dd654.th",
             "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4",
             _AKAMASTER + "resnet44-014dd654.th", "imagenet",
             "weights/akamaster/resnet44-014dd654.th", "akamaster", True,
             {"imagenet": 0.8267, "cifar10": 0.8227, "none": 0.2642},
             "best_prec1 93.14 on the original CIFAR-10 test set"),
    ZooEntry("resnet56", "resnet56", "cifar10", "resnet56-4bfd9763.th",
             "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367",
             _AKAMASTER + "resnet56-4bfd9763.th", "imagenet",
             "weights/akamaster/resnet56-4bfd9763.th", "akamaster", True,
             {"imagenet": 0.8320, "cifar10": 0.8273, "none": 0.3431},
             "best_prec1 93.62 on the original CIFAR-10 test set"),
    ZooEntry("resnet20-cifar10jpeg", "resnet20", "cifar10", "resnet20-cifar10jpeg-a926624b.pt",
             "a926624b9bb97a5b7811d4bc0c1d7ac1ee0bc2f9f2b05f56894082c86c76c14c",
             None, "imagenet",
             "weights/shiftbench/resnet20-cifar10jpeg-a926624b.pt", "shiftbench", False,
             {"imagenet": 0.8806},
             "akamaster ResNet-20 fine-tuned 5 epochs on the JPEG CIFAR-10 train split"),
)

#: ``--weights <word>``: the entry of that source whose arch is the model's
SOURCES = ("akamaster", "shiftbench")


def download_url_to_file(url: str, dst: str, progress: bool = True) -> None:
    """``torch.hub.download_url_to_file``, imported when a download actually happens."""
    from torch.hub import download_url_to_file as download

    download(url, dst, progress=progress)


def zoo_dir(home: Path | None = None) -> Path:
    """``home/weights``; ``home`` None = :func:`bench.datasets.base.bench_home` (Python API)."""
    from bench.datasets.base import bench_home

    return (bench_home() if home is None else Path(home)) / "weights"


def cached_path(entry: ZooEntry, home: Path | None = None) -> Path:
    return zoo_dir(home) / entry.file


def is_zoo_ref(text: str) -> bool:
    """``zoo:NAME`` or a bare source word (``akamaster``) that is not an existing file."""
    t = text.strip()
    return t.startswith("zoo:") or (t in SOURCES and not Path(t).exists())


def default_for(arch: str, dataset: str) -> ZooEntry | None:
    return next((e for e in ZOO if e.default and e.arch == arch and e.dataset == dataset), None)


def by_sha256(digest: str) -> ZooEntry | None:
    return next((e for e in ZOO if e.sha256 == digest), None)


def lookup(ref: str, *, arch: str) -> ZooEntry:
    """``zoo:NAME`` / ``akamaster`` / ``zoo:akamaster`` -> the entry, checked against ``arch``."""
    name = ref.strip().removeprefix("zoo:")
    if name in SOURCES:
        entry = next((e for e in ZOO if e.source == name and e.arch == arch), None)
        if entry is None:
            have = ", ".join(sorted({e.arch for e in ZOO if e.source == name}))
            raise BenchError(f"{name} has no {arch} checkpoint (it has {have}): pass "
                             f"--weights PATH")
        return entry
    entry = next((e for e in ZOO if e.name == name), None)
    if entry is None:
        names = [e.name for e in ZOO]
        hint = did_you_mean(name, names, show=lambda c: f"zoo:{c}")
        raise BenchError(f"unknown zoo checkpoint {name!r}{hint} (choose from: "
                         f"{', '.join('zoo:' + n for n in names)})")
    if entry.arch != arch:
        raise BenchError(f"zoo:{entry.name} is a {entry.arch} checkpoint, the model is {arch}: "
                         f"use --model {entry.arch} or --weights zoo:{arch}")
    return entry


def _shared_hint(entry: ZooEntry) -> str:
    return f"--weights ../shared/data/{entry.shared_path}"


def fetch(entry: ZooEntry, *, download: bool = True, home: Path | None = None) -> Path:
    """The cached file of ``entry``; downloads and hash-checks it first when it is missing."""
    from bench.cache import file_sha256

    path = cached_path(entry, home)
    if path.is_file():
        digest = file_sha256(path)
        if digest != entry.sha256:
            raise BenchError(f"cached {path} has sha256 {digest[:12]}..., expected "
                             f"{entry.sha256[:12]}...: delete it and try again")
        return path
    if entry.url is None:
        raise BenchError(f"zoo:{entry.name} has no public download: pass the file with "
                         f"--weights PATH, e.g. {_shared_hint(entry)}, or copy it to {path}")
    if not download:
        raise BenchError(f"zoo:{entry.name} is not in {zoo_dir(home)}: pass --weights PATH, e.g. "
                         f"{_shared_hint(entry)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.download")
    try:
        try:
            download_url_to_file(entry.url, str(tmp), progress=False)
        except Exception as exc:  # URLError, HTTPError, socket errors...: all mean "no file"
            raise BenchError(f"could not download zoo:{entry.name} from {entry.url} "
                             f"({type(exc).__name__}: {exc}); offline? pass --weights PATH to "
                             f"a local copy, e.g. {_shared_hint(entry)}") from None
        digest = file_sha256(tmp)
        if digest != entry.sha256:
            raise BenchError(f"download of zoo:{entry.name} from {entry.url} has sha256 "
                             f"{digest[:12]}..., expected {entry.sha256[:12]}...: file discarded")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


__all__ = ["ZOO", "ZooEntry", "by_sha256", "cached_path", "default_for", "fetch", "is_zoo_ref",
           "lookup", "zoo_dir"]
