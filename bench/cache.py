"""On-disk caches under BENCH_HOME: keys are hashes of everything a cached object depends on.

Cache entries are data, never code (docs/security.md): :func:`store` accepts only tensors,
numbers, strings, None and lists/tuples/dicts of them, and :func:`load` reads with torch's
``weights_only=True`` unpickler, which cannot call anything else. A file that fails to load
that way (damaged, or crafted by whoever could write into the cache folder) is a cache miss:
one warning naming the file, then the caller rebuilds the entry and overwrites it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

from bench._lazy import nn, torch
from bench.errors import BenchError
from bench.results import atomic_write_bytes

log = logging.getLogger(__name__)

#: leaf types a cache entry may hold (exact types: numpy scalars subclass float and are refused)
PLAIN_SCALARS: tuple[type, ...] = (bool, int, float, str, type(None))
#: tensor types (nn.Module.state_dict() holds Parameters when keep_vars=True)
def _plain_tensors() -> tuple[type, ...]:
    """Tensor types a plain cache value may hold (torch is imported on first use)."""
    return (torch.Tensor, nn.Parameter)


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


def find_unplain(obj: Any, where: str = "") -> tuple[str, str] | None:
    """The first value in ``obj`` that is not plain cache data, as (where, type name); else None.

    Plain: a tensor, bool, int, float, str or None, or a list, tuple or dict (str/int keys) of
    plain values. ``where`` is a subscript path such as ``['W']['0.weight']``.
    """
    kind = type(obj)
    if kind in PLAIN_SCALARS or kind in _plain_tensors():
        return None
    if kind in (list, tuple):
        for i, item in enumerate(obj):
            if (bad := find_unplain(item, f"{where}[{i}]")) is not None:
                return bad
        return None
    if kind in (dict, OrderedDict):
        for k, item in obj.items():
            if type(k) not in (str, int):
                return f"{where} key {k!r}", _type_name(k)
            if (bad := find_unplain(item, f"{where}[{k!r}]")) is not None:
                return bad
        return None
    return where, _type_name(obj)


def _type_name(obj: Any) -> str:
    kind = type(obj)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def check_plain(obj: Any, what: str) -> None:
    """Raise BenchError, naming ``what`` and the offending entry, unless ``obj`` is plain data."""
    bad = find_unplain(obj)
    if bad is not None:
        where, type_name = bad
        raise BenchError(
            f"{what}{where} is of type {type_name}: cache entries hold only tensors, numbers, "
            f"strings, None and lists/dicts of them; convert it (e.g. numpy -> torch.from_numpy, "
            f"objects -> their numbers) and back when loading")


def save(path: Path, obj: Any) -> None:
    """torch.save to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_safe(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers only.

    Raises whatever torch raises for a damaged file or one that holds anything else (it is
    refused before any code in it can run).
    """
    return torch.load(path, map_location="cpu", weights_only=True)


def load_error_text(exc: BaseException, limit: int = 200) -> str:
    """One line saying why :func:`read_safe` failed (torch's messages span many lines).

    For a file that weights_only refused: what it refused (``unsupported GLOBAL posix.system``);
    else ``Type: first line of the message``.
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        detail = next((ln for ln in lines[1:] if not ln.startswith(("Check the documentation",
                                                                      "Please file an issue"))),
                      "")
        return f"not plain data, refused by weights_only=True: {detail[:limit]}".rstrip(": ")
    return f"{type(exc).__name__}: {lines[0][:limit] if lines else ''}".rstrip(": ")


def load(path: Path, key: str) -> Any | None:
    """The cached object at ``path`` if it exists and was stored under ``key``; else None.

    Read with ``weights_only=True``: a file that cannot be read that way (truncated, or holding
    anything but tensors and plain data) is ignored with one warning and later overwritten, and
    nothing in it runs. A file that holds another key is ignored too: a stale or broken cache
    entry never feeds a result.
    """
    if not path.is_file():
        return None
    try:
        obj = read_safe(path)
    except Exception as exc:  # torch raises many types for a bad or unsafe file
        log.warning("ignoring unreadable cache file %s, rebuilding it (%s)", path,
                    load_error_text(exc))
        return None
    if not isinstance(obj, dict) or obj.get("key") != key:
        return None
    return obj.get("value")


def store(path: Path, key: str, value: Any, *, what: str | None = None) -> None:
    """Write ``{'key': key, 'value': value}`` to ``path`` atomically.

    ``value`` must be plain data (:func:`find_unplain`), else BenchError names ``what`` (default:
    the cache file) and the offending entry: :func:`load` could not read it back safely.
    """
    check_plain(value, what or f"cache entry {path.name}")
    save(path, {"key": key, "value": value})
