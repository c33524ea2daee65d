"""The seed's convolutional autoencoder network (imported when ``ae`` builds one: torch is
loaded on first use, not when the detector list is read)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


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


__all__ = ["PixelAE", "init_default_"]
