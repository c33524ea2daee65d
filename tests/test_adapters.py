"""Adapters: albu:..., torchattacks:..., pood:..., cifar10c:... against direct/independent computations."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import scipy.special
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError
from bench.models import Classifier
from bench.registry import DETECTORS, SHIFTS
from bench.views import Views, compute_views

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


class _Net(nn.Module):
    def __init__(self, c: int = 3, k: int = 3, h: int = 6):
        super().__init__()
        self.conv = nn.Conv2d(c, h, 3, padding=1)
        self.fc = nn.Linear(h, k)

    def features(self, x):
        return F.relu(self.conv(x)).mean((2, 3))


@pytest.fixture(scope="module")
def model() -> Classifier:
    g = torch.Generator().manual_seed(0)
    m = Classifier(_Net(), mean=[0.5] * 3, std=[0.25] * 3, num_classes=3)
    with torch.no_grad():
        for p in m.net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return m.eval()


def _images(n: int, seed: int = 1, size: int = 8) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# albu:
# ---------------------------------------------------------------------------------------------
def test_albu_gauss_noise_deterministic_and_equal_to_albumentations(tmp_path):
    import albumentations as A

    x = _images(5)
    y = torch.zeros(5, dtype=torch.long)
    shift = SHIFTS.create("albu:GaussNoise(std_range=(0.1, 0.1))", data_root=tmp_path)
    a = shift(x, y, generator=_gen(3))
    b = shift(x, y, generator=_gen(3))
    c = shift(x, y, generator=_gen(4))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b) and not torch.equal(a, c)

    # the documented seeding: one seed per image from the generator, the transform re-seeded
    seeds = torch.randint(0, 2**31 - 1, (5,), generator=_gen(3)).tolist()
    t = A.GaussNoise(std_range=(0.1, 0.1), p=1.0)
    for i in range(5):
        t.set_random_seed(seeds[i])
        ref = t(image=x[i].permute(1, 2, 0).numpy().copy())["image"]
        np.testing.assert_array_equal(a[i].permute(1, 2, 0).numpy(), ref)

    # an image's noise depends on its position only, not on the other images
    x2 = x.clone()
    x2[0] = 0.5
    assert torch.equal(shift(x2, y, generator=_gen(3))[1:], a[1:])
    assert shift.get_params() == {"arg": "GaussNoise", "std_range": (0.1, 0.1)}
    assert shift.spec() == "albu:GaussNoise(std_range=(0.1, 0.1))"


def test_albu_noise_has_the_requested_sigma():
    x = torch.full((4, 3, 32, 32), 0.5)
    out = SHIFTS.create("albu:GaussNoise(std_range=(0.1, 0.1))")(x, torch.zeros(4),
                                                                  generator=_gen())
    assert abs(float((out - 0.5).std()) - 0.1) < 0.005
    assert abs(float((out - 0.5).mean())) < 0.005


def test_albu_brightness_contrast_closed_form():
    x = _images(3) * 0.5  # no clipping at 1 after +0.2 or *1.5
    y = torch.zeros(3)
    bright = SHIFTS.create("albu:RandomBrightnessContrast(brightness_limit=(0.2, 0.2), "
                           "contrast_limit=(0, 0))")(x, y, generator=_gen())
    torch.testing.assert_close(bright, x + 0.2, atol=1e-6, rtol=0)
    contrast = SHIFTS.create("albu:RandomBrightnessContrast(brightness_limit=(0, 0), "
                             "contrast_limit=(0.5, 0.5))")(x, y, generator=_gen())
    torch.testing.assert_close(contrast, x * 1.5, atol=1e-6, rtol=0)


def test_albu_grey_images_keep_their_shape():
    x = torch.rand(3, 1, 8, 8, generator=_gen(2))
    out = SHIFTS.create("albu:Blur(blur_limit=3)")(x, torch.zeros(3), generator=_gen())
    assert out.shape == x.shape and not torch.equal(out, x)


@pytest.mark.parametrize("spec, expected", [
    ("albu:GausNoise", r"no image transform 'GausNoise'; did you mean 'GaussNoise'"),
    ("albu:GaussNoise(sigma=0.1)", r"no parameter 'sigma' \(parameters: std_range"),
    ("albu:GaussNoise(std_range=(0.3,))", r"bad parameters"),
    ("albu:GaussNoise(severity=3)", r"no severity table"),
    ("albu:GaussNoise(p=0.5)", r"p is fixed at 1"),
    ("albu:Compose", r"no image transform 'Compose'"),
])
def test_albu_user_mistakes(spec, expected):
    with pytest.raises(BenchError, match=expected) as info:
        SHIFTS.create(spec)
    assert "\n" not in str(info.value)


def test_albu_size_changing_transform_is_refused():
    shift = SHIFTS.create("albu:RandomCrop(height=4, width=4)")
    with pytest.raises(BenchError, match="changed the image shape"):
        shift(_images(2), torch.zeros(2), generator=_gen())


# ---------------------------------------------------------------------------------------------
# torchattacks:
# ---------------------------------------------------------------------------------------------
def test_torchattacks_fgsm_equals_torchattacks(model):
    import torchattacks

    x = _images(12)
    y = torch.arange(12) % 3
    eps = 4 / 255
    shift = SHIFTS.create("torchattacks:FGSM(eps=4/255)", data_root=None)
    assert shift.needs_model and shift.group == "attack"
    ours = shift(x, y, model=model, generator=_gen())
    ref = torchattacks.FGSM(model, eps=eps)(x, y)
    assert torch.equal(ours, ref)
    assert float((ours - x).abs().max()) <= eps + 1e-6
    with torch.no_grad():  # an attack raises the loss
        assert F.cross_entropy(model(ours), y) > F.cross_entropy(model(x), y)
    assert shift.get_params() == {"arg": "FGSM", "eps": eps, "successful_only": False}


def test_torchattacks_pgd_is_seeded_from_the_generator_and_leaves_global_rng_alone(model):
    import torchattacks

    x = _images(6)
    y = torch.arange(6) % 3
    shift = SHIFTS.create("torchattacks:PGD(eps=8/255, alpha=2/255, steps=3)")
    model.train()
    before = torch.get_rng_state()
    a = shift(x, y, model=model, generator=_gen(7))
    assert torch.equal(torch.get_rng_state(), before)
    assert model.training  # mode restored
    model.eval()
    b = shift(x, y, model=model, generator=_gen(7))
    c = shift(x, y, model=model, generator=_gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the documented seeding: one seed from the generator, the global RNG seeded with it
    seed = int(torch.randint(0, 2**62, (1,), generator=_gen(7)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ref = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=3)(x, y)
    assert torch.equal(a, ref)
    assert float((a - x).abs().max()) <= 8 / 255 + 1e-6


@pytest.mark.parametrize("spec, expected", [
    ("torchattacks:FSGM", r"no attack 'FSGM'; did you mean 'FGSM'"),
    ("torchattacks:FGSM(epsilon=0.1)", r"no parameter 'epsilon' \(parameters: eps\)"),
    ("torchattacks:FGSM(severity=2)", r"no severity table"),
])
def test_torchattacks_user_mistakes(spec, expected):
    with pytest.raises(BenchError, match=expected):
        SHIFTS.create(spec)


def test_torchattacks_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchattacks", None)
    with pytest.raises(BenchError, match=r"shiftbench\[attacks-extra\]"):
        SHIFTS.create("torchattacks:FGSM")


# ---------------------------------------------------------------------------------------------
# pood:
# ---------------------------------------------------------------------------------------------
def _logit_views(z: np.ndarray) -> Views:
    return Views("t", logits=torch.from_numpy(z))


def test_pood_energy_and_msp_equal_our_sign_mapped_formulas():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=8.0, size=(50, 4))
    fit = Views("fit", logits=torch.from_numpy(z[:10]), labels=torch.zeros(10, dtype=torch.long))
    for t in (1.0, 2.5):
        energy = DETECTORS.create(f"pood:EnergyBased(t={t})", device="cpu").fit(fit, fit)
        np.testing.assert_allclose(energy.score(_logit_views(z)).numpy(),
                                   t * scipy.special.logsumexp(z / t, axis=1), rtol=1e-12)
        msp = DETECTORS.create(f"pood:MaxSoftmax(t={t})").fit(fit, fit)
        got = msp.score(_logit_views(z))
        assert got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), scipy.special.softmax(z / t, axis=1).max(1),
                                   rtol=1e-12)
        assert energy.needs == {"logits"} and msp.needs == {"logits"}


def test_pood_knn_on_features_against_brute_force():
    rng = np.random.default_rng(1)
    fit_f = rng.normal(size=(60, 5))
    test_f = rng.normal(size=(15, 5))
    fit = Views("fit", features=torch.from_numpy(fit_f), labels=torch.zeros(60, dtype=torch.long))
    det = DETECTORS.create("pood:KNN(k=5)", device="cpu").fit(fit, fit)
    assert det.needs == {"features", "labels"}
    assert det.get_params() == {"arg": "KNN", "k": 5} and det.spec() == "pood:KNN(k=5)"
    a = fit_f / np.linalg.norm(fit_f, axis=1, keepdims=True)
    b = test_f / np.linalg.norm(test_f, axis=1, keepdims=True)
    dist = np.sqrt(((b[:, None] - a[None]) ** 2).sum(-1))
    np.testing.assert_allclose(det.score(Views("t", features=torch.from_numpy(test_f))).numpy(),
                               -np.sort(dist, axis=1)[:, 4], rtol=1e-10)


def test_pood_mahalanobis_runs_in_float64_with_pytorch_oods_definition():
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(3), 20)
    f = rng.normal(size=(60, 4)) + y[:, None] * 1.5
    q = rng.normal(size=(10, 4)) * 2
    fit = Views("fit", features=torch.from_numpy(f), labels=torch.from_numpy(y))
    det = DETECTORS.create("pood:Mahalanobis").fit(fit, fit)
    # pytorch-ood: scatter summed over classes (not divided by N) + 1e-6 I, score 0.5 min_c d_c
    mu = np.stack([f[y == c].mean(0) for c in range(3)])
    scatter = sum((f[y == c] - mu[c]).T @ (f[y == c] - mu[c]) for c in range(3))
    prec = np.linalg.inv(scatter + 1e-6 * np.eye(4))
    d = np.stack([(((q - mu[c]) @ prec) * (q - mu[c])).sum(1) for c in range(3)], 1)
    np.testing.assert_allclose(det.score(Views("t", features=torch.from_numpy(q))).numpy(),
                               -0.5 * d.min(1), rtol=1e-9)


def test_pood_odin_needs_images_and_model_and_matches_the_formula(model):
    x = _images(8)
    eps, temp = 0.01, 10.0
    views = compute_views(model, x, name="test", keep_images=True)
    det = DETECTORS.create(f"pood:ODIN(eps={eps}, temperature={temp})").fit(views, views)
    assert det.needs == {"images", "model"}
    got = det.score(views)

    xr = x.clone().requires_grad_(True)
    logits = model(xr) / temp
    loss = F.cross_entropy(logits, logits.argmax(1))
    (grad,) = torch.autograd.grad(loss, xr)
    with torch.no_grad():
        expected = (model(x - eps * grad.sign()) / temp).softmax(1).max(1).values
    torch.testing.assert_close(got, expected.double(), rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())


def test_pood_vim_takes_the_heads_weights(model):
    x = _images(40)
    y = torch.arange(40) % 3
    views = compute_views(model, x, name="fit", labels=y)
    det = DETECTORS.create("pood:ViM(d=2)").fit(views, views)
    assert det.needs == {"features", "labels", "model"}
    s = det.score(views).numpy()
    # ViM (Wang et al. 2022) with W, b = the classifier's head, in numpy
    f = views.features.numpy()
    w = model.head.weight.detach().double().numpy()
    b = model.head.bias.detach().double().numpy()
    u = -np.linalg.pinv(w) @ b
    xc = f - u
    _, vecs = np.linalg.eigh(xc.T @ xc / len(xc))
    resid = vecs[:, : f.shape[1] - 2]
    vlogit = np.linalg.norm(xc @ resid, axis=1)
    logits = f @ w.T + b
    alpha = logits.max(1).mean() / vlogit.mean()
    expected = scipy.special.logsumexp(logits, axis=1) - alpha * vlogit
    np.testing.assert_allclose(s, expected, rtol=1e-4, atol=1e-4)  # ViM computes in float32


@pytest.mark.parametrize("spec, expected", [
    ("pood:EnergyBase", r"no detector 'EnergyBase'; did you mean 'EnergyBased'"),
    ("pood:RankFeat", r"pood:RankFeat is not supported: it needs spatial feature maps"),
    ("pood:ViM", r"pood:ViM needs 'd': write pood:ViM\(d=...\)"),
    ("pood:ViM(d=2, w=1)", r"w is filled in from the classifier"),
    ("pood:KNN(kk=3)", None),  # KNN takes **knn_kwargs: sklearn rejects kk at fit time
    ("pood:MaxSoftmax(temp=2)", r"no parameter 'temp' \(parameters: t\)"),
    ("pood:ReAct(detector=energy)", r"detector takes a Python function"),
])
def test_pood_user_mistakes(spec, expected):
    if expected is None:
        with pytest.raises(BenchError, match="bad parameters"):
            DETECTORS.create(spec).fit(Views("fit", model=None), Views("val"))
        return
    with pytest.raises(BenchError, match=expected):
        DETECTORS.create(spec)


def test_pood_missing_package(monkeypatch):
    for mod in ("pytorch_ood", "pytorch_ood.api", "pytorch_ood.detector"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(BenchError, match=r"shiftbench\[ood-extra\]"):
        DETECTORS.create("pood:EnergyBased")


# ---------------------------------------------------------------------------------------------
# cifar10c:
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def c10c_root(tmp_path):
    """A fake release: a 20-image 'test split', fog.npy with 5 severities of those 20."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=20)
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    images = rng.integers(0, 256, size=(100, 32, 32, 3), dtype=np.uint8)
    np.save(folder / "fog.npy", images)
    np.save(folder / "labels.npy", np.tile(labels, 5).astype(np.uint8))
    return tmp_path, images, labels


def test_cifar10c_returns_the_released_images_of_the_same_test_images(c10c_root):
    root, images, labels = c10c_root
    index = torch.tensor([1, 4, 7, 8, 19])
    y = torch.from_numpy(labels[index.numpy()]).long()
    x = torch.zeros(5, 3, 32, 32)
    for severity in (2, None):
        spec = "cifar10c:fog" if severity is None else f"cifar10c:fog(severity={severity})"
        shift = SHIFTS.create(spec, data_root=root)
        assert shift.needs_index
        out = shift(x, y, generator=_gen(), index=index)
        s = severity or 3
        expected = images[(s - 1) * 20 + index.numpy()].transpose(0, 3, 1, 2) / 255.0
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-7)
        assert out.dtype == x.dtype
        assert shift.get_params() == {"arg": "fog", "severity": s}


def test_cifar10c_mistakes(c10c_root, tmp_path):
    root, _, labels = c10c_root
    index = torch.tensor([0, 1, 2])
    y = torch.from_numpy(labels[:3]).long()
    x = torch.zeros(3, 3, 32, 32)
    shift = SHIFTS.create("cifar10c:fog", data_root=root)
    with pytest.raises(BenchError, match="labels do not match the ID test set"):
        shift(x, (y + 1) % 10, generator=_gen(), index=index)
    with pytest.raises(BenchError, match="test-split index"):
        shift(x, y, generator=_gen())
    with pytest.raises(BenchError, match=r"CIFAR-10-C file .*fgo\.npy not found; did you mean "
                                         r"cifar10c:fog\?"):
        SHIFTS.create("cifar10c:fgo", data_root=root)(x, y, generator=_gen(), index=index)
    with pytest.raises(BenchError, match="needs a data root"):
        SHIFTS.create("cifar10c:fog")(x, y, generator=_gen(), index=index)
    with pytest.raises(BenchError, match="severity must be an integer 1..5"):
        SHIFTS.create("cifar10c:fog(severity=6)", data_root=root)
    with pytest.raises(BenchError, match="outside the 20 images"):
        shift(x, y, generator=_gen(), index=torch.tensor([0, 1, 25]))


# ---------------------------------------------------------------------------------------------
# the runner's one call, with index, for the adapters
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["albu:GaussNoise", "torchattacks:FGSM"])
def test_adapters_accept_the_runners_call_with_index(spec, model):
    pytest.importorskip("albumentations" if spec.startswith("albu") else "torchattacks")
    x, y = _images(4), torch.tensor([0, 1, 2, 0])
    shift = SHIFTS.create(spec)
    assert not shift.needs_index
    out = shift(x, y, model=model, generator=_gen(), index=torch.arange(4))
    torch.testing.assert_close(out, shift(x, y, model=model, generator=_gen()), rtol=0, atol=0)
