"""``jpeg``: JPEG compression at CIFAR-10-C's five qualities, as a shiftbench corruption."""

from __future__ import annotations

import io
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from bench.attacks.base import CORRUPTION, Shift
from bench.errors import BenchError


class JPEGCompression(Shift):
    """JPEG-encode and decode every image with Pillow at ``quality``.

    Hendrycks & Dietterich 2019 (CIFAR-10-C, ``make_cifar_c.py: jpeg_compression``): quality
    by severity 1..5 is 80 65 58 50 40 (the CIFAR-10-C values). Images are rounded to uint8
    (JPEG stores 8-bit values), encoded with ``PIL.Image.save(format="JPEG", quality=q)`` at
    Pillow's default 4:2:0 chroma subsampling, decoded and scaled back to [0, 1]. Pillow has no
    batch encoder, so the encode/decode is per image; the conversions around it are batched.
    Deterministic: it draws nothing from the generator. 1-channel images are encoded as
    greyscale ("L"), 3-channel ones as RGB.
    Shapes: x (N, C, H, W) float in [0, 1], C in {1, 3} -> same shape and dtype.
    """

    group: ClassVar[str] = CORRUPTION
    severity_param: ClassVar[str] = "quality"
    severities: ClassVar[tuple[float, ...]] = (80, 65, 58, 50, 40)

    def __init__(self, *, severity: int | None = None, quality: int | None = None):
        self._init_severity(severity, {"quality": quality})
        q = self.quality
        if isinstance(q, float) and q.is_integer():
            self.quality = q = int(q)
        if not isinstance(q, int) or not 1 <= q <= 95:
            # Pillow's documented range; above 95 the quantisation tables stop changing
            raise BenchError(f"jpeg: quality must be an integer 1..95, got {q!r}; "
                             f"or give severity=1..5")

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator) -> Tensor:
        n, c = x.shape[:2]
        if c not in (1, 3):
            raise BenchError(f"jpeg: images need 1 or 3 channels, got {c}")
        mode = "L" if c == 1 else "RGB"
        u8 = (x.detach().cpu() * 255.0).round_().clamp_(0, 255).to(torch.uint8)
        hwc = u8.permute(0, 2, 3, 1).numpy()
        out = np.empty_like(hwc)
        for i in range(n):
            buf = io.BytesIO()
            img = Image.fromarray(hwc[i, :, :, 0] if c == 1 else hwc[i], mode=mode)
            img.save(buf, format="JPEG", quality=self.quality)
            buf.seek(0)
            dec = np.asarray(Image.open(buf).convert(mode))
            out[i] = dec[:, :, None] if c == 1 else dec
        res = torch.from_numpy(out).permute(0, 3, 1, 2)
        return res.to(device=x.device, dtype=x.dtype).div_(255.0)
