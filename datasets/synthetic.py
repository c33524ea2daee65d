"""``gaussian`` and ``uniform``: synthetic noise images in the ID format, from the run's seed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from bench._lazy import torch
from bench.datasets.base import Dataset, ImageSet, LoadContext
from bench.errors import BenchError
from bench.registry import DATASETS

if TYPE_CHECKING:
    from torch import Tensor

# images drawn per call: bounded float memory; fixed, so the output depends on the seed only
_CHUNK = 1024


class _Noise(Dataset):
    """ctx.n_id_test images of shape ctx.id_shape, from a CPU generator seeded with ctx.seed.

    Values are drawn in [0, 1] as float32 and quantised to uint8 as ``round(x * 255)``, like
    every other set (the runner maps uint8 back to x / 255). Draws run in fixed chunks of 1,024
    images in order, so the output depends only on (seed, n, shape). Noise is "far" OOD: no
    semantic content (Hendrycks & Gimpel 2017 use both as OOD sets; OpenOOD has none).
    """

    proximity = "far"
    splits: ClassVar[tuple[str, ...]] = ("test",)

    @classmethod
    def available(cls, data_root: Path, id_dataset: str) -> list[str]:
        return [cls.name]  # generated: always there

    def _draw(self, shape: tuple[int, ...], g: torch.Generator) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def load(self, split: str, ctx: LoadContext) -> ImageSet:
        self.check_split(split)
        if ctx.id_shape is None or ctx.n_id_test is None:
            raise BenchError(f"{self.name}: needs the ID set's image shape and test size "
                             f"(LoadContext(id_shape=(C, H, W), n_id_test=N)); "
                             f"load the ID set first")
        n, shape = int(ctx.n_id_test), tuple(int(s) for s in ctx.id_shape)
        g = torch.Generator(device="cpu").manual_seed(int(ctx.seed))
        out = torch.empty((n, *shape), dtype=torch.uint8)
        for start in range(0, n, _CHUNK):
            m = min(_CHUNK, n - start)
            x = self._draw((m, *shape), g)
            out[start:start + m] = x.mul_(255).round_().to(torch.uint8)
        return ImageSet(self.display_name(), out, None, None,
                        source=f"{self.name}(seed={ctx.seed})", extra={"seed": int(ctx.seed)})


@DATASETS.register("gaussian")
class Gaussian(_Noise):
    """Gaussian noise N(0.5, 0.25^2) per value, clipped to [0, 1] (METHODS.md §1)."""

    def _draw(self, shape: tuple[int, ...], g: torch.Generator) -> Tensor:
        return torch.randn(shape, generator=g).mul_(0.25).add_(0.5).clamp_(0.0, 1.0)


@DATASETS.register("uniform")
class Uniform(_Noise):
    """Uniform noise U[0, 1] per value (METHODS.md §1)."""

    def _draw(self, shape: tuple[int, ...], g: torch.Generator) -> Tensor:
        return torch.rand(shape, generator=g)
