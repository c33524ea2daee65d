"""``ae``: the seed paper's pixel autoencoder, scored by reconstruction error.

METHODS.md §4. Seed repository joeduman/Upgrading-Autoencoders, notebook
``autoencoder_main_code.ipynb``, class ``Autoencoder``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from bench import progress
from bench._lazy import F, nn, torch
from bench.errors import BenchError
from bench.registry import DETECTORS
from bench.views import Views, to_float01
from bench.detectors.base import Detector, check_device, check_param

if TYPE_CHECKING:
    from torch import Tensor


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
        from bench.detectors._ae_net import PixelAE, init_default_

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
        net = self._eval_net(dev)
        out = []
        # gradients flow to images that carry them (score_images), never to the weights
        with torch.set_grad_enabled(images.requires_grad):
            for start in range(0, images.shape[0], self.eval_batch):
                x = to_float01(images[start:start + self.eval_batch]).to(dev)
                out.append(fn(net, x * 2.0 - 1.0).cpu())
        return out

    def _eval_net(self, dev: torch.device) -> nn.Module:
        """The fitted network on ``dev``, in eval mode, without parameter gradients.

        ``net_`` stays on the CPU; another device gets a copy made once per fitted network.
        Moving ``net_`` there and back would swap its weights, in place, under the autograd graph
        of an adaptive attack's ``score_images`` that still needs them on the device."""
        if dev.type == "cpu":
            return self.net_.eval().requires_grad_(False)
        cached = getattr(self, "_net_on_device", None)
        if cached is None or cached[0] is not self.net_ or cached[1] != str(dev):
            net = copy.deepcopy(self.net_).to(dev).eval().requires_grad_(False)
            self._net_on_device = cached = (self.net_, str(dev), net)
        return cached[2]

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
        from bench.detectors._ae_net import PixelAE

        c, h, w = (int(s) for s in state["in_shape"])
        self.net_ = PixelAE(c, state["bottleneck"])
        self.net_.load_state_dict(state["net"])
        self.net_.eval()
        self.in_shape_ = (c, h, w)
        self.history_ = [float(x) for x in state["history"]]
        self.fitted_ = True
        return self


def __getattr__(name: str):
    """``PixelAE`` and ``init_default_`` stay importable from here (PEP 562), loaded lazily."""
    if name in ("PixelAE", "init_default_"):
        from bench.detectors import _ae_net

        return getattr(_ae_net, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AE"]
