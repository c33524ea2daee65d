"""Detector base class: ``fit(fit, val)`` on ID views, ``score(views)``, higher = more ID."""

from __future__ import annotations

import functools
import math
import re
import sys
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from bench._lazy import torch
from bench.cache import check_plain
from bench.errors import BenchError
from bench.registry import DETECTORS, Component
from bench.views import Views

if TYPE_CHECKING:
    from torch import Tensor

#: what a detector may declare in ``needs``
NEEDS = frozenset({"logits", "features", "labels", "images", "model"})


class Detector(Component):
    """Scores images; **higher = more in-distribution** (METHODS.md §0).

    Subclasses declare ``needs`` (a subset of :data:`NEEDS`), store hyper-parameters in
    ``__init__``, learn in :meth:`fit` (attributes ending in ``_``) and return one float64 score
    per image from :meth:`score`. Detectors with expensive fits set ``cacheable = True`` and
    implement :meth:`state` / :meth:`load_state` so the runner can store them on disk.
    ``state()`` must return plain data (tensors, numbers, strings, None, lists/dicts of them):
    the cache is read back with ``weights_only=True``; anything else is a BenchError naming the
    detector and the entry, raised by ``state()`` itself (each subclass's ``state`` is wrapped).
    """

    needs: ClassVar[frozenset[str]] = frozenset({"logits"})
    #: True when fit() learns something worth storing in the cache (trained networks)
    cacheable: ClassVar[bool] = False
    #: True when :meth:`reconstruct` returns images (shown beside the shifted ones on the board)
    reconstructs: ClassVar[bool] = False
    #: True when the score is a differentiable function of the input pixels (through the
    #: classifier or the detector's own network): :meth:`score_images` then carries gradients
    #: and adaptive attacks (``adaptive_pgd``) can aim at the detector. Adapters set it per
    #: instance (``pood:MaxSoftmax`` is, ``pood:KNN`` is not).
    differentiable: ClassVar[bool] = False
    #: True when an image's score depends on that image's views alone (not on the rest of the
    #: set): the runner may then score a large set chunk by chunk of rows
    row_wise: ClassVar[bool] = False
    #: detectors whose fit draws random numbers take ``seed`` as a constructor parameter; the run
    #: passes each value of ``--seeds``. This default serves those that draw none.
    seed: int = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("state")
        if callable(own) and not getattr(own, "_checks_plain", False):
            cls.state = _checked_state(own)

    # fitted state ---------------------------------------------------------------------------
    def fit(self, fit: Views, val: Views) -> "Detector":
        """Learn from ID ``fit`` views (training split) and ``val`` views (held-out ID)."""
        self.fitted_ = True
        return self

    def score(self, views: Views) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def score_images(self, images: Tensor, model: Any) -> Tensor:
        """(N,) scores of float images in [0, 1], (N, C, H, W), differentiable with respect to
        them: the classifier's logits and features are computed with autograd and passed to
        :meth:`score` as views (float64, as the cached views), so the numbers equal the cached
        path's to float rounding. Only for ``differentiable`` detectors (adaptive attacks)."""
        return self.forward_scores(images, model)[1]

    def forward_scores(self, images: Tensor, model: Any) -> tuple[Tensor, Tensor]:
        """``(logits, scores)`` of ``images`` with autograd: the classifier's float32 logits
        (N, K) and :meth:`score_images`, from one forward pass of the classifier."""
        if not self.differentiable:
            raise BenchError(f"{self.name or type(self).__name__} is not differentiable: its "
                             f"score has no gradient with respect to the input pixels, so an "
                             f"adaptive attack cannot aim at it")
        z, f = model.forward_features(images)
        views = Views(name="adaptive", logits=z.double(), features=f.double(), images=images,
                      model=model)
        return z, self.score(views)

    def check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise RuntimeError(f"{type(self).__name__}.score() called before fit()")

    def state(self) -> dict[str, Any]:
        """Everything :meth:`load_state` needs to restore a fitted detector (tensors, floats)."""
        raise NotImplementedError

    def load_state(self, state: dict[str, Any]) -> "Detector":
        """Restore what :meth:`state` returned and mark the detector fitted."""
        raise NotImplementedError

    def reconstruct(self, images: Tensor) -> Tensor:  # pragma: no cover - abstract
        """For ``reconstructs = True``: the detector's reconstruction of ``images`` in [0, 1]."""
        raise NotImplementedError

    # helpers --------------------------------------------------------------------------------
    @staticmethod
    def logits64(views: Views) -> Tensor:
        if views.logits is None:
            raise RuntimeError(f"views {views.name!r} carry no logits")
        return views.logits.to(torch.float64)

    @staticmethod
    def features64(views: Views) -> Tensor:
        if views.features is None:
            raise RuntimeError(f"views {views.name!r} carry no features")
        return views.features.to(torch.float64)


def _checked_state(state: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """``state`` that refuses to return anything the cache could not load with weights_only."""
    @functools.wraps(state)
    def checked(self: Detector, *args: Any, **kwargs: Any) -> dict[str, Any]:
        out = state(self, *args, **kwargs)
        check_plain(out, f"detector {self.name or type(self).__name__!r}: state()")
        return out

    checked._checks_plain = True  # type: ignore[attr-defined]
    return checked


def check_param(who: str, key: str, value: Any, *, lo: float | None = None,
                hi: float | None = None, lo_open: bool = False, integer: bool = False,
                example: Any = None) -> None:
    """BenchError (one line) unless ``value`` is a finite number (an int when ``integer``) with
    ``lo <= value`` (``lo < value`` when ``lo_open``) and ``value <= hi``.

    Constructors call this so a bad spec (``zhou(lam=-1)``, ``ae(epochs=0)``) fails before any
    data is loaded or any cell runs; ``example`` is a valid value shown in the message.
    """
    kind = "an integer" if integer else "a number"
    ok = (not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
          and math.isfinite(value))
    if lo is not None:
        ok = ok and (value > lo if lo_open else value >= lo)
    if hi is not None:
        ok = ok and value <= hi
    if ok:
        return
    if lo is not None and hi is not None:
        want = f"{kind} in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    elif lo is not None:
        want = f"{kind} {'>' if lo_open else '>='} {lo:g}"
    else:
        want = f"{kind} <= {hi:g}" if hi is not None else kind
    hint = f"; e.g. {who}({key}={example!r})" if example is not None else ""
    raise BenchError(f"{who}: {key} must be {want}, got {key}={value!r}{hint}")


def check_flag(who: str, key: str, value: Any) -> None:
    """BenchError unless ``value`` is True or False (a spec's ``log=2`` is a mistake, not True)."""
    if not isinstance(value, bool):
        raise BenchError(f"{who}: {key} must be True or False, got {key}={value!r}")


#: device strings torch.device accepts (checked without importing torch: `bench list` and spec
#: validation stay fast)
_DEVICE = re.compile(r"(cpu|cuda|mps|xpu|xla|meta|hpu|ipu|mtia|privateuseone)(:\d+)?")


def check_device(who: str, device: Any) -> None:
    """BenchError unless ``device`` names a torch device (``cpu``, ``cuda``, ``cuda:1``, ...)."""
    if "torch" in sys.modules and isinstance(device, sys.modules["torch"].device):
        return
    if not (isinstance(device, str) and _DEVICE.fullmatch(device)):
        raise BenchError(f"{who}: device must be a torch device such as cpu or cuda, "
                         f"got device={device!r}")


def check_scores(scores: Tensor, n: int, who: str) -> Tensor:
    """A detector's output must be (n,) finite floats: anything else is reported, never used."""
    if not isinstance(scores, torch.Tensor):
        raise BenchError(f"{who} returned {type(scores).__name__}, not a tensor")
    if scores.shape != (n,):
        raise BenchError(f"{who} returned scores of shape {tuple(scores.shape)}, expected ({n},)")
    scores = scores.detach().to(torch.float64).cpu()
    if not torch.isfinite(scores).all():
        bad = int((~torch.isfinite(scores)).sum())
        raise BenchError(f"{who} returned {bad} non-finite scores (NaN or inf)")
    return scores


__all__ = ["Detector", "DETECTORS", "NEEDS", "check_scores", "check_param", "check_flag",
           "check_device"]
