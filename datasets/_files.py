"""Helpers shared by the built-in datasets: md5 checks that warn once, torchvision downloads."""

from __future__ import annotations

import hashlib
import logging
import tarfile
from pathlib import Path

from bench.errors import BenchError

log = logging.getLogger("bench.datasets")

# Which datasets already warned about checksums in this process: the brief asks for ONE warning
# per process (the shared dev copy of CIFAR-10 is JPEG re-encoded and never matches).
_WARNED: set[str] = set()


def md5sum(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_md5(dataset: str, files: dict[Path, str], note: str = "") -> list[str]:
    """Compare md5s with the official ones; log one warning per dataset and process on mismatch.

    Returns the names of the files that differ. The data are used either way.
    """
    bad = [p.name for p, want in files.items() if md5sum(p) != want]
    if bad and dataset not in _WARNED:
        _WARNED.add(dataset)
        log.warning("%s: md5 of %s in %s does not match the official files%s; using them as "
                    "they are", dataset, ", ".join(bad), next(iter(files)).parent, note)
    return bad


def torchvision_download(tv_class: str, **kwargs: object) -> None:
    """``torchvision.datasets.<tv_class>(**kwargs, download=True)``, imported only when called."""
    import torchvision.datasets as tvd

    getattr(tvd, tv_class)(**kwargs, download=True)


def download(dataset: str, tv_class: str, root: Path, offline_hint: str, **kwargs: object) -> None:
    """Fetch with torchvision's downloader into ``root``; failure (e.g. offline) -> BenchError."""
    try:
        torchvision_download(tv_class, root=str(root), **kwargs)
    except (OSError, RuntimeError, tarfile.TarError) as exc:   # URLError is an OSError
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        raise BenchError(f"{dataset}: download into {root} failed ({reason}); without internet: "
                         f"{offline_hint}") from None
