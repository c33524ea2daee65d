"""Helpers shared by the shifts: seeded CPU draws, parameter checks, batched input gradients.

Private module (not auto-registered): the registry imports every public module of the package.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Callable

from bench import progress
from bench._lazy import F, nn, torch
from bench.errors import BenchError
from bench.models.base import model_device
from bench.views import ieee_fp32_convs

if TYPE_CHECKING:
    from torch import Tensor


class KeyedRng:
    """Random draws keyed by (seed, image index): image i's values depend on the seed, its
    position ``index[i]`` in its source split, the draw's number within the shift and the
    part it belongs to, never on which other images share its batch, on the batch size, on
    DataLoader workers or on the device.

    Shifts of sets read batch by batch (``imagefolder:``) get one per batch where in-memory
    sets get one ``torch.Generator`` for the whole set. Each draw seeds one CPU generator per
    image from a 63-bit BLAKE2b hash of (seed, part, draw number, index): values are drawn in
    float32 on the CPU, as with a whole-set generator. Changing how keys are derived changes the
    images: bump ``bench.units.KEYED_RNG`` with it (it keys the cached shifted views)."""

    device = property(lambda self: torch.device("cpu"))

    def __init__(self, seed: int, index: Any, part: str = ""):
        self.seed = int(seed)
        self.index = [int(i) for i in torch.as_tensor(index).reshape(-1)]
        self.part = part
        self.draws = 0

    def __len__(self) -> int:
        return len(self.index)

    def _key(self, *what: object) -> int:
        text = "\0".join(map(str, (self.seed, self.part, *what))).encode()
        return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") >> 1

    def generators(self) -> list[torch.Generator]:
        """One fresh CPU generator per image for the next draw."""
        draw, self.draws = self.draws, self.draws + 1
        return [torch.Generator().manual_seed(self._key(draw, i)) for i in self.index]

    def take(self, rows: Any, part: object) -> "KeyedRng":
        """The images at ``rows`` for a named part (``mix``'s k-th shift): its draws do not
        depend on which other parts had images in this batch."""
        return KeyedRng(self.seed, torch.as_tensor(self.index)[torch.as_tensor(rows).cpu()],
                        f"{self.part}/{part}")

    def batch_seed(self) -> int:
        """One seed for a library that draws from a global RNG over a whole batch (torchattacks):
        reproducible for a given batch, not across batch sizes."""
        draw, self.draws = self.draws, self.draws + 1
        return self._key(draw, "batch", *self.index)


def _per_image(shape: Any, generator: KeyedRng, draw: Callable[..., Tensor]) -> Tensor:
    shape = tuple(shape)
    if not shape or shape[0] != len(generator):
        raise ValueError(f"keyed draws need one row per image: shape {shape} for "
                         f"{len(generator)} images")
    gens = generator.generators()
    if not gens:
        return torch.empty(shape, dtype=torch.float32)
    return torch.stack([draw(shape[1:], g) for g in gens])


def part_generator(generator: Any, rows: Tensor, part: int) -> Any:
    """What a part of a composite shift (``mix``) draws from: the same ``torch.Generator``
    (METHODS.md §5, whole sets), or the keyed draws of its images."""
    return generator.take(rows, part) if isinstance(generator, KeyedRng) else generator


def cpu_generator(generator: torch.Generator) -> torch.Generator:
    """The passed generator, checked: random draws come from a CPU generator (METHODS.md §5)."""
    if isinstance(generator, KeyedRng):
        return generator
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if generator.device.type != "cpu":
        # a CUDA generator would make the draws depend on the device
        raise ValueError(f"shifts draw random numbers from a CPU generator, got one on "
                         f"{generator.device}")
    return generator


def rand(shape: torch.Size | tuple[int, ...], generator: torch.Generator, *,
         device: torch.device) -> Tensor:
    """U[0,1) float32 of ``shape`` drawn on the CPU, then moved to ``device``.

    Drawing on the CPU over the whole set in one call makes the values independent of the
    device and of any later batching; a :class:`KeyedRng` draws each image's values apart.
    """
    if isinstance(generator, KeyedRng):
        return _per_image(shape, generator,
                          lambda s, g: torch.rand(s, generator=g, dtype=torch.float32)).to(device)
    return torch.rand(shape, generator=cpu_generator(generator), dtype=torch.float32).to(device)


def randn(shape: torch.Size | tuple[int, ...], generator: torch.Generator, *,
          device: torch.device) -> Tensor:
    """N(0,1) float32 of ``shape`` drawn on the CPU, then moved to ``device``."""
    if isinstance(generator, KeyedRng):
        return _per_image(shape, generator,
                          lambda s, g: torch.randn(s, generator=g, dtype=torch.float32)).to(device)
    return torch.randn(shape, generator=cpu_generator(generator), dtype=torch.float32).to(device)


def uniform(shape: torch.Size | tuple[int, ...], lo: float, hi: float,
            generator: torch.Generator, *, device: torch.device) -> Tensor:
    """U[lo, hi) float32 drawn on the CPU with ``Tensor.uniform_`` (as torchattacks' PGD start)."""
    if isinstance(generator, KeyedRng):
        return _per_image(shape, generator, lambda s, g: torch.empty(s, dtype=torch.float32)
                          .uniform_(lo, hi, generator=g)).to(device)
    t = torch.empty(shape, dtype=torch.float32)
    return t.uniform_(lo, hi, generator=cpu_generator(generator)).to(device)


def randint(low: int, high: int, n: int, generator: Any) -> Tensor:
    """(n,) int64 uniform on [low, high) from the CPU generator (or one keyed draw per image)."""
    if isinstance(generator, KeyedRng):
        return _per_image((n,), generator, lambda s, g: torch.randint(
            low, high, (1,), generator=g, dtype=torch.int64)[0])
    return torch.randint(low, high, (n,), generator=cpu_generator(generator), dtype=torch.int64)


def check_number(shift: str, param: str, value: float, lo: float, hi: float) -> None:
    """BenchError unless ``value`` is a number (not a bool) with lo <= value <= hi."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BenchError(f"{shift}: {param} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    if not lo <= value <= hi:
        raise BenchError(f"{shift}: {param} must lie in [{lo:g}, {hi:g}], got {value!r}; "
                         f"give a value in that range or severity=1..5")


def check_int(shift: str, param: str, value: object, lo: int = 1) -> None:
    """BenchError unless ``value`` is an integer >= lo."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise BenchError(f"{shift}: {param} must be an integer >= {lo}, got {value!r}")


#: images per backward pass on the CPU. A backward pass holds the network's activations of all
#: its images; on 2 CPU cores 64 images run as fast as 256 (ResNet-20, 32x32: 7.1 s vs 7.0 s for
#: 5,120 FGSM gradients, bit for bit the same) and peak 370 MB lower. GPUs keep whole batches.
CPU_GRAD_CHUNK = 64


def loss_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Gradient wrt x of the per-image SUMMED cross-entropy (not the batch mean).

    With the sum, image i's gradient does not depend on how many images share its batch; the
    mean (torchattacks) scales it by 1/B, which leaves its sign unchanged except where the
    scaled value underflows. On the CPU the batch is cut into backward passes of
    ``CPU_GRAD_CHUNK`` images. x: (B,C,H,W) float32, y: (B,) int64 -> (B,C,H,W).
    """
    if x.device.type == "cpu" and x.shape[0] > CPU_GRAD_CHUNK:
        return torch.cat([loss_grad(model, x[i:i + CPU_GRAD_CHUNK], y[i:i + CPU_GRAD_CHUNK])
                          for i in range(0, x.shape[0], CPU_GRAD_CHUNK)])
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def batched_attack(name: str, model: nn.Module, x: Tensor, y: Tensor, batch_size: int,
                   step: Callable[[Tensor, Tensor, slice], Tensor]) -> Tensor:
    """Run ``step(xb, yb, rows)`` on batches of float32 images on the model's device.

    Returns the concatenated result in x's dtype and on x's device. Works inside
    ``torch.no_grad`` or ``torch.inference_mode`` of the caller: attacks need gradients.
    """
    dev = model_device(model)
    with torch.inference_mode(False), torch.enable_grad(), ieee_fp32_convs(dev), \
            progress.task(name, total=x.shape[0]) as bar:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # a normal tensor
        for start in range(0, x.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            # clone: an inference-mode tensor from the caller cannot enter autograd
            xb = x[rows].to(dev, torch.float32).clone()
            yb = y[rows].to(dev, torch.long).clone()
            out[rows] = step(xb, yb, rows).detach().to(out.device, out.dtype)
            bar.advance(xb.shape[0])
    return out
