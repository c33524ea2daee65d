"""``ae``: the seed paper's pixel autoencoder, scored by reconstruction error.

METHODS.md §4. Seed repository joeduman/Upgrading-Autoencoders, notebook
``autoencoder_main_code.ipynb``, class ``Autoencoder``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench import progress
from bench.errors import BenchError
from bench.registry import DETECTORS
from bench.views import Views, to_float01
from bench.detectors.base import Detector, check_device, check_param


def init_default_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """PyTorch's default init of every Conv / ConvTranspose / Linear in ``module``, drawn from
    ``generator`` (kaiming-uniform a=sqrt(5) weights, bias U(+-1/sqrt(fan_in))): the global RNG
    is never used."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if m.bias is not None:
                    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
    return module


class PixelAE(nn.Module):
    """The seed's convolutional autoencoder on images in [-1, 1], (N, C, H, W) -> same shape.

    Encoder Conv(C->64, 3, s2, p1)-ReLU-Conv(64->128, 3, s2, p1)-ReLU, decoder
    ConvT(128->64, 3, s2, p1, op1)-ReLU-ConvT(64->C, 3, s2, p1, op1)-Tanh. The code is
    128 x H/4 x W/4 (larger than the input: no bottleneck). With ``bottleneck=k`` (ours, not the
    seed's) a 1x1 Conv(128->k) ends the encoder (linear code, k x H/4 x W/4) and a
    1x1 Conv(k->128)-ReLU starts the decoder.
    """

    def __init__(self, channels: int, bottleneck: int | None = None):
        super().__init__()
        enc: list[nn.Module] = [nn.Conv2d(channels, 64, 3, stride=2, padding=1, device="meta"),
                                nn.ReLU(),
                                nn.Conv2d(64, 128, 3, stride=2, padding=1, device="meta"),
                                nn.ReLU()]
        dec: list[nn.Module] = [nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1,
                                                   output_padding=1, device="meta"),
                                nn.ReLU(),
                                nn.ConvTranspose2d(64, channels, 3, stride=2, padding=1,
                                                   output_padding=1, device="meta"),
                                nn.Tanh()]
        if bottleneck is not None:
            enc.append(nn.Conv2d(128, bottleneck, 1, device="meta"))
            dec = [nn.Conv2d(bottleneck, 128, 1, device="meta"), nn.ReLU(), *dec]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        # built on the meta device: parameters are allocated here and filled by init_default_
        self.to_empty(device="cpu")

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


@DETECTORS.register("ae")
class AE(Detector):
    """The seed's pixel autoencoder: score = minus the per-image mean squared reconstruction error.

    Trained on the ID fit images mapped to [-1, 1] (``2x - 1``) with the seed's settings: MSE
    loss, Adam ``lr = 1e-3``, ``batch_size = 128``, ``epochs = 10``, shuffled batches from
    ``self.seed``. ``score(x) = -mean_{c,h,w} (AE(x') - x')^2`` with ``x' = 2x - 1``, i.e. the
    error is measured in the [-1, 1] space (4 x the error in [0, 1] units: same ranking).
    Higher = more in-distribution; (N,) float64. The val set is not used (nothing to fit there).

    Works for any C (1 or 3) and any H, W divisible by 4 (CIFAR 32x32 -> 8x8 code, digits
    8x8 -> 2x2). ``bottleneck=k`` adds the 1x1 conv to k channels described in
    :class:`PixelAE` (our option; the seed has none, which is part of why it detects OOD data
    poorly). ``self.history_`` holds the per-epoch mean training loss.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"images"})
    differentiable: ClassVar[bool] = True
    cacheable: ClassVar[bool] = True
    reconstructs: ClassVar[bool] = True
    #: images per forward pass when scoring / reconstructing
    eval_batch: ClassVar[int] = 512

    def __init__(self, *, epochs: int = 10, lr: float = 1e-3, batch_size: int = 128,
                 bottleneck: int | None = None, device: str = "cpu", seed: int = 0):
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.bottleneck = bottleneck
        self.device = device
        self.seed = seed
        self._check_params()  # a bad spec fails here, before any data is loaded

    # ----------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        """Every hyper-parameter in range; epochs >= 1 (epochs=0 would score with a random AE)."""
        check_param("ae", "epochs", self.epochs, lo=1, integer=True, example=10)
        check_param("ae", "batch_size", self.batch_size, lo=1, integer=True, example=128)
        check_param("ae", "lr", self.lr, lo=0, lo_open=True, example=1e-3)
        check_device("ae", self.device)
        if self.bottleneck is not None and not (isinstance(self.bottleneck, int)
                                                and self.bottleneck >= 1):
            raise BenchError(f"ae: bottleneck must be a channel count >= 1 or None, "
                             f"e.g. ae(bottleneck=8); got {self.bottleneck!r}")

    @staticmethod
    def _images(views: Views) -> Tensor:
        if views.images is None:
            raise RuntimeError(f"views {views.name!r} carry no images")
        x = views.images
        if x.ndim != 4:
            raise BenchError(f"ae needs images shaped (N, C, H, W); {views.name!r} has "
                             f"shape {tuple(x.shape)}")
        return x

    def fit(self, fit: Views, val: Views) -> "AE":
        """Train the autoencoder on the ``fit`` images; ``val`` is not needed."""
        self._check_params()
        x = self._images(fit)
        c, h, w = (int(s) for s in x.shape[1:])
        if h % 4 or w % 4:
            raise BenchError(f"ae needs image height and width divisible by 4 (two stride-2 "
                             f"convolutions), got {h}x{w}: resize the ID set, e.g. to "
                             f"{max(4, round(h / 4) * 4)}x{max(4, round(w / 4) * 4)}")
        g = torch.Generator().manual_seed(int(self.seed))
        self.net_ = init_default_(PixelAE(c, self.bottleneck), g)
        self.in_shape_ = (c, h, w)
        self.history_ = self._train(x, g)
        self.fitted_ = True
        return self

    def _train(self, images: Tensor, g: torch.Generator) -> list[float]:
        dev = torch.device(self.device)
        net = self.net_.to(dev).train()
        n = int(images.shape[0])
        history: list[float] = []
        if n == 0 or self.epochs == 0:
            self.net_ = net.cpu().eval()
            return history
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        with progress.task("ae: training", total=self.epochs) as bar:
            for _ in range(self.epochs):
                perm = torch.randperm(n, generator=g)
                running = torch.zeros((), device=dev)
                for start in range(0, n, self.batch_size):
                    idx = perm[start:start + self.batch_size]
                    x = to_float01(images[idx]).to(dev).mul_(2.0).sub_(1.0)
                    loss = F.mse_loss(net(x), x)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    running += loss.detach() * idx.numel()
                mean = float(running) / n  # per-element MSE averaged over all images
                history.append(mean)
                bar.advance(1, loss=mean)
        self.net_ = net.cpu().eval()
        return history

    # ----------------------------------------------------------------------------------------
    def _map(self, images: Tensor, fn: Callable[[nn.Module, Tensor], Tensor]) -> list[Tensor]:
        """``fn(net, x)`` on CPU for each eval batch of ``images`` mapped to [-1, 1]."""
        if tuple(images.shape[1:]) != self.in_shape_:
            c, h, w = self.in_shape_
            raise BenchError(f"ae was fitted on {c}x{h}x{w} images, got "
                             f"{'x'.join(str(s) for s in images.shape[1:])}: resize the set "
                             f"to the ID image size")
        dev = torch.device(self.device)
        net = self.net_.to(dev).eval().requires_grad_(False)
        out = []
        # gradients flow to images that carry them (score_images), never to the weights
        with torch.set_grad_enabled(images.requires_grad):
            for start in range(0, images.shape[0], self.eval_batch):
                x = to_float01(images[start:start + self.eval_batch]).to(dev)
                out.append(fn(net, x * 2.0 - 1.0).cpu())
        self.net_ = net.cpu()
        return out

    def score(self, views: Views) -> Tensor:
        """(N,) float64: minus the per-image mean squared error in the [-1, 1] space."""
        self.check_fitted()
        out = self._map(self._images(views),
                        lambda net, x: -(net(x).double() - x.double()).pow(2).mean(dim=(1, 2, 3)))
        return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)

    def reconstruct(self, images: Tensor) -> Tensor:
        """Reconstructions of ``images`` (uint8 or float in [0, 1], (N, C, H, W)) as float32
        images in [0, 1], same shape, on CPU (for galleries)."""
        self.check_fitted()
        out = self._map(images, lambda net, x: net(x).add_(1.0).mul_(0.5).clamp_(0.0, 1.0))
        return torch.cat(out) if out else torch.empty(0, *self.in_shape_)

    def encode(self, images: Tensor) -> Tensor:
        """The code of each image, float32 (N, k, H/4, W/4) with k = 128 or ``bottleneck``."""
        self.check_fitted()
        out = self._map(images, lambda net, x: net.encoder(x))
        return torch.cat(out)

    # ----------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        self.check_fitted()
        return {"in_shape": list(self.in_shape_), "bottleneck": self.bottleneck,
                "net": {k: t.detach().cpu().clone() for k, t in self.net_.state_dict().items()},
                "history": list(self.history_)}

    def load_state(self, state: dict[str, Any]) -> "AE":
        c, h, w = (int(s) for s in state["in_shape"])
        self.net_ = PixelAE(c, state["bottleneck"])
        self.net_.load_state_dict(state["net"])
        self.net_.eval()
        self.in_shape_ = (c, h, w)
        self.history_ = [float(x) for x in state["history"]]
        self.fitted_ = True
        return self


__all__ = ["AE", "PixelAE", "init_default_"]
