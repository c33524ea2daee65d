"""Failure detection (selective classification) metrics against hand-computed cases and an
independent numpy implementation (explicit sort, cumulative risk, averaging over tie orders)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bench.metrics import (aurc, aurc_optimal, e_aurc, failure_metrics, fd_auroc, rc_points,
                           risk_coverage, selective_risk)


def reference_rc(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Risk at each coverage k/n, averaged over every order of tied scores (brute force)."""
    n = len(scores)
    groups = [np.flatnonzero(scores == v) for v in sorted(set(scores.tolist()), reverse=True)]
    risks = []
    for orders in itertools.product(*[list(itertools.permutations(g)) for g in groups]):
        ranking = np.concatenate([np.array(o) for o in orders])
        wrong = ~correct[ranking]
        risks.append(np.cumsum(wrong) / np.arange(1, n + 1))
    return np.mean(risks, axis=0)


def test_hand_computed_case():
    # scores 3 > 2 = 2 > 1; correct: yes, no, yes, no
    s, c = np.array([3.0, 2.0, 2.0, 1.0]), np.array([True, False, True, False])
    cov, risk = risk_coverage(s, c)
    # k=1: {3} right -> 0; k=2: half of the tie's one error -> 0.5/2; k=3: 1/3; k=4: 2/4
    np.testing.assert_allclose(cov, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 0.25, 1 / 3, 0.5])
    assert aurc(s, c) == pytest.approx((0 + 0.25 + 1 / 3 + 0.5) / 4)
    # best ranking: both right first -> risks 0, 0, 1/3, 1/2
    assert aurc_optimal(c) == pytest.approx((1 / 3 + 0.5) / 4)
    assert e_aurc(s, c) == pytest.approx(0.25 / 4)
    # AUROC correct-vs-wrong: pairs (3,2)+, (3,1)+, (2,2) tie 1/2, (2,1)+ -> 3.5/4
    assert fd_auroc(s, c) == pytest.approx(3.5 / 4)
    assert selective_risk(s, c, 0.5) == pytest.approx(0.25)


def test_perfect_ranking_has_zero_excess():
    rng = np.random.default_rng(0)
    c = rng.random(300) < 0.8
    s = np.where(c, 1.0 + rng.random(300), rng.random(300))  # every right image scores higher
    assert e_aurc(s, c) == 0.0
    assert fd_auroc(s, c) == 1.0
    # the worst ranking: every error first
    assert e_aurc(-s, c) > 0.5 * (1 - c.mean())


@pytest.mark.parametrize("seed", range(5))
def test_against_numpy_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 9
    s = rng.integers(0, 4, n).astype(float)  # heavy ties
    c = rng.random(n) < 0.6
    _, risk = risk_coverage(s, c)
    ref = reference_rc(s, c)
    np.testing.assert_allclose(risk, ref, atol=1e-12)
    assert aurc(s, c) == pytest.approx(ref.mean(), abs=1e-12)
    m = failure_metrics(s, c)
    for q, key in ((0.8, "risk80"), (0.9, "risk90"), (0.95, "risk95")):
        assert m[key] == pytest.approx(ref[int(np.ceil(q * n)) - 1], abs=1e-12)
    if c.all() or not c.any():
        assert m["fd_auroc"] is None
    else:
        assert m["fd_auroc"] == pytest.approx(roc_auc_score(c, s))
    assert (m["n"], m["n_errors"]) == (n, int((~c).sum()))


def test_large_set_matches_explicit_cumulative_risk_without_ties():
    rng = np.random.default_rng(1)
    s = rng.normal(size=5000)
    c = rng.random(5000) < 1 / (1 + np.exp(-2 * s))  # the score is informative
    order = np.argsort(-s)
    risk = np.cumsum(~c[order]) / np.arange(1, 5001)
    assert aurc(s, c) == pytest.approx(risk.mean(), rel=1e-12)
    k = np.arange(1, 5001)
    opt = np.maximum(0, k - c.sum()) / k
    assert e_aurc(s, c) == pytest.approx(risk.mean() - opt.mean(), rel=1e-10)
    cov, r = rc_points(s, c)
    assert len(cov) == 200 and cov[0] == pytest.approx(1 / 5000) and cov[-1] == 1.0
    np.testing.assert_allclose(r, risk[(np.array(cov) * 5000).round().astype(int) - 1])


def test_records_carry_failure_detection_that_recomputes(tmp_path):
    """The clean cell and a corruption cell: the record's numbers equal a numpy recomputation
    from the scores and correctness flags the record keeps (all of them: n <= 1000)."""
    from bench.runner import RunConfig, run

    s = run(RunConfig(detectors=["msp"], shifts=["gaussian_noise(severity=5)"], device="cpu",
                      out=tmp_path / "r"))
    recs = {r["shift"]["group"]: r for r in s.records}
    clean, shifted = recs["clean"], recs["corruption"]
    assert clean["shift"]["spec"] == "clean" and clean["metrics"] == {}
    for rec, side in ((clean, "in"), (shifted, "out")):
        scores = np.array(rec["plots"][f"scores_{side}"])
        correct = np.array(rec["plots"][f"correct_{side}"])
        assert len(scores) == rec["failure"]["n"]  # 809 digits: nothing subsampled
        order = np.argsort(-scores, kind="stable")
        assert len(set(scores.tolist())) == len(scores)  # no ties: a plain cumulative sum
        risk = np.cumsum(~correct[order]) / np.arange(1, len(scores) + 1)
        assert rec["failure"]["aurc"] == pytest.approx(risk.mean(), rel=1e-9)
        assert rec["failure"]["fd_auroc"] == pytest.approx(roc_auc_score(correct, scores))
        assert rec["failure"]["n_errors"] == int((~correct).sum())
    # clean accuracy is the clean cell's share of correct predictions
    assert 1 - clean["failure"]["n_errors"] / clean["failure"]["n"] == pytest.approx(
        clean["model"]["clean_acc"])
    # deployment pool: clean and shifted together
    pool_s = np.r_[shifted["plots"]["scores_in"], shifted["plots"]["scores_out"]]
    pool_c = np.r_[shifted["plots"]["correct_in"], shifted["plots"]["correct_out"]]
    assert shifted["deployment"]["fd_auroc"] == pytest.approx(roc_auc_score(pool_c, pool_s))
    assert shifted["deployment"]["auroc_shifted"] == shifted["metrics"]["auroc"]
    assert json.loads(json.dumps(shifted))["schema_version"] == 2
