"""Local plugin files: ``bench run --plugin path/to/file.py`` and ``$BENCH_PLUGINS``.

A plugin file is ordinary Python that registers components with the public decorators::

    from bench.detectors.base import DETECTORS, Detector

    @DETECTORS.register("maxlogit")
    class MaxLogit(Detector): ...

:func:`load_plugin_file` imports it under a module name derived from the hash of its resolved
path (so two files called ``plugin.py`` in different folders never collide, and loading the
same file twice is a no-op). Registration is atomic: the decorators that run while the file is
imported are collected first and applied only when the whole file imported cleanly and none of
its names is taken. A name clash (with a built-in or with an installed plugin distribution), a
missing file, or an error inside the file is a :class:`~bench.errors.BenchError` naming the file.
Installable packages use entry points instead (``docs/plugins.md``); those are handled by
:mod:`bench.registry`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from bench.errors import BenchError
from bench.registry import DATASETS, DETECTORS, MODELS, SHIFTS, Registry

REGISTRIES: tuple[Registry, ...] = (SHIFTS, DETECTORS, DATASETS, MODELS)

#: attribute set on an imported plugin module: the ``(kind, name)`` pairs it registered
_REGISTERED_ATTR = "__bench_registered__"


def _module_name(path: Path) -> str:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return f"bench_plugin_{digest}"


def _owner(registry: Registry, name: str) -> str:
    dist = registry.dist_of(name)
    if dist is None:
        return "a built-in"
    if dist.startswith("file "):
        return f"registered by the plugin {dist}"
    return f"provided by the installed plugin {dist}"


@contextlib.contextmanager
def _deferred_registration(path: Path, taken: dict[Registry, set[str]],
                           pending: list[tuple[Registry, str | None, Any]]) -> Iterator[None]:
    """While the file imports, ``register`` only records (and checks) what it would register.

    The wrapper is an instance attribute shadowing :meth:`Registry.register`; ``finally``
    removes it, so the registries are untouched if the import fails half-way.
    """

    def make(registry: Registry) -> Callable[..., Any]:
        def register(name: str | None = None) -> Callable[[Any], Any]:
            def deco(cls: Any) -> Any:
                key = name or getattr(cls, "name", "") or cls.__name__.lower()
                if key in taken[registry]:
                    raise BenchError(
                        f"plugin file {path} registers {registry.kind} {key!r}, which is "
                        f"{_owner(registry, key)}; rename it")
                if any(r is registry and k == key for r, k, _ in pending):
                    raise BenchError(f"plugin file {path} registers {registry.kind} {key!r} twice")
                pending.append((registry, key, cls))
                return cls
            return deco
        return register

    for registry in REGISTRIES:
        registry.register = make(registry)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for registry in REGISTRIES:
            registry.__dict__.pop("register", None)


def load_plugin_file(path: str | os.PathLike[str]) -> list[str]:
    """Import a local ``.py`` file so its ``@X.register`` decorators run.

    Returns ``"kind:name"`` for each component it added (``["detector:maxlogit"]``); a file that
    was already loaded returns what it added the first time and imports nothing.
    Raises BenchError for a missing file, an error inside it, or a name that is already taken.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise BenchError(f"plugin file {p} not found (pass --plugin path/to/file.py)")
    if p.suffix != ".py":
        raise BenchError(f"plugin file {p} is not a .py file")
    p = p.resolve()
    mod_name = _module_name(p)
    loaded = sys.modules.get(mod_name)
    if loaded is not None:
        return [f"{k}:{n}" for k, n in getattr(loaded, _REGISTERED_ATTR, [])]

    # built-ins and entry points first: a clash must be seen now, not shadow them silently
    taken = {registry: set(registry.names()) for registry in REGISTRIES}
    spec = importlib.util.spec_from_file_location(mod_name, p)
    if spec is None or spec.loader is None:
        raise BenchError(f"plugin file {p} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    pending: list[tuple[Registry, str | None, Any]] = []
    sys.modules[mod_name] = module  # dataclasses and pickling look the module up by name
    try:
        with _deferred_registration(p, taken, pending):
            spec.loader.exec_module(module)
    except BenchError as exc:
        sys.modules.pop(mod_name, None)
        if str(p) in str(exc):
            raise
        raise BenchError(f"plugin file {p}: {exc}") from None
    except SyntaxError as exc:
        sys.modules.pop(mod_name, None)
        raise BenchError(f"plugin file {p} has a syntax error at line {exc.lineno}: "
                         f"{exc.msg}") from None
    except Exception as exc:  # anything the file raises is the plugin author's mistake
        sys.modules.pop(mod_name, None)
        raise BenchError(f"plugin file {p} failed to import: {type(exc).__name__}: "
                         f"{_one_line(exc)}") from None
    added = []
    for registry, key, cls in pending:
        registry.register(key)(cls)
        registry.set_origin(key, f"file {p}")
        added.append((registry.kind, key))
    setattr(module, _REGISTERED_ATTR, added)
    return [f"{k}:{n}" for k, n in added]


def plugin_paths(paths: Iterable[str] | None = None) -> list[str]:
    """``--plugin`` paths followed by those in ``$BENCH_PLUGINS`` (``os.pathsep``-separated)."""
    out = [str(p) for p in (paths or [])]
    env = os.environ.get("BENCH_PLUGINS", "")
    out += [p for p in env.split(os.pathsep) if p.strip()]
    return out


def load_plugins(paths: list[str] | None = None) -> list[str]:
    """Load every ``--plugin`` file and every file in ``$BENCH_PLUGINS``; what they added."""
    return load_plugin_files(plugin_paths(paths))


def load_plugin_files(paths: Iterable[str]) -> list[str]:
    """Load exactly these plugin files (no environment lookup); what they added."""
    added: list[str] = []
    for p in paths:
        for item in load_plugin_file(p):
            if item not in added:
                added.append(item)
    return added


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


__all__ = ["load_plugin_file", "load_plugin_files", "load_plugins", "plugin_paths"]
