"""bench.views: one forward pass per set, checked against a NumPy forward pass of a real model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bench.models import Classifier
from bench.views import Views, compute_views, to_float01

MEAN, STD = (0.5, 0.25, 0.75), (0.2, 0.3, 0.4)


class MLP(nn.Module):
    """features = relu(W1 x + b1) on flattened pixels, fc = W2 f + b2."""

    def __init__(self, d_in: int, hidden: int, k: int):
        super().__init__()
        self.body = nn.Linear(d_in, hidden)
        self.fc = nn.Linear(hidden, k)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1)).relu()


@pytest.fixture(scope="module")
def model() -> Classifier:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = MLP(3 * 5 * 5, 16, 4)
    return Classifier(net, mean=MEAN, std=STD, num_classes=4).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (23, 3, 5, 5), generator=g, dtype=torch.uint8)


def numpy_forward(model: Classifier, images_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same network in float64 NumPy: normalise, flatten, hidden layer, ReLU, head."""
    w1, b1 = (p.detach().double().numpy() for p in (model.net.body.weight, model.net.body.bias))
    w2, b2 = (p.detach().double().numpy() for p in (model.net.fc.weight, model.net.fc.bias))
    x = images_u8.astype(np.float64) / 255.0
    x = (x - np.array(MEAN)[None, :, None, None]) / np.array(STD)[None, :, None, None]
    f = np.maximum(x.reshape(len(x), -1) @ w1.T + b1, 0.0)
    return f @ w2.T + b2, f


def test_compute_views_equals_a_numpy_forward_pass(model, images):
    labels = torch.arange(23) % 4
    v = compute_views(model, images, name="test", labels=labels, batch_size=5)
    want_z, want_f = numpy_forward(model, images.numpy())
    assert v.logits.dtype == v.features.dtype == torch.float64
    assert v.logits.shape == (23, 4) and v.features.shape == (23, 16)
    # the model runs in float32: agreement to float32 rounding
    np.testing.assert_allclose(v.logits.numpy(), want_z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v.features.numpy(), want_f, rtol=1e-5, atol=1e-5)
    assert v.labels is labels and v.model is model and v.images is None and v.name == "test"
    assert len(v) == 23


def test_float_images_are_taken_as_they_are(model, images):
    v_u8 = compute_views(model, images, name="u8")
    v_f = compute_views(model, images.float() / 255.0, name="f32")
    torch.testing.assert_close(v_u8.logits, v_f.logits, rtol=0, atol=0)
    assert to_float01(images).dtype == torch.float32
    assert float(to_float01(torch.tensor([255], dtype=torch.uint8))) == 1.0


@pytest.mark.parametrize("batch_size", [1, 4, 23, 1000])
def test_views_do_not_depend_on_the_batch_size(model, images, batch_size):
    ref = compute_views(model, images, name="ref", batch_size=7)
    v = compute_views(model, images, name="b", batch_size=batch_size)
    torch.testing.assert_close(v.logits, ref.logits, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(v.features, ref.features, rtol=1e-6, atol=1e-6)


def test_progress_counts_every_image_once(model, images):
    seen: list[int] = []
    compute_views(model, images, name="p", batch_size=10, progress=seen.append)
    assert seen == [10, 10, 3]


def test_empty_set(model):
    v = compute_views(model, torch.zeros(0, 3, 5, 5, dtype=torch.uint8), name="empty")
    assert v.logits.shape == (0, 4) and len(v) == 0


def test_subset_equals_the_views_of_the_subset(model, images):
    labels = torch.arange(23) % 4
    index = torch.arange(100, 123)
    full = compute_views(model, images, name="full", labels=labels, keep_images=True,
                         index=index)
    rows = torch.tensor([3, 0, 22, 7])
    sub = full.subset(rows, name="part")
    direct = compute_views(model, images[rows], name="part", labels=labels[rows],
                           keep_images=True, index=index[rows])
    for field in ("logits", "features"):
        torch.testing.assert_close(getattr(sub, field), getattr(direct, field), rtol=1e-6,
                                   atol=1e-6)
    for field in ("labels", "images", "index"):
        assert torch.equal(getattr(sub, field), getattr(direct, field))
    assert sub.name == "part" and sub.model is model and len(sub) == 4
    assert full.subset(rows).name == "full"   # the name stays unless given


def test_len_uses_whatever_field_is_present():
    assert len(Views("x", labels=torch.zeros(5))) == 5
    assert len(Views("x", images=torch.zeros(2, 1, 3, 3))) == 2
    assert len(Views("x")) == 0


@pytest.mark.parametrize("precision,tol", [("bf16", 0.1), ("fp16", 0.01)])
def test_reduced_precision_views_are_close_to_the_float64_reference(model, images, precision,
                                                                    tol):
    ref_z, ref_f = numpy_forward(model, images.numpy())
    v32 = compute_views(model, images, name="fp32", precision="fp32")
    v = compute_views(model, images, name=precision, precision=precision)
    assert v.logits.dtype == torch.float64 and v.features.dtype == torch.float64
    np.testing.assert_allclose(v32.logits.numpy(), ref_z, rtol=0, atol=1e-5)
    err = np.abs(v.logits.numpy() - ref_z).max()
    # autocast really ran in the lower precision (not a silent fp32 pass), within its rounding
    assert 0 < err < tol * np.abs(ref_z).max()
    np.testing.assert_allclose(v.features.numpy(), ref_f, rtol=0, atol=tol * np.abs(ref_f).max())



# ------------------------------------------------------------------------------------------
# views on disk (sets read from files): float32 files, memory-mapped, scored chunk by chunk
# ------------------------------------------------------------------------------------------
def test_views_written_to_files_are_the_in_memory_views_in_float32(model, images, tmp_path):
    from bench.views import ViewFiles

    mem = compute_views(model, images, name="m", batch_size=7)
    disk = compute_views(model, images, name="d", batch_size=7, out=tmp_path / "v")
    assert disk.logits.dtype == disk.features.dtype == torch.float32
    # the network computes float32: storing float32 loses nothing
    assert torch.equal(disk.logits.double(), mem.logits)
    assert torch.equal(disk.features.double(), mem.features)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.features.npy", "v.logits.npy"]
    assert isinstance(disk.logits.numpy(), np.ndarray)
    assert ViewFiles.read(tmp_path / "v", n=len(images) + 1) is None      # wrong row count
    empty = compute_views(model, images[:0], name="e", out=tmp_path / "e")
    assert empty.logits.shape == (0, 4) and len(empty) == 0


def test_on_disk_cache_entries_round_trip_and_a_missing_file_is_a_miss(model, images, tmp_path):
    from bench.views import cached_views, files_base, views_entry

    kw = dict(name="set", key={"x": 1}, model_key={"m": 1}, cache_dir=tmp_path, batch_size=5,
              device="cpu", on_disk=True)
    first, hit1 = cached_views(model, images, **kw)
    again, hit2 = cached_views(model, images, **kw)
    assert (hit1, hit2) == (False, True)
    assert torch.equal(first.logits, again.logits) and torch.equal(first.features, again.features)
    path, _ = views_entry(tmp_path, "set", {"x": 1}, {"m": 1})
    files_base(path).with_name(files_base(path).name + ".logits.npy").unlink()
    _, hit3 = cached_views(model, images, **kw)
    assert hit3 is False


@pytest.mark.parametrize("spec", ["msp", "energy", "mahalanobis", "zhou(epochs=1)",
                                  "combined(epochs=1)"])
def test_chunked_scores_equal_whole_set_scores(model, images, spec, monkeypatch, tmp_path):
    from bench import fit as fit_mod
    from bench.registry import DETECTORS

    labels = torch.arange(len(images)) % 4
    fit_v = compute_views(model, images, name="fit", labels=labels, out=tmp_path / "fit")
    fit_v.model = model
    test_v = compute_views(model, images, name="test", labels=labels)
    det = DETECTORS.create(spec)
    assert det.row_wise
    det.fit(fit_v, test_v)
    whole = fit_mod.checked_scores(det, test_v)
    monkeypatch.setattr(fit_mod, "SCORE_CHUNK_ELEMS", 1)     # chunks of max(1024, 1) rows
    big = compute_views(model, images.repeat(60, 1, 1, 1), name="big", out=tmp_path / "big")
    chunked = fit_mod.checked_scores(det, big)               # 1,380 rows: two chunks
    assert torch.equal(chunked, whole.repeat(60))


def test_mahalanobis_fits_memory_mapped_float32_views_as_float64_ones(tmp_path):
    """1000 classes x 2048 features (ImageNet ResNet-50 size) from a float32 memory map: the
    fit equals the float64 in-memory fit and scores match a numpy computation."""
    from bench.registry import DETECTORS
    from bench.views import ViewFiles

    rng = np.random.default_rng(0)
    n, h, c = 3000, 2048, 1000
    feats = rng.standard_normal((n, h), dtype=np.float32)
    y = torch.from_numpy(np.arange(n) % c)
    sink = ViewFiles(tmp_path / "f", n)
    sink.write(0, torch.zeros(n, c), torch.from_numpy(feats))
    _, mapped = sink.finish(c)
    det_map = DETECTORS.create("mahalanobis").fit(Views("fit", features=mapped, labels=y))
    det_mem = DETECTORS.create("mahalanobis").fit(
        Views("fit", features=torch.from_numpy(feats).double(), labels=y))
    torch.testing.assert_close(det_map.means_, det_mem.means_, rtol=0, atol=1e-12)
    probe = Views("probe", features=torch.from_numpy(feats[:2]).double())
    s = det_map.score(probe).numpy()
    mu, p = det_map.means_.numpy(), det_map.precision_.numpy()
    ref = []
    for x in feats[:2].astype(np.float64):       # every class's distance, no shortcut
        d = x[None, :] - mu
        ref.append(-np.min(np.einsum("ch,hk,ck->c", d, p, d, optimize=True)))
    np.testing.assert_allclose(s, ref, rtol=1e-8)


@pytest.mark.parametrize("spec", ["fgsm(eps=4/255, batch_size=5)", "contrast", "brightness",
                                  "brightness_contrast(severity=5)"])
def test_batchable_shifts_of_in_memory_sets_equal_the_whole_set_shift(model, images, spec):
    """In-memory sets shift batchable shifts batch by batch (one batch of floats in memory):
    the images equal those of the whole-set call when the batches are the attack's own."""
    from types import SimpleNamespace

    from bench.registry import SHIFTS
    from bench.units import shifted_batches

    shift = SHIFTS.create(spec)
    assert shift.batchable
    labels = torch.arange(len(images)) % 4
    index = torch.arange(len(images))
    whole = shift(to_float01(images), labels, model=model if shift.needs_model else None,
                  generator=torch.Generator().manual_seed(0), index=index)
    ctx = SimpleNamespace(test_images=images, test_labels=labels, test_index=index,
                          batch_size=5, workers=0, device="cpu", model=model, streams=False)
    batched = torch.cat([x for _, x in shifted_batches(ctx, shift, 0)])
    assert torch.equal(batched, whole)


@pytest.mark.parametrize("on_disk", [False, True])
def test_a_view_sink_missing_rows_refuses_to_finish(tmp_path, on_disk):
    """Rows never written would be zeros (files) or uninitialised memory (tensors)."""
    from bench.views import view_sink

    sink = view_sink(5, tmp_path / "v" if on_disk else None)
    z, f = torch.randn(3, 4), torch.randn(3, 6)
    sink.write(0, z, f)
    with pytest.raises(RuntimeError, match="5 images expected, 3 written"):
        sink.finish(4)
    full = view_sink(3, tmp_path / "w" if on_disk else None)
    full.write(0, z[:2], f[:2])
    full.write(2, z[2:], f[2:])
    logits, feats = full.finish(4)
    assert torch.equal(torch.as_tensor(logits).double(), z.double())
    assert torch.equal(torch.as_tensor(feats).double(), f.double())
