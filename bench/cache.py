"""On-disk caches under BENCH_HOME: keys are hashes of everything a cached object depends on."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import torch

from bench.results import atomic_write_bytes

log = logging.getLogger(__name__)


def config_hash(obj: Any) -> str:
    """sha256 of a canonical JSON dump (sorted keys; floats by repr)."""
    text = json.dumps(obj, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_hash(cls: type) -> str:
    """sha256 of the source files that define ``cls`` and its bases from this suite or plugins.

    Part of every cache key for learned or computed state, so that editing a detector or a
    network's code invalidates what the old code stored (never a stale cache).
    """
    import inspect

    h = hashlib.sha256()
    seen: set[str] = set()
    for klass in inspect.getmro(cls):
        if klass.__module__ in ("builtins",) or klass.__module__.startswith(("torch", "typing")):
            continue
        try:
            path = inspect.getsourcefile(klass)
        except TypeError:
            continue
        if path and path not in seen:
            seen.add(path)
            h.update(Path(path).read_bytes())
    return h.hexdigest()


def cache_dir(kind: str, home: Path | None = None) -> Path:
    """``home/kind``; ``home`` None = :func:`bench.datasets.base.bench_home` (Python API)."""
    from bench.datasets.base import bench_home

    return (bench_home() if home is None else Path(home)) / kind


def save(path: Path, obj: Any) -> None:
    """torch.save to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load(path: Path, key: str) -> Any | None:
    """The cached object at ``path`` if it exists and was stored under ``key``; else None.

    A file that cannot be read, or holds another key, is ignored (and later overwritten):
    a stale or broken cache entry never feeds a result.
    """
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated/corrupt cache file is a cache miss
        log.warning("ignoring unreadable cache file %s (%s)", path, exc)
        return None
    if not isinstance(obj, dict) or obj.get("key") != key:
        return None
    return obj.get("value")


def store(path: Path, key: str, value: Any) -> None:
    save(path, {"key": key, "value": value})
