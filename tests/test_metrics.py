"""bench.metrics against hand cases, scikit-learn, scipy and pytorch-ood (METHODS.md §2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import (auc, average_precision_score, precision_recall_curve,
                             roc_auc_score, roc_curve)

from bench import metrics as M
from bench.errors import BenchError


def _sk(s_in, s_out):
    """Labels (1 = ID) and scores for direct scikit-learn calls in the tests."""
    s_in, s_out = np.asarray(s_in, float), np.asarray(s_out, float)
    return np.r_[np.ones(s_in.size), np.zeros(s_out.size)], np.r_[s_in, s_out]


# --------------------------------------------------------------------------------------------
# hand-computed cases
# --------------------------------------------------------------------------------------------
S_IN, S_OUT = [3.0, 2.0, 1.0], [1.5, 0.5]


def test_auroc_by_hand():
    # ID/shifted pairs (3,1.5) (3,.5) (2,1.5) (2,.5) (1,.5) are ordered correctly, (1,1.5) is not
    assert M.auroc(S_IN, S_OUT) == pytest.approx(5 / 6, abs=1e-15)
    # perfect separation and its mirror
    assert M.auroc([2, 3], [0, 1]) == 1.0
    assert M.auroc([0, 1], [2, 3]) == 0.0


def test_auroc_ties_count_half():
    # pairs: (1,1)=1/2 (1,0)=1 (1,1)=1/2 (1,0)=1 (2,1)=1 (2,0)=1 -> 5/6
    assert M.auroc([1, 1, 2], [1, 0]) == pytest.approx(5 / 6, abs=1e-15)
    # constant scores carry no information
    assert M.auroc([4, 4, 4], [4, 4]) == 0.5


def test_aupr_by_hand():
    # ID positive, descending: 3(in) 2(in) 1.5(out) 1(in) 0.5(out)
    # thresholds 3: P=1 R=1/3;  2: P=1 R=2/3;  1.5: P=2/3 (R unchanged);  1: P=3/4 R=1
    # AP = 1/3*1 + 1/3*1 + 1/3*3/4 = 11/12
    assert M.aupr_in(S_IN, S_OUT) == pytest.approx(11 / 12, abs=1e-15)
    # shifted positive, ascending s: 0.5(out) 1(in) 1.5(out) ...
    # 0.5: P=1 R=1/2;  1: P=1/2 (R unchanged);  1.5: P=2/3 R=1  ->  AP = 1/2 + 1/2*2/3 = 5/6
    assert M.aupr_out(S_IN, S_OUT) == pytest.approx(5 / 6, abs=1e-15)


def test_aupr_trapz_by_hand_differs_from_ap():
    # ID-positive PR points (recall, precision), including threshold 0.5 (all accepted, P=3/5)
    # and sklearn's end point (0, 1): (1,3/5) (1,3/4) (2/3,2/3) (2/3,1) (1/3,1) (0,1).
    # Trapezoids: 0 + 1/3*(3/4+2/3)/2 + 0 + 1/3*1 + 1/3*1 = 17/72 + 48/72 = 65/72 (AP: 66/72)
    assert M.aupr_in_trapz(S_IN, S_OUT) == pytest.approx(65 / 72, abs=1e-15)
    # shifted positive: (1,2/5) (1,1/2) (1,2/3) (1/2,1/2) (1/2,1) (0,1)
    # -> 0 + 0 + 1/2*(2/3+1/2)/2 + 0 + 1/2*1 = 7/24 + 12/24 = 19/24 (AP: 20/24)
    assert M.aupr_out_trapz(S_IN, S_OUT) == pytest.approx(19 / 24, abs=1e-15)


def test_fpr95_and_oodpos_differ_by_hand():
    s_in = np.arange(1.0, 21.0)                    # 1..20
    s_out = np.r_[np.full(18, 0.5), 5.5, 15.5]
    # ID positive: accepting 19 of 20 ID images needs s >= 2; shifted images with s >= 2 are
    # 5.5 and 15.5 -> 2/20
    assert M.fpr95(s_in, s_out) == pytest.approx(0.10, abs=1e-15)
    # shifted positive: catching 19 of 20 shifted images (s <= 5.5) also rejects ID 1..5 -> 5/20
    assert M.fpr95_oodpos(s_in, s_out) == pytest.approx(0.25, abs=1e-15)


def test_fpr95_exact_boundary():
    # 20 ID images: TPR reaches exactly 19/20 = 0.95 at s >= 2, which counts (>=, not >)
    s_in = np.arange(1.0, 21.0)
    s_out = np.array([1.5, 2.5])
    assert M.fpr95(s_in, s_out) == pytest.approx(0.5, abs=1e-15)  # only 2.5 is accepted


def test_fpr95_keeps_every_tied_threshold():
    # each score 0..19 is held by one ID and one shifted image: the ROC points are (k/20, k/20),
    # the first with TPR >= 0.95 is k = 19 -> FPR 0.95. roc_curve's default drop_intermediate
    # keeps only (0,0) and (1,1) of these collinear points and would give 1.0.
    s = np.arange(20.0)
    assert M.fpr95(s, s) == pytest.approx(0.95, abs=1e-15)
    assert M.fpr95_oodpos(s, s) == pytest.approx(0.95, abs=1e-15)


def test_detect95_by_hand():
    s_val = np.arange(11.0)          # 0..10: quantile 0.05 sits at position 10*0.05 = 0.5
    assert M.threshold95(s_val) == pytest.approx(0.5, abs=1e-15)
    s_out = [0.0, 0.4, 0.5, 0.6, 2.0]   # below 0.5: 0 and 0.4 -> 2/5
    s_in = [0.5, 0.49, 3.0, 7.0]        # at or above 0.5: 0.5, 3, 7 -> 3/4
    assert M.detect95(s_out, s_val) == pytest.approx(0.4, abs=1e-15)
    assert M.id_accept95(s_in, s_val) == pytest.approx(0.75, abs=1e-15)
    d = M.detector_metrics(s_in, s_out, s_val)
    assert d["detect95"] == pytest.approx(0.4) and d["id_accept95"] == pytest.approx(0.75)
    none = M.detector_metrics(s_in, s_out, None)
    assert none["detect95"] is None and none["id_accept95"] is None


# --------------------------------------------------------------------------------------------
# against scikit-learn and pytorch-ood on random data with ties
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tied():
    rng = np.random.default_rng(0)
    # rounding creates many ties, within and across the two sets
    return (np.round(rng.normal(1.0, 1.0, 700), 1), np.round(rng.normal(0.0, 1.5, 400), 1),
            np.round(rng.normal(1.0, 1.0, 300), 1))


def _sk_fpr(y, s, tpr=0.95):
    """Independent FPR@TPR: the smallest FPR among roc_curve points with TPR >= tpr.

    Along the ROC curve FPR never decreases, so this is the FPR at the first such point.
    """
    fpr, t, _ = roc_curve(y, s, drop_intermediate=False)
    return fpr[t >= tpr].min()


def test_detector_metrics_match_sklearn(tied):
    s_in, s_out, s_val = tied
    y, s = _sk(s_in, s_out)
    d = M.detector_metrics(s_in, s_out, s_val)
    assert set(d) == {"auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_oodpos", "detect95",
                      "id_accept95", "undetected_success", "aupr_in_trapz", "aupr_out_trapz"}
    assert d["undetected_success"] is None  # no labels given: an OOD set
    assert d["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert d["aupr_in"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert d["aupr_out"] == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
    assert d["fpr95"] == pytest.approx(_sk_fpr(y, s), abs=1e-12)
    assert d["fpr95_oodpos"] == pytest.approx(_sk_fpr(1 - y, -s), abs=1e-12)
    p, r, _ = precision_recall_curve(y, s)
    assert d["aupr_in_trapz"] == pytest.approx(auc(r, p), abs=1e-12)
    tau = np.percentile(s_val, 5)     # numpy's other spelling of the linear quantile
    assert d["detect95"] == pytest.approx(np.count_nonzero(s_out < tau) / s_out.size)
    assert d["id_accept95"] == pytest.approx(np.count_nonzero(s_in >= tau) / s_in.size)
    # Mann-Whitney form of AUROC with ties = 1/2, from all pairs (small enough here)
    diff = s_in[:, None] - s_out[None, :]
    assert d["auroc"] == pytest.approx(((diff > 0) + 0.5 * (diff == 0)).mean(), abs=1e-12)
    for key, f in M.PAIR_METRICS.items():   # each metric alone equals the dict's entry
        assert f(s_in, s_out) == d[key]


def test_matches_pytorch_ood_on_ties(tied):
    pytest.importorskip("pytorch_ood")
    from pytorch_ood.metrics import OODMetrics
    from pytorch_ood.metrics.functional import fpr_at_tpr

    s_in, s_out, _ = tied
    # pytorch-ood: labels < 0 mark OOD (the positive class), higher score = more OOD
    scores = torch.from_numpy(-np.r_[s_in, s_out])
    labels = torch.from_numpy(np.r_[np.zeros(s_in.size), -np.ones(s_out.size)]).long()
    assert M.fpr95_oodpos(s_in, s_out) == pytest.approx(float(fpr_at_tpr(scores, labels)),
                                                        abs=1e-12)
    theirs = OODMetrics().update(scores, labels).compute()
    ours = M.detector_metrics(s_in, s_out, None)
    assert ours["fpr95_oodpos"] == pytest.approx(theirs["FPR95TPR"], abs=1e-12)
    assert ours["auroc"] == pytest.approx(theirs["AUROC"], abs=1e-12)
    assert ours["aupr_in_trapz"] == pytest.approx(theirs["AUPR-IN"], abs=1e-12)
    assert ours["aupr_out_trapz"] == pytest.approx(theirs["AUPR-OUT"], abs=1e-12)
    # the ID-positive variant is a different number on these data
    assert ours["fpr95"] != pytest.approx(ours["fpr95_oodpos"], abs=1e-3)


def test_torch_and_list_inputs():
    s_in = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float32)
    assert M.auroc(s_in, (1.5, 0.5)) == pytest.approx(5 / 6)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------
def test_empty_and_nonfinite_inputs_raise_one_line():
    with pytest.raises(BenchError, match="no shifted images to score"):
        M.detector_metrics([1.0, 2.0], [], [1.0])
    with pytest.raises(BenchError, match="no ID test images to score"):
        M.auroc(np.array([]), [1.0])
    with pytest.raises(BenchError, match="contain NaN") as exc:
        M.detector_metrics([1.0, float("nan")], [0.0], [1.0])
    assert "\n" not in str(exc.value)
    with pytest.raises(BenchError, match="contain inf"):
        M.fpr95([1.0], [float("-inf")])
    with pytest.raises(BenchError, match="ID val images"):
        M.detector_metrics([1.0], [0.0], [float("nan")])
    with pytest.raises(BenchError, match="unknown metric"):
        M.bootstrap_ci([1.0], [0.0], "aucroc")


# --------------------------------------------------------------------------------------------
# ROC points for plots
# --------------------------------------------------------------------------------------------
def test_roc_points_small_is_the_whole_curve():
    fpr, tpr = M.roc_points(S_IN, S_OUT)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    # dropping collinear points keeps the area: trapezoid area = AUROC = 5/6
    assert np.trapezoid(tpr, fpr) == pytest.approx(5 / 6, abs=1e-15)


def test_roc_points_subsampled(tied):
    rng = np.random.default_rng(1)
    s_in, s_out = rng.normal(1, 1, 3000), rng.normal(0, 1, 3000)
    fpr, tpr = M.roc_points(s_in, s_out, max_points=50)
    assert 2 <= fpr.size <= 50
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    full_f, full_t, _ = roc_curve(*_sk(s_in, s_out), drop_intermediate=False)
    full = set(zip(full_f.tolist(), full_t.tolist()))
    assert all(p in full for p in zip(fpr.tolist(), tpr.tolist()))   # points of the real curve
    assert np.trapezoid(tpr, fpr) == pytest.approx(M.auroc(s_in, s_out), abs=0.01)


# --------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", M.VECTORISED)
def test_weighted_counts_equal_sklearn_on_repeated_scores(tied, name):
    # a resample is the original scores repeated by their counts; the vectorised formula on the
    # counts must equal scikit-learn on the repeated arrays
    s_in, s_out, _ = tied
    rng = np.random.default_rng(2)
    u, codes = np.unique(np.r_[s_in, s_out], return_inverse=True)
    c_in, c_out = [], []
    expected = []
    for _ in range(3):
        w_in, w_out = rng.integers(0, 3, s_in.size), rng.integers(0, 3, s_out.size)
        c_in.append(np.bincount(codes[:s_in.size], weights=w_in, minlength=u.size))
        c_out.append(np.bincount(codes[s_in.size:], weights=w_out, minlength=u.size))
        y, s = _sk(np.repeat(s_in, w_in), np.repeat(s_out, w_out))
        expected.append({"auroc": lambda: roc_auc_score(y, s),
                         "aupr_in": lambda: average_precision_score(y, s),
                         "aupr_out": lambda: average_precision_score(1 - y, -s),
                         "fpr95": lambda: _sk_fpr(y, s),
                         "fpr95_oodpos": lambda: _sk_fpr(1 - y, -s)}[name]())
    got = M._weighted_rank_metrics((name,), np.array(c_in).astype(np.int64),
                                   np.array(c_out).astype(np.int64))[name]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_bootstrap_vectorised_equals_sklearn_on_same_resamples(tied):
    s_in, s_out, _ = tied
    for name in ("auroc", "fpr95_oodpos"):
        fast = M.bootstrap_ci(s_in, s_out, name, n_boot=40, seed=3, max_cells=20_000)
        y_f = {"auroc": lambda a, b: roc_auc_score(*_sk(a, b)),
               "fpr95_oodpos": lambda a, b: _sk_fpr(1 - _sk(a, b)[0], -_sk(a, b)[1])}[name]
        slow = M.bootstrap_ci(s_in, s_out, y_f, n_boot=40, seed=3, max_cells=20_000)
        assert fast == pytest.approx(slow, abs=1e-12)
    assert M.bootstrap_ci(s_in, s_out, n_boot=40, seed=3) == \
        M.bootstrap_ci(s_in, s_out, n_boot=40, seed=3)
    assert M.bootstrap_ci(s_in, s_out, n_boot=40, seed=3) != \
        M.bootstrap_ci(s_in, s_out, n_boot=40, seed=4)


def test_bootstrap_width_matches_hanley_mcneil():
    # two unit normals 1 apart: AUROC = Phi(1/sqrt 2); the Hanley & McNeil (1982) standard error
    # gives the expected width of a 95 % interval independently of any resampling
    rng = np.random.default_rng(5)
    n = 2000
    s_in, s_out = rng.normal(1, 1, n), rng.normal(0, 1, n)
    a = norm.cdf(1 / math.sqrt(2))
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se = math.sqrt((a * (1 - a) + (n - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / (n * n))
    lo, hi = M.bootstrap_ci(s_in, s_out, "auroc", n_boot=400, seed=0)
    assert lo < M.auroc(s_in, s_out) < hi
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)


# --------------------------------------------------------------------------------------------
# classifier metrics
# --------------------------------------------------------------------------------------------
def _ece_reference(conf, correct, n_bins=15):
    """Guo et al.'s loop over bins: conf > lower and conf <= upper (torch.linspace edges)."""
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    conf, correct = torch.as_tensor(conf, dtype=torch.float64), torch.as_tensor(correct).double()
    total = torch.zeros((), dtype=torch.float64)
    for lo, hi in zip(edges[:-1], edges[1:]):
        inb = (conf > lo) & (conf <= hi)
        if inb.any():
            total += inb.double().mean() * (correct[inb].mean() - conf[inb].mean()).abs()
    return float(total)


def test_ece_hand_cases():
    assert M.ece(np.ones(5), np.ones(5)) == 0.0
    # bin (14/15, 1]: four at 0.95, three correct -> |0.75 - 0.95| = 0.2, weight 4/6
    # bin (8/15, 9/15]: two at 0.55, one correct -> |0.5 - 0.55| = 0.05, weight 2/6
    # ECE = 4/6*0.2 + 2/6*0.05 = 0.9/6 = 0.15
    conf = [0.95, 0.95, 0.95, 0.95, 0.55, 0.55]
    correct = [1, 1, 1, 0, 1, 0]
    assert M.ece(conf, correct) == pytest.approx(0.15, abs=1e-15)
    # one bin of everything: over-confident by 0.3
    assert M.ece([0.8, 0.8], [1, 0], n_bins=1) == pytest.approx(0.3, abs=1e-15)


def test_ece_bin_edges():
    # 1/15 belongs to the first bin (0, 1/15], 0.1 to the second (1/15, 2/15]:
    # ECE = 1/2*|1 - 1/15| + 1/2*|0 - 0.1|; pooled in one bin it would be |0.5 - 0.0833...|
    assert M.ece([1 / 15, 0.1], [1, 0]) == pytest.approx((14 / 15 + 0.1) / 2, abs=1e-15)
    # every edge k/15 goes to bin k-1, as in the reference loop
    conf = np.r_[np.arange(1, 16) / 15, np.linspace(0.001, 1, 97)]
    correct = (np.arange(conf.size) % 3 == 0).astype(float)
    assert M.ece(conf, correct) == pytest.approx(_ece_reference(conf, correct), abs=1e-14)


def test_classifier_metrics_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    # row 0: conf e^2/(e^2+1), correct; row 1: conf e/(e+1), wrong; row 2: conf 1/2, argmax 0,
    # wrong. The three land in different bins, so ECE = mean |correct - conf|
    c0, c1 = math.exp(2) / (math.exp(2) + 1), math.e / (math.e + 1)
    out = M.classifier_metrics(logits, labels)
    assert out["acc"] == pytest.approx(1 / 3)
    assert out["ece"] == pytest.approx(((1 - c0) + c1 + 0.5) / 3, abs=1e-15)
    assert M.classifier_metrics(logits, None) == {"acc": None, "ece": None}
    with pytest.raises(BenchError, match="labels"):
        M.classifier_metrics(logits, labels[:2])


def test_classifier_metrics_random_against_reference():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(500, 10, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 10, (500,), generator=g)
    p = torch.softmax(z, 1).numpy()
    pred = p.argmax(1)
    out = M.classifier_metrics(z, y)
    assert out["acc"] == pytest.approx(np.mean(pred == y.numpy()))
    assert out["ece"] == pytest.approx(_ece_reference(p.max(1), pred == y.numpy()), abs=1e-14)


# --------------------------------------------------------------------------------------------
# the metric table
# --------------------------------------------------------------------------------------------
def test_metric_table_is_the_single_source():
    keys = [m.key for m in M.METRIC_TABLE]
    assert len(keys) == len(set(keys))
    # every key a record's metrics dict holds (detector_metrics) has a row, and nothing else
    rec = M.detector_metrics([1.0, 2.0, 3.0], [0.0, 1.5], [1.0, 2.0, 3.0])
    assert set(rec) == {m.key for m in M.METRIC_TABLE if m.kind == "detector"}
    assert M.DETECTOR_METRICS == ("auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_oodpos",
                                  "detect95", "id_accept95", "undetected_success")
    assert M.CLASSIFIER_METRICS == ("acc", "ece", "attack_success")
    assert M.LOWER_IS_BETTER == {"fpr95", "fpr95_oodpos", "ece", "aurc", "e_aurc", "risk80",
                                 "risk90", "risk95", "undetected_success"}
    assert M.FAILURE_METRICS == ("fd_auroc", "aurc", "e_aurc", "risk80", "risk90", "risk95")
    assert M.BOOTSTRAPPED == ("auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_oodpos")
    # bootstrapping every record stays cheap only while each interval is vectorised
    assert set(M.BOOTSTRAPPED) <= set(M.VECTORISED)
    assert all(k in M.PAIR_METRICS for k in M.BOOTSTRAPPED)


def test_undetected_success_on_a_hand_built_case():
    # val scores 0..99: tau = numpy.quantile(.., 0.05) = 4.95
    s_val = np.arange(100.0)
    s_out = np.array([10.0, 4.0, 5.0, 50.0, 1.0, 4.95])
    wrong = np.array([True, True, True, False, False, True])
    # wrong and accepted (s >= 4.95): 10.0, 5.0 and 4.95 -> 3 of 6
    d = M.detector_metrics(np.arange(10.0), s_out, s_val, wrong)
    assert d["undetected_success"] == pytest.approx(3 / 6, abs=1e-15)
    assert M.undetected_success(s_out, wrong, 4.95) == pytest.approx(0.5, abs=1e-15)
    with pytest.raises(ValueError):
        M.undetected_success(s_out, wrong[:3], 4.95)


def test_metric_directions():
    assert M.higher_is_better("auroc") and M.higher_is_better("detect95")
    assert not M.higher_is_better("fpr95") and not M.higher_is_better("ece")
    assert M.METRIC_SPECS["id_accept95"].direction == "neither"
    with pytest.raises(Exception):  # frozen
        M.METRIC_SPECS["auroc"].direction = "lower"


def test_derived_lists_stay_importable_where_they_were():
    from bench import cli, results
    from bench.leaderboard import core

    assert results.DETECTOR_METRICS is M.DETECTOR_METRICS
    assert results.CLASSIFIER_METRICS is M.CLASSIFIER_METRICS
    assert results.LOWER_IS_BETTER is M.LOWER_IS_BETTER
    assert cli.PCT_METRICS == ("auroc", "aupr_in", "aupr_out", "fpr95", "detect95")
    assert [cli.HEADERS[k] for k in cli.PCT_METRICS + cli.CLASSIFIER_COLUMNS] == [
        "AUROC", "AUPRin", "AUPRout", "FPR95", "Det95", "acc", "ECE"]
    assert core.METRICS == ("auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_oodpos", "detect95")
    assert core.METRIC_LABELS["fpr95"] == "FPR@95TPR (ID+)"
    assert core.METRIC_LABELS["detect95"] == "Detected @95% val accept"


# --------------------------------------------------------------------------------------------
# paired bootstrap and small sets
# --------------------------------------------------------------------------------------------
def _paired_case():
    """40 images, clean and shifted scores of each: shifting lowers most scores by about 1."""
    rng = np.random.default_rng(11)
    clean = np.round(rng.normal(2.0, 1.0, 40), 1)
    shifted = np.round(clean - rng.normal(1.0, 0.5, 40), 1)
    return clean, shifted


def _percentile(values, level=0.95):
    return tuple(np.quantile(np.asarray(values), [(1 - level) / 2, (1 + level) / 2]))


@pytest.mark.parametrize("name", ["auroc", "fpr95", "aupr_out"])
def test_paired_bootstrap_equals_numpy_recomputation(name):
    # the same generator, drawn as documented: one (n_boot, n) block of image indices shared by
    # both sides (n_boot * n counts fit in one chunk), each resample scored with scikit-learn
    clean, shifted = _paired_case()
    n, n_boot, seed = clean.size, 60, 7
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    ref = {"auroc": lambda a, b: roc_auc_score(*_sk(a, b)),
           "fpr95": lambda a, b: _sk_fpr(*_sk(a, b)),
           "aupr_out": lambda a, b: average_precision_score(1 - _sk(a, b)[0], -_sk(a, b)[1])}[name]
    want = _percentile([ref(clean[i], shifted[i]) for i in idx])
    got = M.bootstrap_ci(clean, shifted, name, n_boot=n_boot, seed=seed, paired=True)
    assert got == pytest.approx(want, abs=1e-12)
    # a callable metric sees the same resamples
    got_f = M.bootstrap_ci(clean, shifted, ref, n_boot=n_boot, seed=seed, paired=True)
    assert got_f == pytest.approx(want, abs=1e-12)


def test_unpaired_bootstrap_draws_each_side_independently():
    # unpaired stays as before: ID indices first, then shifted indices, from the same generator
    clean, shifted = _paired_case()
    s_out = np.r_[shifted, shifted[:9] - 0.3]   # unequal sizes are fine unpaired
    n_boot, seed = 50, 3
    rng = np.random.default_rng(seed)
    idx_in = rng.integers(0, clean.size, (n_boot, clean.size))
    idx_out = rng.integers(0, s_out.size, (n_boot, s_out.size))
    want = _percentile([roc_auc_score(*_sk(clean[i], s_out[j])) for i, j in zip(idx_in, idx_out)])
    assert M.bootstrap_ci(clean, s_out, "auroc", n_boot=n_boot, seed=seed) == \
        pytest.approx(want, abs=1e-12)


def test_paired_interval_is_narrower_when_the_pairs_are_correlated():
    # shifted = clean - 1 + small noise: the paired resamples keep each image's two scores
    # together, so the AUROC varies less than when the sides are resampled independently
    rng = np.random.default_rng(4)
    clean = rng.normal(0.0, 1.0, 300)
    shifted = clean - 1.0 + rng.normal(0.0, 0.3, 300)
    lo_p, hi_p = M.bootstrap_ci(clean, shifted, "auroc", n_boot=300, seed=0, paired=True)
    lo_u, hi_u = M.bootstrap_ci(clean, shifted, "auroc", n_boot=300, seed=0)
    assert hi_p - lo_p < hi_u - lo_u
    assert lo_p < M.auroc(clean, shifted) < hi_p


def test_paired_bootstrap_needs_equal_sizes():
    with pytest.raises(BenchError, match="one shifted score per ID image") as exc:
        M.bootstrap_ci(np.arange(40.0), np.arange(41.0), paired=True)
    assert "\n" not in str(exc.value)


def test_small_set_threshold():
    k = M.MIN_SET_SIZE
    assert k == 30
    assert not M.small_set(k, k)
    assert M.small_set(k - 1, 1000) and M.small_set(1000, k - 1)
    assert not M.small_set(9000, 9000)


@pytest.mark.parametrize("n_in, n_out", [(29, 500), (500, 29), (5, 5)])
def test_bootstrap_gives_no_interval_for_small_sets(n_in, n_out):
    rng = np.random.default_rng(0)
    s_in, s_out = rng.normal(1, 1, n_in), rng.normal(0, 1, n_out)
    for paired in ([False, True] if n_in == n_out else [False]):
        lo, hi = M.bootstrap_ci(s_in, s_out, "auroc", n_boot=20, paired=paired)
        assert math.isnan(lo) and math.isnan(hi)
    # the metric itself is still computed; only the interval is withheld
    assert 0.0 <= M.auroc(s_in, s_out) <= 1.0
    # exactly MIN_SET_SIZE per side gets an interval
    lo, hi = M.bootstrap_ci(rng.normal(1, 1, 30), rng.normal(0, 1, 30), "auroc", n_boot=20)
    assert 0.0 <= lo <= hi <= 1.0


@pytest.mark.parametrize("paired", [False, True])
def test_bootstrap_cis_equal_one_bootstrap_ci_per_metric(paired):
    """Several metrics from one set of draws: each interval is what bootstrap_ci gives alone."""
    rng = np.random.default_rng(5)
    s_in = np.round(rng.normal(1.0, 1.0, 300), 1)          # ties across and within sides
    s_out = np.round(rng.normal(0.0, 1.0, 300), 1)
    names = ("auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_oodpos", "aupr_in_trapz")
    together = M.bootstrap_cis(s_in, s_out, names, n_boot=60, seed=7, max_cells=9_000,
                               paired=paired)
    for name in names:
        alone = M.bootstrap_ci(s_in, s_out, name, n_boot=60, seed=7, max_cells=9_000,
                               paired=paired)
        assert together[name] == alone, name
    # and the vectorised values are the scikit-learn-based functions' on those resamples
    label = {"sk_auroc": lambda a, b: M.auroc(a, b)}
    assert M.bootstrap_cis(s_in, s_out, label, n_boot=60, seed=7, max_cells=9_000,
                           paired=paired)["sk_auroc"] == pytest.approx(together["auroc"],
                                                                        abs=1e-12)
