"""Shift base class: pixels in [0,1] -> pixels in [0,1], same shape and dtype, seeded.

Severity tables follow METHODS.md §5. A parameter given explicitly overrides its severity
default; giving both ``severity`` and that parameter is an error.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bench.errors import BenchError
from bench.registry import SHIFTS, Component

#: leaderboard groups (METHODS.md §5)
CORRUPTION, ATTACK, ANOMALY_MIX, OOD = "corruption", "attack", "anomaly mix", "ood"


class Shift(Component):
    """Base of corruptions and attacks.

    Subclasses set ``severity_param`` (the parameter a severity sets) and ``severities`` (its
    five values), declare the parameter as a keyword argument defaulting to None, and implement
    :meth:`apply`. ``__call__`` checks inputs and outputs and, for attacks, puts the model back
    into its mode afterwards.
    """

    needs_model: ClassVar[bool] = False
    group: ClassVar[str] = CORRUPTION
    severity_param: ClassVar[str | None] = None
    severities: ClassVar[tuple[float, ...]] = ()
    #: attacks may restrict scoring to correctly classified images they flipped (METHODS.md §2)
    successful_only: bool = False

    def __init__(self, *, severity: int | None = None, **params: Any):
        self._init_severity(severity, params)

    def _init_severity(self, severity: int | None, params: dict[str, Any]) -> None:
        """Resolve ``severity`` and the parameter it sets; store both as attributes."""
        p = self.severity_param
        explicit = params.get(p) if p else None
        if severity is not None and explicit is not None:
            raise BenchError(f"{self.name}: give either severity or {p}, not both")
        if severity is not None:
            if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
                raise BenchError(f"{self.name}: severity must be an integer 1..5, got {severity!r}")
        if p:
            if explicit is None:
                severity = 3 if severity is None else severity
                params[p] = self.severities[severity - 1]
            elif not isinstance(explicit, (int, float)) or isinstance(explicit, bool):
                raise BenchError(f"{self.name}: {p} must be a number, got {explicit!r}")
        self.severity = severity
        for k, v in params.items():
            setattr(self, k, v)

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x: Tensor, y: Tensor, *, model: nn.Module | None = None,
                 generator: torch.Generator) -> Tensor:
        """x: (N,C,H,W) float in [0,1]; y: (N,) true labels -> shifted x, same shape/dtype."""
        if not torch.is_floating_point(x):
            raise TypeError("shifts take float images in [0,1]")
        if self.needs_model and model is None:
            raise BenchError(f"{self.name} is an attack and needs the classifier")
        if self.needs_model:
            was_training = model.training
            model.eval()
            try:
                out = self.apply(x, y, model=model, generator=generator)
            finally:
                model.train(was_training)
        else:
            out = self.apply(x, y, model=model, generator=generator)
        if out.shape != x.shape or out.dtype != x.dtype:
            raise BenchError(f"{self.name} changed shape/dtype {tuple(x.shape)}/{x.dtype} -> "
                             f"{tuple(out.shape)}/{out.dtype}")
        return out.clamp_(0.0, 1.0)


__all__ = ["Shift", "SHIFTS", "CORRUPTION", "ATTACK", "ANOMALY_MIX", "OOD"]
