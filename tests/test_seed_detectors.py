"""The seed paper's detectors (ae, zhou, combined) against numpy / scipy re-computations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from torch import nn

from bench import cache
from bench.errors import BenchError
from bench.models import Classifier
from bench.registry import DETECTORS
from bench.views import Views
from bench.detectors.ae import AE
from bench.detectors.combined import Combined, log_msp
from bench.detectors.zhou import Zhou, log_score

H, C = 16, 4


class TinyNet(nn.Module):
    """features(x): flatten -> Linear -> ReLU (H dims); fc: the head Linear(H, C)."""

    def __init__(self, in_dim: int = 3 * 4 * 4):
        super().__init__()
        g = torch.Generator().manual_seed(123)
        self.body = nn.Linear(in_dim, H)
        self.fc = nn.Linear(H, C)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1)).relu()


@pytest.fixture(scope="module")
def model() -> Classifier:
    return Classifier(TinyNet(), mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25],
                      num_classes=C).eval()


def make_views(model: Classifier, name: str, n: int, seed: int, offset: int = 0,
               shift: float = 0.0, centres_seed: int = 7) -> Views:
    """Class-conditional random features (H=16), labels, the head's logits, an index range.
    Another ``centres_seed`` gives features of other "classes" (OOD)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(C, H, generator=torch.Generator().manual_seed(centres_seed)) * 2 + 1
    y = torch.randint(0, C, (n,), generator=g)
    f = (centres[y] + torch.randn(n, H, generator=g) + shift).relu().double()
    with torch.no_grad():
        z = model.net.fc(f.float()).double()
    return Views(name=name, logits=z, features=f, labels=y, model=model,
                 index=torch.arange(offset, offset + n))


@pytest.fixture(scope="module")
def data(model):
    return {"fit": make_views(model, "fit", 400, seed=1, offset=0),
            "val": make_views(model, "val", 150, seed=2, offset=400),
            "test": make_views(model, "test", 200, seed=3, offset=550),
            "ood": make_views(model, "ood", 100, seed=4, offset=0, centres_seed=8)}


def fitted(cls, data, **params):
    det = cls(**{"epochs": 3, "batch_size": 64, "lr": 1e-3, **params})
    return det.fit(data["fit"], data["val"])


@pytest.fixture(scope="module")
def zhou(data) -> Zhou:
    return fitted(Zhou, data, epochs=20, lr=1e-2)


# --- numpy re-implementation of Zhou's statistics -----------------------------------------------
def np_linear(sd: dict, prefix: str, x: np.ndarray) -> np.ndarray:
    return x @ sd[f"{prefix}weight"].double().numpy().T + sd[f"{prefix}bias"].double().numpy()


def np_mlp(sd: dict, x: np.ndarray) -> np.ndarray:
    silu = lambda a: a * scipy.special.expit(a)  # noqa: E731
    return np_linear(sd, "4.", silu(np_linear(sd, "2.", silu(np_linear(sd, "0.", x)))))


def np_stats(state: dict, v: np.ndarray, T: float) -> tuple[np.ndarray, ...]:
    z = np_linear(state["W"], "", v)
    a0 = scipy.special.softmax(z / 1000.0, axis=1).max(1)
    nv = np.linalg.norm(v, axis=1, keepdims=True)
    a1 = ((v / nv - np_mlp(state["D1"], z) / nv) ** 2).sum(1)
    u = z / T
    nu = np.linalg.norm(u, axis=1, keepdims=True)
    a2 = ((u / nu - np_mlp(state["D2"], scipy.special.softmax(u, axis=1)) / nu) ** 2).sum(1)
    return a0, a1, a2


# --- log_score ----------------------------------------------------------------------------------
def test_log_score_matches_scipy():
    rng = np.random.default_rng(0)
    a = [rng.normal(size=50) for _ in range(3)]
    mu, sd, eps = (0.3, -0.2, 1.5), (0.7, 1.3, 0.4), 10.0
    want = (scipy.special.log_ndtr((a[0] - mu[0]) / (eps * sd[0]))
            + scipy.special.log_ndtr(-(a[1] - mu[1]) / (eps * sd[1]))
            + scipy.special.log_ndtr(-(a[2] - mu[2]) / (eps * sd[2])))
    got = log_score(*(torch.from_numpy(x) for x in a), mu, sd, eps)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_log_score_tail_does_not_underflow():
    # a1 far above its val mean: the reference's product of CDFs is exactly 0 for all three
    mu, sd, eps = (0.25, 0.1, 0.1), (0.01, 0.01, 0.01), 10.0
    a1 = torch.tensor([30.0, 60.0, 120.0], dtype=torch.float64)
    a0 = torch.full((3,), 0.25, dtype=torch.float64)
    a2 = torch.full((3,), 0.1, dtype=torch.float64)
    product = (scipy.stats.norm.cdf(a0.numpy(), 0.25, 0.1)
               * scipy.stats.norm.sf(a1.numpy(), 0.1, 0.1)
               * scipy.stats.norm.sf(a2.numpy(), 0.1, 0.1))
    assert (product == 0).all()
    got = log_score(a0, a1, a2, mu, sd, eps)
    assert torch.isfinite(got).all()
    assert got[0] > got[1] > got[2]  # further out = less in-distribution, no ties
    want = np.log(0.5) + scipy.special.log_ndtr(-(a1.numpy() - 0.1) / 0.1) + np.log(0.5)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


# --- zhou ---------------------------------------------------------------------------------------
def test_zhou_registered():
    assert DETECTORS.get("zhou") is Zhou
    assert DETECTORS.get("combined") is Combined
    assert DETECTORS.get("ae") is AE
    assert Zhou.needs == {"features", "labels", "model"}
    assert Combined.needs == {"features", "labels", "logits", "model"}
    assert AE.needs == {"images"}
    assert Zhou.cacheable and Combined.cacheable and AE.cacheable


def test_zhou_score_matches_numpy_and_scipy(zhou, data):
    state = zhou.state()
    # statistics recomputed in numpy from the trained W, D1, D2 weights
    for name in ("val", "test", "ood"):
        want = np_stats(state, data[name].features.numpy(), zhou.T)
        got = zhou.stats(data[name])
        for g, w in zip(got, want):
            assert g.dtype == torch.float64
            np.testing.assert_allclose(g.numpy(), w, rtol=1e-10, atol=1e-12)
    # Gaussians from scipy.stats.norm.fit on the val statistics only
    val_stats = np_stats(state, data["val"].features.numpy(), zhou.T)
    fits = [scipy.stats.norm.fit(a) for a in val_stats]
    np.testing.assert_allclose(zhou.mu_, [m for m, _ in fits], rtol=1e-10)
    np.testing.assert_allclose(zhou.sigma_, [s for _, s in fits], rtol=1e-10)
    # the fused score with scipy's log_ndtr
    a0, a1, a2 = np_stats(state, data["test"].features.numpy(), zhou.T)
    (m0, s0), (m1, s1), (m2, s2) = fits
    want = (scipy.special.log_ndtr((a0 - m0) / (10.0 * s0))
            + scipy.special.log_ndtr(-(a1 - m1) / (10.0 * s1))
            + scipy.special.log_ndtr(-(a2 - m2) / (10.0 * s2)))
    got = zhou.score(data["test"])
    assert got.shape == (200,) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-9)


def test_zhou_separates_shifted_features(zhou, data):
    from sklearn.metrics import roc_auc_score
    s_in, s_out = zhou.score(data["test"]).numpy(), zhou.score(data["ood"]).numpy()
    y = np.r_[np.ones_like(s_in), np.zeros_like(s_out)]
    assert roc_auc_score(y, np.r_[s_in, s_out]) > 0.9


class UntrainedZhou(Zhou):
    """Zhou with its training loop skipped, to check the initial weights (epochs=0 is rejected:
    a user would get a detector scoring with random D1, D2)."""

    def _train(self, v, y, g):
        for net in (self.W_, self.D1_, self.D2_):
            net.eval()
        return []


def test_zhou_w_initialised_from_head(model, data):
    head = model.head
    det = fitted(UntrainedZhou, data)
    assert det.history_ == []
    torch.testing.assert_close(det.W_.weight, head.weight, rtol=0, atol=0)
    torch.testing.assert_close(det.W_.bias, head.bias, rtol=0, atol=0)
    trained = fitted(Zhou, data, epochs=1)
    assert not torch.equal(trained.W_.weight, head.weight)  # training moves W ...
    assert not any(p.grad is not None for p in model.parameters())  # ... never the model
    assert not model.training


def test_zhou_decoder_shapes_and_loss_falls(zhou):
    assert zhou.history_[-1] < zhou.history_[0]
    assert len(zhou.history_) == 20
    d1 = zhou.D1_
    assert [m.weight.shape for m in d1 if isinstance(m, nn.Linear)] == [(H, C), (H, H), (H, H)]
    d2 = zhou.D2_
    assert [m.weight.shape for m in d2 if isinstance(m, nn.Linear)] == [(H, C), (256, H), (C, 256)]
    assert all(isinstance(m, nn.SiLU) for m in (d1[1], d1[3], d2[1], d2[3]))


def test_zhou_xavier_init_bounds(data):
    det = fitted(UntrainedZhou, data)
    for lin in [m for m in (*det.D1_, *det.D2_) if isinstance(m, nn.Linear)]:
        fan_out, fan_in = lin.weight.shape
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        assert lin.weight.abs().max() <= bound
        assert lin.weight.abs().max() > 0.8 * bound  # uniform on the full range, not tiny


def test_zhou_loss_matches_formula(zhou, data):
    v = data["fit"].features[:32].float()
    y = data["fit"].labels[:32]
    with torch.no_grad():
        got = float(zhou.loss(v, y))
    st = zhou.state()
    vn = v.double().numpy()
    z = np_linear(st["W"], "", vn)
    u = z / zhou.T
    ce = -scipy.special.log_softmax(z, axis=1)[np.arange(32), y.numpy()].mean()
    r1 = ((vn - np_mlp(st["D1"], z)) ** 2).sum(1).mean()
    r2 = ((u - np_mlp(st["D2"], scipy.special.softmax(u, axis=1))) ** 2).sum(1).mean()
    np.testing.assert_allclose(got, ce + r1 + r2, rtol=1e-5)


def test_zhou_fit_uses_fit_for_weights_and_val_for_gaussians(model, data):
    # training reads only the fit views, the Gaussians only the val views: swapping the val set
    # changes (mu, sigma) and nothing else; a different fit set changes the weights
    other_val = make_views(model, "val2", 150, seed=22, offset=400, shift=0.5)
    a = fitted(Zhou, data, epochs=1)
    b = Zhou(epochs=1, batch_size=64, lr=1e-3).fit(data["fit"], other_val)
    for key in ("W", "D1", "D2"):
        for k, t in a.state()[key].items():
            assert torch.equal(t, b.state()[key][k]), (key, k)
    assert a.mu_ != b.mu_
    fits_b = [scipy.stats.norm.fit(x.numpy()) for x in b.stats(other_val)]
    np.testing.assert_allclose(b.mu_, [m for m, _ in fits_b], rtol=1e-12)
    fits_fit = [scipy.stats.norm.fit(x.numpy()) for x in a.stats(data["fit"])]
    assert not np.allclose(a.mu_, [m for m, _ in fits_fit], rtol=1e-6)
    c = Zhou(epochs=1, batch_size=64, lr=1e-3).fit(make_views(model, "fit2", 400, seed=9),
                                                   data["val"])
    assert not torch.equal(a.W_.weight, c.W_.weight)
    # the index ranges of fit / val / test are disjoint (what the runner's leak test checks)
    idx = [set(data[k].index.tolist()) for k in ("fit", "val", "test")]
    assert not (idx[0] & idx[1]) and not (idx[1] & idx[2]) and not (idx[0] & idx[2])


def test_zhou_seed_is_local(data):
    before = torch.random.get_rng_state()
    a = fitted(Zhou, data, epochs=1)
    assert torch.equal(torch.random.get_rng_state(), before)  # global RNG untouched
    b = fitted(Zhou, data, epochs=1)
    assert torch.equal(a.score(data["test"]), b.score(data["test"]))
    c = Zhou(epochs=1, batch_size=64, lr=1e-3, seed=1)
    assert c.get_params()["seed"] == 1 and c.spec() == "zhou(epochs=1, batch_size=64)"
    c.fit(data["fit"], data["val"])
    assert not torch.equal(a.score(data["test"]), c.score(data["test"]))


def test_zhou_without_head_uses_xavier_w(data):
    fit = Views("fit", features=data["fit"].features, labels=data["fit"].labels)
    det = UntrainedZhou().fit(fit, data["val"])
    assert det.W_.weight.shape == (C, H)
    bound = np.sqrt(6.0 / (H + C))
    assert det.W_.weight.abs().max() <= bound


# --- combined -----------------------------------------------------------------------------------
def test_log_msp_matches_scipy_and_orders_saturated():
    rng = np.random.default_rng(1)
    z = rng.normal(scale=3.0, size=(40, 5))
    z[3, 1] = z[3, 2] = z[3].max() + 1.0  # a tie at the maximum
    want = scipy.special.log_softmax(z, axis=1).max(1)
    np.testing.assert_allclose(log_msp(torch.from_numpy(z)).numpy(), want, rtol=1e-12,
                               atol=1e-15)
    # float64 softmax gives MSP exactly 1.0 for both rows; the log form still orders them
    sat = torch.tensor([[0.0, -40.0, -40.0], [0.0, -45.0, -50.0]], dtype=torch.float64)
    assert (sat.softmax(1).amax(1) == 1.0).all()
    got = log_msp(sat)
    np.testing.assert_allclose(got.numpy(), [-2 * np.exp(-40.0), -np.exp(-45) - np.exp(-50)],
                               rtol=1e-12)
    assert got[0] < got[1] < 0


def test_combined_without_terms_is_zhou_plus_log_msp(data):
    zhou = fitted(Zhou, data, epochs=2)
    comb = fitted(Combined, data, epochs=2, ent=0.0, beta=0.0)
    for name in ("test", "ood"):
        want = zhou.score(data[name]).numpy() + scipy.special.log_softmax(
            data[name].logits.numpy(), axis=1).max(1)
        np.testing.assert_allclose(comb.score(data[name]).numpy(), want, rtol=1e-10,
                                   atol=1e-10)


def test_combined_terms_change_training_and_loss(data):
    plain = fitted(Combined, data, epochs=2, ent=0.0, beta=0.0)
    comb = fitted(Combined, data, epochs=2)
    assert (comb.ent, comb.beta) == (0.01, 0.1)
    assert not torch.equal(plain.W_.weight, comb.W_.weight)
    # the extra terms and the whole loss, against numpy on the same batch
    v, y = data["fit"].features[:32].float(), data["fit"].labels[:32]
    with torch.no_grad():
        reg = float(comb.regularizer(comb.W_(v)))
        total = float(comb.loss(v, y))
    st = comb.state()
    vn = v.double().numpy()
    z = np_linear(st["W"], "", vn)
    p = scipy.special.softmax(z, axis=1)
    want_reg = 0.01 * -(p * np.log(p)).sum(1).mean() + 0.1 * (1 - p.max(1)).mean()
    np.testing.assert_allclose(reg, want_reg, rtol=1e-5)
    u = z / comb.T
    ce = -scipy.special.log_softmax(z, axis=1)[np.arange(32), y.numpy()].mean()
    r1 = ((vn - np_mlp(st["D1"], z)) ** 2).sum(1).mean()
    r2 = ((u - np_mlp(st["D2"], scipy.special.softmax(u, axis=1))) ** 2).sum(1).mean()
    np.testing.assert_allclose(total, ce + r1 + r2 + want_reg, rtol=1e-5)
    assert Combined(ent=0.0, beta=0.0).regularizer(comb.W_(v)) is None


# --- ae -----------------------------------------------------------------------------------------
def image_views(n: int, c: int, size: int, seed: int, name: str = "img") -> Views:
    """Smooth random blobs as uint8 images: easy to learn, so the loss must fall."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size),
                            indexing="ij")
    cx, cy = torch.rand(n, 1, 1, 1, generator=g), torch.rand(n, 1, 1, 1, generator=g)
    col = torch.rand(n, c, 1, 1, generator=g)
    img = col * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.1)
    return Views(name=name, images=(img * 255).round().to(torch.uint8),
                 index=torch.arange(n))


def test_ae_loss_falls_and_score_is_minus_mse():
    fit, test = image_views(256, 3, 8, seed=0), image_views(64, 3, 8, seed=1)
    det = AE(epochs=6, batch_size=32)
    det.fit(fit, fit)
    assert len(det.history_) == 6 and det.history_[-1] < 0.5 * det.history_[0]
    s = det.score(test)
    assert s.shape == (64,) and s.dtype == torch.float64 and (s < 0).all()
    # score = -MSE in [-1, 1] = -4 * MSE in [0, 1] (the Tanh output needs no clamping)
    x01 = test.images.double() / 255.0
    rec = det.reconstruct(test.images).double()
    assert rec.shape == test.images.shape and rec.min() >= 0 and rec.max() <= 1
    want = -4.0 * ((rec - x01) ** 2).mean(dim=(1, 2, 3))
    np.testing.assert_allclose(s.numpy(), want.numpy(), rtol=1e-5, atol=1e-7)
    # float [0,1] input and uint8 input give the same scores
    s_float = det.score(Views("f", images=test.images.float() / 255.0))
    np.testing.assert_allclose(s_float.numpy(), s.numpy(), rtol=1e-6)


def test_ae_code_sizes():
    views = image_views(4, 3, 32, seed=2)
    plain = AE(epochs=1).fit(views, views)
    assert plain.encode(views.images).shape == (4, 128, 8, 8)  # 8192 > 3072 input values
    small = AE(epochs=1, bottleneck=8).fit(views, views)
    code = small.encode(views.images)
    assert code.shape == (4, 8, 8, 8) and code[0].numel() == 512
    assert small.reconstruct(views.images).shape == (4, 3, 32, 32)


def test_ae_grey_digits_size():
    views = image_views(16, 1, 8, seed=3)
    det = AE(epochs=1, batch_size=8, bottleneck=4).fit(views, views)
    assert det.encode(views.images).shape == (16, 4, 2, 2)
    assert det.score(views).shape == (16,)


def test_ae_rejects_bad_sizes_and_params():
    with pytest.raises(BenchError, match="divisible by 4"):
        AE(epochs=1).fit(image_views(4, 3, 30, seed=0), image_views(4, 3, 30, seed=0))
    det = AE(epochs=1).fit(image_views(4, 3, 8, seed=0), image_views(4, 3, 8, seed=0))
    with pytest.raises(BenchError, match="fitted on 3x8x8"):
        det.score(image_views(4, 3, 12, seed=0))
    with pytest.raises(BenchError, match="bottleneck"):
        AE(bottleneck=0)                                  # rejected by the constructor
    with pytest.raises(BenchError, match="T must be a number > 0"):
        Zhou(T=0.0)
    # parameters changed after construction are checked again by fit
    det = Zhou()
    det.T = 0.0
    with pytest.raises(BenchError, match="T must be a number > 0"):
        det.fit(Views("f", features=torch.ones(4, H, dtype=torch.float64),
                      labels=torch.zeros(4, dtype=torch.int64)), Views("v"))


def test_ae_seed_is_local():
    views = image_views(64, 3, 8, seed=4)
    before = torch.random.get_rng_state()
    a = AE(epochs=1, batch_size=16).fit(views, views)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = AE(epochs=1, batch_size=16).fit(views, views)
    assert torch.equal(a.score(views), b.score(views))


# --- all three ----------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["ae", "zhou", "combined"])
def test_score_before_fit_raises(which, data):
    det = DETECTORS.create(which)
    views = image_views(4, 3, 8, seed=0) if which == "ae" else data["test"]
    with pytest.raises(RuntimeError, match="before fit"):
        det.score(views)


@pytest.mark.parametrize("which", ["ae", "zhou", "combined"])
def test_state_roundtrip_gives_identical_scores(which, data, tmp_path):
    if which == "ae":
        fit = test = image_views(32, 3, 8, seed=5)
        det = DETECTORS.create("ae(epochs=1, batch_size=16, bottleneck=4)").fit(fit, fit)
    else:
        det = fitted(DETECTORS.get(which), data, epochs=1)
        test = data["ood"]
    path = tmp_path / "state.pt"
    cache.store(path, "k", det.state())  # what the runner's cache does: plain data only,
    state = cache.load(path, "k")        # read back with weights_only=True
    assert state is not None
    fresh = DETECTORS.create(str(det.spec())).load_state(state)
    assert torch.equal(fresh.score(test), det.score(test))
    assert fresh.history_ == det.history_


# --- scripts/zhou_schedule.py -------------------------------------------------------------------
def test_zhou_schedule_script(tmp_path, data, capsys):
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "zhou_schedule", Path(__file__).resolve().parents[1] / "scripts" / "zhou_schedule.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name in ("fit", "val", "test", "ood"):
        v = data[name]
        torch.save({"features": v.features, "logits": v.logits,
                    "labels": None if name == "ood" else v.labels}, tmp_path / f"{name}.pt")
    out = mod.main(["--fit", str(tmp_path / "fit.pt"), "--val", str(tmp_path / "val.pt"),
                    "--test", str(tmp_path / "test.pt"), "--ood", str(tmp_path / "ood.pt"),
                    "--epochs", "1", "--ref-epochs", "1", "--batch-size", "64",
                    "--out", str(tmp_path / "r.json")])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line == json.loads((tmp_path / "r.json").read_text())
    assert line["head_residual"] < 1e-5  # the head is recovered from features and logits
    assert set(line["short"]["auroc"]) == {"ood"} and set(line["reference"]["auroc"]) == {"ood"}
    assert line["short"]["epochs"] == 1 and line["reference"]["lr"] == 1e-4
    # the script's AUROC is sklearn's on the detector's own scores
    from sklearn.metrics import roc_auc_score
    det = Zhou(epochs=1, batch_size=64).fit(data["fit"], data["val"])
    s_in, s_out = det.score(data["test"]).numpy(), det.score(data["ood"]).numpy()
    want = roc_auc_score(np.r_[np.ones(len(s_in)), np.zeros(len(s_out))], np.r_[s_in, s_out])
    assert out["short"]["auroc"]["ood"] == pytest.approx(want, abs=1e-6)
