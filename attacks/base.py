"""Shift base class: pixels in [0,1] -> pixels in [0,1], same shape and dtype, seeded.

Severity tables follow METHODS.md §5. A parameter given explicitly overrides its severity
default; giving both ``severity`` and that parameter is an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from bench._lazy import nn, torch
from bench.errors import BenchError
from bench.registry import SHIFTS, Component, Spec

if TYPE_CHECKING:
    from torch import Tensor

#: leaderboard groups (METHODS.md §5)
CORRUPTION, ATTACK, ANOMALY_MIX, OOD = "corruption", "attack", "anomaly mix", "ood"


class Shift(Component):
    """Base of corruptions and attacks.

    Subclasses set ``severity_param`` (the parameter a severity sets) and ``severities`` (its
    five values), or ``severity_table`` when a severity sets several parameters, declare the
    parameter(s) as keyword arguments defaulting to None, and implement :meth:`apply`.
    ``__call__`` checks inputs and outputs, passes ``index`` to shifts that declare
    ``needs_index``, and, for attacks, puts the model back into its mode afterwards.
    """

    needs_model: ClassVar[bool] = False
    #: shifts that look images up by their position in the source split (``cifar10c``) set
    #: this; ``__call__`` then passes ``index=`` to :meth:`apply`
    needs_index: ClassVar[bool] = False
    #: True when an image's shifted version depends on that image alone and the shift draws no
    #: random numbers (fgsm, brightness, contrast): the runner then shifts an in-memory set
    #: batch by batch, holding one batch of float images instead of the whole set
    batchable: ClassVar[bool] = False
    #: True for attacks aimed at the detector (``adaptive_pgd``): one attacked set per detector
    needs_detector: ClassVar[bool] = False
    group: ClassVar[str] = CORRUPTION
    severity_param: ClassVar[str | None] = None
    severities: ClassVar[tuple[float, ...]] = ()
    #: for a shift whose severity sets several parameters (``brightness_contrast``): each
    #: parameter name -> its five values; used when ``severity_param`` is None
    severity_table: ClassVar[dict[str, tuple[float, ...]]] = {}
    #: attacks may restrict scoring to correctly classified images they flipped (METHODS.md §2)
    successful_only: bool = False
    #: 1..5, or None when explicit parameters were given (set by :meth:`_init_severity`)
    severity: int | None = None
    #: parameters in pixel units whose severity values count quantisation steps of the data:
    #: (1, 2, 4, 8, 16)/255 are 1..16 steps of 8-bit images, and shifts that declare a
    #: ``pixel_step`` parameter (the data's step, passed by the run) scale them to it, so an
    #: L-inf budget is never smaller than what the stored images can show (17-level digits)
    quantised: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, severity: int | None = None, **params: Any):
        self._init_severity(severity, params)

    def _init_severity(self, severity: int | None, params: dict[str, Any]) -> None:
        """Resolve ``severity`` and the parameter(s) it sets; store all of them as attributes.

        With no explicit parameter the severity defaults to 3. An explicit parameter is kept
        and ``severity`` stays None; parameters it does not give come from severity 3.
        """
        p = self.severity_param
        table = {p: self.severities} if p else dict(self.severity_table)
        step = params.get("pixel_step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float))
                                 or not 0 < step <= 1):
            raise BenchError(f"{self.name}: pixel_step must be a number in (0, 1], got {step!r}")
        scale = max(1, round(step * 255)) if step is not None else 1
        given = [k for k in table if params.get(k) is not None]
        if severity is not None and given:
            raise BenchError(f"{self.name}: give either severity or {given[0]}, not both")
        if severity is not None:
            if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
                raise BenchError(f"{self.name}: severity must be an integer 1..5, got {severity!r}")
        if table:
            level = 3 if severity is None else severity
            for k, values in table.items():
                v = params.get(k)
                if v is None:
                    params[k] = (min(1.0, values[level - 1] * scale) if k in self.quantised
                                 else values[level - 1])
                elif not isinstance(v, (int, float)) or isinstance(v, bool):
                    raise BenchError(f"{self.name}: {k} must be a number, got {v!r}")
            if not given:
                severity = level
        self.severity = severity
        for k, v in params.items():
            setattr(self, k, v)

    @classmethod
    def severity_keys(cls) -> tuple[str, ...]:
        """The parameters a severity sets (``()`` for shifts like ``mix``, whose severity only
        passes on to its parts, and for shifts without severity)."""
        if cls.severity_param:
            return (cls.severity_param,)
        return tuple(cls.severity_table)

    def spec(self) -> str:
        """``name(k=v, ...)`` that :meth:`Registry.create` turns back into this shift.

        Parameters a severity set are left out when the severity is given (giving both is an
        error), so ``gaussian_noise(severity=3)`` and ``gaussian_noise(sigma=0.2)`` round-trip.
        """
        params = {k: v for k, v in self.get_params().items() if k != "arg"}
        params = {k: v for k, v in params.items()
                  if k in self.changed_params() or k == "severity" or k in self.severity_keys()}
        if params.get("severity") is not None:
            params = {k: v for k, v in params.items() if k not in self.severity_keys()}
        elif "severity" in params:
            del params["severity"]
        return str(Spec(self.name, getattr(self, "arg", None) if self.takes_arg else None, params))

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator) -> Tensor:  # pragma: no cover - abstract
        """The shift itself; shifts with ``needs_index = True`` also take ``index=``."""
        raise NotImplementedError

    def __call__(self, x: Tensor, y: Tensor, *, model: nn.Module | None = None,
                 generator: torch.Generator, index: Tensor | None = None) -> Tensor:
        """x: (N,C,H,W) float in [0,1]; y: (N,) true labels -> shifted x, same shape/dtype.

        ``index`` (N,): the images' positions in their source split. Every caller may pass it;
        only shifts that declare ``needs_index = True`` receive it (and require it).
        """
        if not torch.is_floating_point(x):
            raise TypeError("shifts take float images in [0,1]")
        if self.needs_model and model is None:
            raise BenchError(f"{self.name} is an attack and needs the classifier")
        context: dict[str, Any] = {}
        if self.needs_index:
            if index is None:
                raise BenchError(f"{self.spec()} looks images up by their test-split index; "
                                 f"call it as shift(x, y, generator=g, index=positions)")
            context["index"] = index
        if self.needs_model:
            was_training = model.training
            model.eval()
            try:
                out = self.apply(x, y, model=model, generator=generator, **context)
            finally:
                model.train(was_training)
        else:
            out = self.apply(x, y, model=model, generator=generator, **context)
        if out.shape != x.shape or out.dtype != x.dtype:
            raise BenchError(f"{self.name} changed shape/dtype {tuple(x.shape)}/{x.dtype} -> "
                             f"{tuple(out.shape)}/{out.dtype}")
        return out.clamp_(0.0, 1.0)


def attack_success(y: Tensor, clean_pred: Tensor, shifted_pred: Tensor) -> float | None:
    """Fraction of correctly classified clean images whose shifted version is misclassified.

    METHODS.md §2: ``sum(clean_pred == y and shifted_pred != y) / sum(clean_pred == y)``.
    y, clean_pred, shifted_pred: (N,) integer labels (tensors or arrays). None when no clean
    image is classified correctly (the ratio is undefined, not 0).
    """
    y, clean_pred, shifted_pred = (torch.as_tensor(t).reshape(-1).cpu()
                                   for t in (y, clean_pred, shifted_pred))
    if not y.shape == clean_pred.shape == shifted_pred.shape:
        raise ValueError(f"attack_success: shapes differ {tuple(y.shape)}, "
                         f"{tuple(clean_pred.shape)}, {tuple(shifted_pred.shape)}")
    correct = clean_pred == y
    n = int(correct.sum())
    if n == 0:
        return None
    return int((correct & (shifted_pred != y)).sum()) / n


__all__ = ["Shift", "SHIFTS", "CORRUPTION", "ATTACK", "ANOMALY_MIX", "OOD", "attack_success"]
