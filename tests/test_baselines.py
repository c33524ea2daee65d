"""msp, energy and mahalanobis against closed forms, numpy/scipy and pytorch-ood 0.4.0."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis
from scipy.special import log_softmax, logsumexp, softmax

from bench import metrics as M
from bench.detectors import mahalanobis as maha_module
from bench.detectors.msp import log_msp
from bench.errors import BenchError
from bench.registry import DETECTORS
from bench.views import Views


def logits_views(z, name="x") -> Views:
    return Views(name=name, logits=torch.as_tensor(z, dtype=torch.float64))


def feature_views(f, y=None, name="x") -> Views:
    return Views(name=name, features=torch.as_tensor(f, dtype=torch.float64),
                 labels=None if y is None else torch.as_tensor(y))


@pytest.fixture(scope="module")
def logits():
    g = torch.Generator().manual_seed(0)
    z_in = torch.randn(300, 10, generator=g, dtype=torch.float64) * 3
    z_in[torch.arange(300), torch.randint(0, 10, (300,), generator=g)] += 4  # confident
    z_out = torch.randn(200, 10, generator=g, dtype=torch.float64) * 2
    return z_in, z_out


# --------------------------------------------------------------------------------------------
# msp
# --------------------------------------------------------------------------------------------
def test_registered_with_params():
    assert {"msp", "energy", "mahalanobis"} <= set(DETECTORS.names())
    d = DETECTORS.create("msp(t=2, log=False)")
    assert d.get_params() == {"t": 2.0, "log": False}
    assert DETECTORS.create("energy(t=0.5)").t == 0.5
    for spec in ("msp(t=0)", "energy(t=-1)", "msp(t=nan_value)"):
        with pytest.raises(BenchError, match="positive number"):
            DETECTORS.create(spec)


def test_msp_equal_logits_is_one_over_k():
    z = torch.zeros(4, 7, dtype=torch.float64) + torch.arange(4.0)[:, None]
    plain = DETECTORS.create("msp(log=False)").score(logits_views(z))
    assert plain.dtype == torch.float64
    assert torch.allclose(plain, torch.full((4,), 1 / 7, dtype=torch.float64), rtol=0, atol=1e-15)
    logged = DETECTORS.create("msp").score(logits_views(z))
    assert torch.allclose(logged, torch.full((4,), -math.log(7), dtype=torch.float64), atol=1e-14)


def test_msp_against_scipy(logits):
    z = logits[0].numpy()
    for t in (1.0, 2.5, 1000.0):
        expected = log_softmax(z / t, axis=1).max(axis=1)
        got = DETECTORS.create(f"msp(t={t})").score(logits_views(z)).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
        plain = DETECTORS.create(f"msp(t={t}, log=False)").score(logits_views(z)).numpy()
        np.testing.assert_allclose(plain, softmax(z / t, axis=1).max(axis=1), rtol=1e-13)


def test_log_msp_tied_top_logits():
    # two equal maxima: MSP = 1 / (2 + e^-3)
    got = log_msp(torch.tensor([[3.0, 3.0, 0.0]]))
    assert float(got[0]) == pytest.approx(-math.log(2 + math.exp(-3)), abs=1e-15)


def test_log_msp_breaks_float64_saturation():
    # margins 40, 50, 60: exp(-margin) < 2^-53, so float64 MSP is exactly 1.0 for all three,
    # while log MSP = -log1p(e^-margin) ~ -e^-margin keeps them apart and in order
    z = torch.tensor([[40.0, 0.0], [50.0, 0.0], [60.0, 0.0]], dtype=torch.float64)
    plain = DETECTORS.create("msp(log=False)").score(logits_views(z))
    assert torch.all(plain == 1.0)
    logged = DETECTORS.create("msp").score(logits_views(z)).numpy()
    np.testing.assert_allclose(logged, -np.exp(-np.array([40.0, 50.0, 60.0])), rtol=1e-15)
    assert logged[0] < logged[1] < logged[2] < 0
    # ID images more confident than the shifted ones: the log score ranks them all correctly,
    # the saturated MSP ties every pair
    assert M.auroc(logged[1:], logged[:1]) == 1.0
    assert M.auroc(plain[1:].numpy(), plain[:1].numpy()) == 0.5


def test_score_works_without_fit_and_state_roundtrip(logits):
    for spec in ("msp", "energy"):
        d = DETECTORS.create(spec)
        s = d.score(logits_views(logits[0]))
        fresh = DETECTORS.create(spec).load_state(d.fit(logits_views(logits[0]), None).state())
        assert torch.equal(fresh.score(logits_views(logits[0])), s)


# --------------------------------------------------------------------------------------------
# energy
# --------------------------------------------------------------------------------------------
def test_energy_zero_logits_is_log_k():
    s = DETECTORS.create("energy").score(logits_views(torch.zeros(3, 10)))
    assert s.dtype == torch.float64
    assert torch.allclose(s, torch.full((3,), math.log(10), dtype=torch.float64), atol=1e-15)
    # t * logsumexp(0 / t) = t log K
    s = DETECTORS.create("energy(t=3)").score(logits_views(torch.zeros(2, 10)))
    assert torch.allclose(s, torch.full((2,), 3 * math.log(10), dtype=torch.float64), atol=1e-14)


def test_energy_against_scipy_and_large_logits(logits):
    z = logits[1].numpy()
    for t in (1.0, 0.5, 7.0):
        got = DETECTORS.create(f"energy(t={t})").score(logits_views(z)).numpy()
        np.testing.assert_allclose(got, t * logsumexp(z / t, axis=1), rtol=1e-13)
    # no overflow: logsumexp(1000, 0) = 1000 + log1p(e^-1000) = 1000
    big = DETECTORS.create("energy").score(logits_views([[1000.0, 0.0]]))
    assert float(big[0]) == 1000.0


# --------------------------------------------------------------------------------------------
# mahalanobis
# --------------------------------------------------------------------------------------------
def _numpy_mahalanobis(f_fit, y_fit, f):
    """Direct recomputation: per-class means, tied 1/N covariance, numpy pinv, class loop."""
    classes = np.unique(y_fit)
    mu = np.stack([f_fit[y_fit == c].mean(0) for c in classes])
    r = f_fit - mu[np.searchsorted(classes, y_fit)]
    p = np.linalg.pinv(r.T @ r / len(f_fit), hermitian=True)
    d = np.stack([np.einsum("nh,hk,nk->n", f - m, p, f - m) for m in mu], axis=1)
    return -d.min(1), mu, p


@pytest.fixture(scope="module")
def clusters():
    """Four Gaussian classes in 16 dims with a random shared covariance; OOD = the same classes
    with 1.3x wider spread (overlapping, so the ranking is not trivial)."""
    rng = np.random.default_rng(0)
    h, k = 16, 4
    a = rng.normal(size=(h, h)) / math.sqrt(h)
    centres = rng.normal(size=(k, h)) * 4
    y_fit = rng.integers(0, k, 600)
    f_fit = centres[y_fit] + rng.normal(size=(600, h)) @ a
    y_in = rng.integers(0, k, 200)
    f_in = centres[y_in] + rng.normal(size=(200, h)) @ a
    f_out = centres[rng.integers(0, k, 150)] + rng.normal(size=(150, h)) @ a * 1.3
    return f_fit, y_fit, f_in, f_out


def test_mahalanobis_identity_precision_is_nearest_squared_distance():
    rng = np.random.default_rng(1)
    means, f = rng.normal(size=(3, 5)), rng.normal(size=(40, 5)) * 2
    d = DETECTORS.create("mahalanobis").load_state(
        {"classes": torch.arange(3), "means": torch.from_numpy(means),
         "precision": torch.eye(5, dtype=torch.float64)})
    sq = ((f[:, None, :] - means[None]) ** 2).sum(-1)
    np.testing.assert_allclose(d.score(feature_views(f)).numpy(), -sq.min(1), rtol=1e-12)


def test_mahalanobis_against_numpy_and_scipy(clusters):
    f_fit, y_fit, f_in, f_out = clusters
    d = DETECTORS.create("mahalanobis").fit(feature_views(f_fit, y_fit, "fit"), None)
    expected, mu, p = _numpy_mahalanobis(f_fit, y_fit, f_in)
    np.testing.assert_allclose(d.means_.numpy(), mu, rtol=1e-12)
    np.testing.assert_allclose(d.precision_.numpy(), p, rtol=1e-8, atol=1e-10)
    got = d.score(feature_views(f_in))
    assert got.dtype == torch.float64 and got.shape == (200,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)
    # scipy's distance is the square root of the quadratic form
    for i in range(3):
        best = min(scipy_mahalanobis(f_in[i], m, p) ** 2 for m in mu)
        assert float(got[i]) == pytest.approx(-best, rel=1e-9)


def test_mahalanobis_chunking_changes_nothing(clusters, monkeypatch):
    f_fit, y_fit, f_in, _ = clusters
    whole = DETECTORS.create("mahalanobis").fit(feature_views(f_fit, y_fit), None)
    monkeypatch.setattr(maha_module, "_CHUNK_ELEMS", 16 * 7)   # 7 rows per chunk
    chunked = DETECTORS.create("mahalanobis").fit(feature_views(f_fit, y_fit), None)
    np.testing.assert_allclose(chunked.precision_.numpy(), whole.precision_.numpy(), rtol=1e-10)
    np.testing.assert_allclose(chunked.score(feature_views(f_in)).numpy(),
                               whole.score(feature_views(f_in)).numpy(), rtol=1e-10)


def test_mahalanobis_missing_class_and_rank_deficient():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(300, 4))
    f_fit = np.c_[base, base[:, 0]]              # 5 dims, rank 4: Sigma is singular
    y_fit = np.where(rng.random(300) < 0.5, 0, 2)  # class 1 has no fit image
    f_fit[y_fit == 2] += 3.0
    d = DETECTORS.create("mahalanobis").fit(feature_views(f_fit, y_fit), None)
    assert d.classes_.tolist() == [0, 2] and d.means_.shape == (2, 5)
    f = np.c_[rng.normal(size=(50, 4)), np.zeros(50)]
    f[:, 4] = f[:, 0]
    expected, _, _ = _numpy_mahalanobis(f_fit, y_fit, f)
    np.testing.assert_allclose(d.score(feature_views(f)).numpy(), expected, rtol=1e-7)


def test_mahalanobis_state_roundtrip_and_errors(clusters):
    f_fit, y_fit, f_in, _ = clusters
    d = DETECTORS.create("mahalanobis").fit(feature_views(f_fit, y_fit), None)
    again = DETECTORS.create("mahalanobis").load_state(d.state())
    assert torch.equal(again.score(feature_views(f_in)), d.score(feature_views(f_in)))
    with pytest.raises(BenchError, match="labels"):
        DETECTORS.create("mahalanobis").fit(feature_views(f_fit), None)
    with pytest.raises(BenchError, match="16-dim"):
        d.score(feature_views(f_in[:, :8]))
    with pytest.raises(RuntimeError, match="before fit"):
        DETECTORS.create("mahalanobis").score(feature_views(f_in))


# --------------------------------------------------------------------------------------------
# pytorch-ood 0.4.0 (higher = more OOD: ours ranks like -theirs)
# --------------------------------------------------------------------------------------------
def _rank_metrics(s_in, s_out):
    s_in, s_out = np.asarray(s_in), np.asarray(s_out)
    return np.array([M.auroc(s_in, s_out), M.fpr95(s_in, s_out), M.fpr95_oodpos(s_in, s_out)])


def _their_metrics(o_in, o_out):
    from pytorch_ood.metrics import OODMetrics
    scores = torch.cat([torch.as_tensor(o_in), torch.as_tensor(o_out)]).double()
    labels = torch.cat([torch.zeros(len(o_in)), -torch.ones(len(o_out))]).long()
    return OODMetrics().update(scores, labels).compute()


def test_msp_and_energy_match_pytorch_ood(logits):
    pytest.importorskip("pytorch_ood")
    from pytorch_ood.detector import EnergyBased, MaxSoftmax

    z_in, z_out = logits
    for ours_spec, theirs in (("msp", MaxSoftmax(None)), ("energy", EnergyBased(None)),
                              ("msp(t=2)", MaxSoftmax(None, t=2.0)),
                              ("energy(t=2)", EnergyBased(None, t=2.0))):
        d = DETECTORS.create(ours_spec)
        s_in, s_out = d.score(logits_views(z_in)), d.score(logits_views(z_out))
        o_in, o_out = theirs.predict_logits(z_in), theirs.predict_logits(z_out)
        assert o_in.dtype == torch.float64
        np.testing.assert_allclose(_rank_metrics(s_in, s_out), _rank_metrics(-o_in, -o_out),
                                   rtol=0, atol=1e-9)
        ref = _their_metrics(o_in, o_out)
        assert M.auroc(s_in, s_out) == pytest.approx(ref["AUROC"], abs=1e-9)
        assert M.fpr95_oodpos(s_in, s_out) == pytest.approx(ref["FPR95TPR"], abs=1e-9)
        if ours_spec.startswith("energy"):     # the same number up to the sign
            np.testing.assert_allclose(s_in.numpy(), -o_in.numpy(), rtol=1e-14)


def test_mahalanobis_matches_pytorch_ood(clusters):
    pytest.importorskip("pytorch_ood")
    from pytorch_ood.detector import Mahalanobis

    f_fit, y_fit, f_in, f_out = clusters
    ours = DETECTORS.create("mahalanobis").fit(feature_views(f_fit, y_fit), None)
    s_in, s_out = ours.score(feature_views(f_in)), ours.score(feature_views(f_out))
    # pytorch-ood fits in float32 on the un-normalised scatter matrix + 1e-6 I and returns
    # +1/2 min_c d_c: about -ours / (2N), the same ranking up to float32 rounding
    theirs = Mahalanobis(None).fit_features(torch.from_numpy(f_fit).float(),
                                            torch.from_numpy(y_fit).long())
    o_in = theirs.predict_features(torch.from_numpy(f_in).float()).double()
    o_out = theirs.predict_features(torch.from_numpy(f_out).float()).double()
    np.testing.assert_allclose(-2 * len(f_fit) * o_in.numpy(), s_in.numpy(), rtol=1e-3)
    ours_m = _rank_metrics(s_in, s_out)
    assert 0.6 < ours_m[0] < 0.999                 # a non-trivial ranking is compared
    np.testing.assert_allclose(ours_m, _rank_metrics(-o_in, -o_out), rtol=0, atol=1e-6)
    ref = _their_metrics(o_in, o_out)
    assert ours_m[0] == pytest.approx(ref["AUROC"], abs=1e-6)
    assert ours_m[2] == pytest.approx(ref["FPR95TPR"], abs=1e-6)
