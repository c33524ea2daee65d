"""Runner behaviour: splits and leak checks, shared views, the fitted-detector cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.datasets.base import LoadContext, load_set, split_val_test
from bench.registry import DETECTORS
from bench.runner import RunConfig, run


def cfg(tmp_path, **kw) -> RunConfig:
    base = dict(detectors=["msp"], shifts=["gaussian_noise"], out=tmp_path / "r", device="cpu")
    base.update(kw)
    return RunConfig(**base)


def test_fit_never_sees_scored_test_images(tmp_path, monkeypatch):
    """Every view handed to fit() comes from the train split or the val indices, never test."""
    seen = []
    cls = DETECTORS.get("mahalanobis")
    orig = cls.fit

    def spy(self, fit, val):
        seen.append((fit.index.clone(), fit.labels.clone(), val.index.clone(), len(fit), len(val)))
        return orig(self, fit, val)

    monkeypatch.setattr(cls, "fit", spy)
    run(cfg(tmp_path, detectors=["mahalanobis"]))
    _, test = load_set("digits", "test", LoadContext(data_root=tmp_path))
    _, train = load_set("digits", "train", LoadContext(data_root=tmp_path))
    val_idx, test_idx = split_val_test(test.labels)
    (fit_index, fit_labels, val_index, n_fit, n_val), = seen
    assert n_fit == len(train) and torch.equal(fit_labels, train.labels)
    assert torch.equal(fit_index, torch.arange(len(train)))
    assert np.array_equal(val_index.numpy(), val_idx)
    assert np.intersect1d(val_index.numpy(), test_idx).size == 0
    assert n_val == 90


def test_views_are_computed_once_per_set(tmp_path, monkeypatch):
    """D detectors x S shifts cost S forward passes of shifted sets, not D x S."""
    import bench.views as views_mod

    monkeypatch.setenv("BENCH_HOME", str(tmp_path / "home"))  # no cached views from other tests
    calls = []
    orig = views_mod.compute_views

    def counting(model, images, **kw):
        calls.append(kw["name"])
        return orig(model, images, **kw)

    monkeypatch.setattr(views_mod, "compute_views", counting)
    # batchable shifts (contrast) are shifted and forwarded batch by batch in stream_shift
    import bench.units as units_mod

    orig_stream = units_mod.stream_shift

    def counting_stream(ctx, shift, seed, name, **kw):
        calls.append(name)
        return orig_stream(ctx, shift, seed, name, **kw)

    monkeypatch.setattr(units_mod, "stream_shift", counting_stream)
    run(cfg(tmp_path, detectors=["msp", "energy", "mahalanobis"],
            shifts=["gaussian_noise", "contrast"]))
    shifted = [c for c in calls if c not in ("fit", "test")]
    assert sorted(shifted) == ["contrast-seed0", "gaussian_noise-seed0"]


def test_second_run_loads_fitted_detector_from_cache(tmp_path, monkeypatch):
    spec = "zhou(epochs=2)"
    first = run(cfg(tmp_path, detectors=[spec], out=tmp_path / "a"))
    assert first.records[-1]["status"] == "ok"

    def boom(self, fit, val):
        raise AssertionError("retrained although a fitted copy is cached")

    monkeypatch.setattr(DETECTORS.get("zhou"), "fit", boom)
    second = run(cfg(tmp_path, detectors=[spec], out=tmp_path / "b"))
    assert second.records[-1]["status"] == "ok"
    assert second.records[-1]["metrics"] == first.records[-1]["metrics"] != {}
    # --refit trains again (and so hits the patched fit)
    third = run(cfg(tmp_path, detectors=[spec], out=tmp_path / "c", refit=True))
    assert third.records[-1]["status"] == "failed"
    assert "retrained" in third.records[-1]["error"]


def test_severity_sweep_and_seeds_are_separate_cells(tmp_path):
    summary = run(cfg(tmp_path, shifts=["gaussian_noise(severity=1..3)"], seeds=[0, 1]))
    assert {r["seed"] for r in summary.records if r["shift"]["group"] == "clean"} == {0, 1}
    summary.records = [r for r in summary.records if r["shift"]["group"] != "clean"]
    cells = {(r["shift"]["params"]["sigma"], r["seed"]) for r in summary.records}
    assert cells == {(s, k) for s in (0.04, 0.06, 0.08) for k in (0, 1)}
    by_sev = {}
    for r in summary.records:
        by_sev.setdefault(r["shift"]["severity"], []).append(r["metrics"]["auroc"])
    # stronger noise is easier to detect, on average over seeds
    assert np.mean(by_sev[3]) >= np.mean(by_sev[1]) - 0.02


def test_successful_only_restricts_both_sides(tmp_path):
    s = run(cfg(tmp_path, shifts=["fgsm(successful_only=True)"]))
    (rec,) = [r for r in s.records if r["shift"]["group"] != "clean"]
    assert rec["status"] == "ok"
    assert rec["n_in"] == rec["n_out"] < rec["dataset"]["n_test"]
    n_correct = round(rec["model"]["clean_acc"] * rec["dataset"]["n_test"])
    assert rec["n_in"] == pytest.approx(rec["classifier"]["attack_success"] * n_correct, abs=0.5)


def test_edited_detector_code_invalidates_its_cache(tmp_path, monkeypatch):
    """A fitted detector stored by older code is never reused after its source changes."""
    import bench.cache

    spec = "zhou(epochs=1)"
    assert run(cfg(tmp_path, detectors=[spec], out=tmp_path / "a")).records[-1]["status"] == "ok"
    real = bench.cache.source_hash
    monkeypatch.setattr(bench.cache, "source_hash",
                        lambda cls: "edited" if cls is DETECTORS.get("zhou") else real(cls))

    def boom(self, fit, val):
        raise AssertionError("retrained")

    monkeypatch.setattr(DETECTORS.get("zhou"), "fit", boom)
    rec = run(cfg(tmp_path, detectors=[spec], out=tmp_path / "b")).records[-1]
    assert rec["status"] == "failed" and "retrained" in rec["error"]
