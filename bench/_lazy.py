"""Modules imported on first use, so that `bench --help`, `bench list` and spec validation
answer without loading torch (about 1.5 s) or scipy / scikit-learn.

``from bench._lazy import torch`` gives a stand-in whose first attribute access imports the real
module; attributes are then cached on the stand-in. Module-level code of the built-in
components therefore never touches torch: no ``@torch.no_grad()`` decorators, no ``nn.Module``
subclasses (those live in private modules imported when a network is built), and runtime type
checks use ``torch.Tensor``. ``tests/test_startup.py`` keeps it that way.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    """Stands in for module ``name`` until an attribute is read."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__dict__["_lazy_target"] = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)  # copy/pickle/inspect probes must not import anything
        value = getattr(importlib.import_module(self.__dict__["_lazy_target"]), attr)
        self.__dict__[attr] = value
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_lazy_target']!r}>"


def lazy(name: str) -> Any:
    """A :class:`LazyModule` for ``name`` (``lazy("scipy.stats")``)."""
    return LazyModule(name)


torch: Any = lazy("torch")
nn: Any = lazy("torch.nn")
F: Any = lazy("torch.nn.functional")

__all__ = ["lazy", "LazyModule", "torch", "nn", "F"]
