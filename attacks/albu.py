"""``albu:<Transform>(k=v, ...)``: any albumentations 2.x image transform as a corruption."""

from __future__ import annotations

import inspect
import os
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench._lazy import nn, torch
from bench.attacks._common import randint
from bench.attacks.base import CORRUPTION, SHIFTS, Shift
from bench.errors import BenchError, did_you_mean

if TYPE_CHECKING:
    from torch import Tensor

def _albumentations() -> Any:
    # albumentations otherwise asks PyPI for a newer version on import (a network call)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        import albumentations
    except ImportError:
        raise BenchError("albu:... needs albumentations 2.x: pip install 'albumentations>=2,<3'") \
            from None
    return albumentations


def transform_names() -> list[str]:
    """Names of the albumentations image transforms (subclasses of ``BasicTransform``)."""
    A = _albumentations()
    return sorted(n for n in dir(A) if not n.startswith("_") and inspect.isclass(getattr(A, n))
                  and issubclass(getattr(A, n), A.BasicTransform)
                  and not inspect.isabstract(getattr(A, n))
                  and n not in ("BasicTransform", "ImageOnlyTransform", "DualTransform",
                                "NoOp", "Transform3D"))


def _one_line(exc: BaseException) -> str:
    """pydantic's multi-line validation report as one line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("For further information")]
    return "; ".join(lines) or type(exc).__name__


@SHIFTS.register("albu")
class Albu(Shift):
    """Any albumentations 2.x transform as a corruption: ``albu:GaussNoise(std_range=(0.1, 0.1))``.

    Buslaev et al., "Albumentations: Fast and Flexible Image Augmentations", Information 2020.
    The transform named after ``albu:`` is built with the given keyword parameters and
    ``p=1`` (every image is corrupted; ``p`` cannot be set). Images go through it one by one
    as HWC float32 numpy arrays in [0, 1] (albumentations' float convention; transforms that
    work on uint8 convert internally), so nothing is quantised unless the transform itself
    does it. This per-image loop is the one place one is allowed: albumentations has no batch
    API. Transforms that change the image size are refused (a shift keeps the shape).

    Randomness: one seed per image is drawn from the passed generator
    (``torch.randint(0, 2**31 - 1, (N,))``, in image order), and the transform is re-seeded
    with it (``BasicTransform.set_random_seed``) before that image, so the output depends on
    ``--seed`` and on the image's position only. There is no severity table: the transform's
    own parameters set the strength, and ``severity=`` is an error.
    Shapes: x (N, C, H, W) float in [0, 1] -> same shape, dtype and range.
    """

    takes_arg: ClassVar[bool] = True
    group: ClassVar[str] = CORRUPTION

    def __init__(self, arg: str, *, data_root: Any = None, **params: Any):
        # data_root is runner context (SHIFTS.create(spec, data_root=...)): named here so it is
        # not mistaken for a transform parameter
        A = _albumentations()
        self.arg = arg
        self.params = dict(params)
        self.severity = None
        cls = getattr(A, arg, None)
        names = transform_names()
        if arg not in names or cls is None:
            hint = did_you_mean(arg, names, n=3)
            raise BenchError(f"albumentations has no image transform {arg!r}{hint} "
                             f"(e.g. albu:GaussNoise, albu:Blur, albu:RandomBrightnessContrast)")
        if "severity" in params:
            raise BenchError(f"albu:{arg} has no severity table; set the transform's own "
                             f"parameters instead, e.g. albu:GaussNoise(std_range=(0.1, 0.1))")
        if "p" in params:
            raise BenchError(f"albu:{arg}: p is fixed at 1 (every image is corrupted); drop p=")
        sig = inspect.signature(cls.__init__)
        if not any(q.kind is q.VAR_KEYWORD for q in sig.parameters.values()):
            valid = [n for n in sig.parameters if n not in ("self", "p")]
            bad = [k for k in params if k not in valid]
            if bad:
                raise BenchError(f"albu:{arg} has no parameter {bad[0]!r} "
                                 f"(parameters: {', '.join(valid) or 'none'})")
        try:
            self._transform = cls(**params, p=1.0)
        except (TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            raise BenchError(f"albu:{arg}: bad parameters: {_one_line(exc)}") from None

    def get_params(self) -> dict[str, Any]:
        return {"arg": self.arg, **self.params}

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator) -> Tensor:
        n, c, h, w = x.shape
        seeds = randint(0, 2**31 - 1, n, generator).tolist()
        images = x.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).contiguous().numpy()
        out = np.empty_like(images)
        t = self._transform
        for i in range(n):
            t.set_random_seed(seeds[i])
            try:
                res = t(image=images[i])["image"]
            except Exception as exc:  # the transform's own complaint about this image type
                raise BenchError(f"albu:{self.arg} failed on a {h}x{w}x{c} float32 image: "
                                 f"{type(exc).__name__}: {_one_line(exc)}") from None
            res = np.asarray(res)
            if res.ndim == 2:
                res = res[:, :, None]
            if res.shape != (h, w, c):
                raise BenchError(f"albu:{self.arg} changed the image shape {(h, w, c)} -> "
                                 f"{res.shape}; a shift must keep it (use a size-preserving "
                                 f"transform or set its size to {h}x{w})")
            out[i] = res
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype)


__all__ = ["Albu", "transform_names"]
