"""The example plugin's own tests: JPEG against Pillow, KNN against brute-force NumPy."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from bench.errors import BenchError
from bench.views import Views
from shiftbench_plugin_example import KNN, JPEGCompression


def _images(n: int = 6, c: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # smooth images (a random low-resolution pattern upsampled), like natural ones
    low = torch.rand(n, c, 4, 4, generator=g)
    return torch.nn.functional.interpolate(low, size=(16, 16), mode="bilinear",
                                           align_corners=False)


def test_jpeg_matches_pillow_round_trip():
    x = _images()
    out = JPEGCompression(quality=50)(x, torch.zeros(6, dtype=torch.long),
                                      generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    u8 = np.rint(x.numpy() * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    for i in range(len(u8)):
        buf = io.BytesIO()
        Image.fromarray(u8[i]).save(buf, "JPEG", quality=50)
        expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")) / 255.0
        np.testing.assert_allclose(out[i].permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_jpeg_severity_table_order_and_grey():
    x = _images()
    y = torch.zeros(6, dtype=torch.long)
    assert [JPEGCompression(severity=s).quality for s in range(1, 6)] == [80, 65, 58, 50, 40]
    assert JPEGCompression().quality == 58
    err = [float((JPEGCompression(severity=s)(x, y, generator=torch.Generator()) - x).abs().mean())
           for s in (1, 5)]
    assert err[1] > err[0] > 0
    grey = _images(c=1)
    out = JPEGCompression(quality=40)(grey, y, generator=torch.Generator())
    assert out.shape == grey.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    with pytest.raises(BenchError):
        JPEGCompression(severity=2, quality=50)
    with pytest.raises(BenchError):
        JPEGCompression(quality=0)


def test_knn_matches_brute_force():
    rng = np.random.default_rng(0)
    fit_f = rng.normal(size=(300, 8))
    test_f = np.concatenate([rng.normal(size=(40, 8)), rng.normal(3.0, 1.0, size=(20, 8))])
    k = 7
    det = KNN(k=k).fit(Views("fit", features=torch.from_numpy(fit_f)), Views("val"))
    det.chunk_size = 16  # several chunks, one partial
    got = det.score(Views("test", features=torch.from_numpy(test_f))).numpy()

    a = fit_f / np.linalg.norm(fit_f, axis=1, keepdims=True)
    b = test_f / np.linalg.norm(test_f, axis=1, keepdims=True)
    dist = np.sqrt(((b[:, None, :] - a[None, :, :]) ** 2).sum(-1))
    expected = -np.sort(dist, axis=1)[:, k - 1]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_knn_rejects_k_larger_than_fit_set():
    with pytest.raises(BenchError, match="k=10"):
        KNN(k=10).fit(Views("fit", features=torch.randn(5, 3, dtype=torch.float64)), Views("val"))
    with pytest.raises(BenchError):
        KNN(k=0)


def test_jpeg_accepts_the_runners_call_with_index():
    """bench run calls every shift as shift(x, y, model=..., generator=g, index=positions)."""
    x, y = _images(), torch.zeros(6, dtype=torch.long)
    out = JPEGCompression(quality=50)(x, y, model=None, generator=torch.Generator(),
                                      index=torch.arange(6))
    torch.testing.assert_close(out, JPEGCompression(quality=50)(x, y, generator=torch.Generator()))
