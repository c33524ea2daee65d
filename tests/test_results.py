"""bench.results: atomic writes, record validation, loading into pandas.

Records are built by hand here (not by the runner), so every expected value is written out.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from bench import results as R
from bench.errors import BenchError


def record(det: str = "msp", shift: str = "fgsm", seed: int = 0, status: str = "ok",
           **metrics: float | None) -> dict:
    """A minimal valid record (only the schema's required fields plus classifier numbers)."""
    return {
        "schema": R.SCHEMA, "schema_version": R.SCHEMA_VERSION, "cell_id": f"{det}-{shift}-{seed}",
        "status": status, "error": None if status == "ok" else "boom", "seed": seed,
        "dataset": {"name": "digits"}, "model": {"spec": "cnn", "weights_sha256": "ab" * 32,
                                                 "clean_acc": 0.97, "clean_ece": 0.02},
        "detector": {"name": det, "spec": det}, "n_in": 90, "n_out": 90,
        "shift": {"name": shift, "spec": shift, "group": "attack", "severity": 3,
                  "proximity": None},
        "metrics": dict(metrics) if status == "ok" else {},
        "classifier": {"acc": 0.25, "ece": 0.5, "attack_success": 0.75},
    }


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------
def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "r.json"
    R.atomic_write_text(path, "first\n")
    R.atomic_write_text(path, "second\n")
    assert path.read_text() == "second\n"
    assert _leftovers(path.parent) == []
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_failed_write_keeps_the_old_file_whole(tmp_path, monkeypatch):
    """If the process dies between writing and renaming, readers still see the old file."""
    path = tmp_path / "r.json"
    R.atomic_write_text(path, "old contents\n")

    def crash(src, dst):
        # the new data is complete in the temp file at this point, but not yet visible
        tmp = Path(src)
        assert tmp.parent == path.parent and tmp.read_bytes() == b"new contents\n"
        raise KeyboardInterrupt

    monkeypatch.setattr(R.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        R.atomic_write_text(path, "new contents\n")
    assert path.read_text() == "old contents\n"
    assert _leftovers(tmp_path) == []


def test_a_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(R.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        R.atomic_write_bytes(tmp_path / "r.json", b"x" * 100)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def test_write_then_read_round_trip_with_nan_as_null(tmp_path):
    rec = record(auroc=0.75, aupr_in=1.0, aupr_in_trapz=float("nan"))
    rec["classifier"]["ece"] = float("inf")
    path = R.write_record(rec, tmp_path / "r.json")
    raw = json.loads(path.read_text())
    assert raw["metrics"] == {"auroc": 0.75, "aupr_in": 1.0, "aupr_in_trapz": None}
    assert raw["classifier"] == {"acc": 0.25, "ece": None, "attack_success": 0.75}
    assert R.read_record(path) == raw
    # a NaN among the validated metrics is refused before anything is written
    with pytest.raises(BenchError, match="metric fpr95=nan is not a fraction"):
        R.write_record(record(fpr95=float("nan")), tmp_path / "s.json")
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("change,message", [
    (lambda r: r.update(schema="other"), "not a shiftbench result"),
    (lambda r: r.update(schema_version=3), "result schema version 3 is not supported"),
    (lambda r: r.pop("cell_id"), "field 'cell_id' missing or not str"),
    (lambda r: r.update(seed="0"), "field 'seed' missing or not int"),
    (lambda r: r.update(metrics=[]), "field 'metrics' missing or not dict"),
    (lambda r: r.update(status="maybe"), "status must be 'ok' or 'failed'"),
    (lambda r: r["metrics"].update(auroc=1.5), r"metric auroc=1.5 is not a fraction"),
    (lambda r: r["metrics"].update(fpr95=-0.1), r"metric fpr95=-0.1 is not a fraction"),
    (lambda r: r["metrics"].update(detect95="0.5"), r"metric detect95='0.5' is not a fraction"),
])
def test_validate_rejects_bad_records(change, message):
    rec = record(auroc=0.5)
    change(rec)
    with pytest.raises(BenchError, match=f"^somewhere.json: {message}"):
        R.validate(rec, source="somewhere.json")


def test_validate_accepts_failed_records_and_null_metrics():
    assert R.validate(record(status="failed"))["status"] == "failed"
    assert R.validate(record(auroc=None, fpr95=0.0, detect95=1))["metrics"]["detect95"] == 1


def test_write_record_refuses_an_invalid_record_and_writes_nothing(tmp_path):
    with pytest.raises(BenchError, match="not a fraction"):
        R.write_record(record(auroc=2.0), tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


def test_read_record_names_the_file_of_bad_json(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"schema": ')
    with pytest.raises(BenchError, match=r"r\.json: not valid JSON"):
        R.read_record(path)
    with pytest.raises(BenchError, match="does not exist"):
        R.record_files(tmp_path / "missing")


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
def test_load_to_frame_round_trip(tmp_path):
    recs = {("msp", "fgsm", 0): {"auroc": 0.75, "fpr95": 0.5},
            ("energy", "fgsm", 1): {"auroc": 0.875, "detect95": 0.125, "aupr_in_trapz": 0.25}}
    for (det, shift, seed), m in recs.items():
        R.write_record(record(det, shift, seed, **m), tmp_path / det / f"{shift}-{seed}.json")
    R.write_record(record("zhou", status="failed"), tmp_path / "zhou.json")
    (tmp_path / ".hidden.json").write_text("not even JSON")  # dot files are temp files: skipped

    df = R.load(tmp_path)
    assert isinstance(df, pd.DataFrame) and len(df) == 2
    fd_cols = [c for m in R.FAILURE_METRICS for c in (m, f"pool_{m}")]
    assert list(df.columns[-25:]) == [*R.DETECTOR_METRICS, *R.CLASSIFIER_METRICS, *fd_cols,
                                      "clean_acc", "clean_ece"]
    for (det, shift, seed), m in recs.items():
        row = df[(df.detector == det) & (df.seed == seed)].iloc[0]
        assert (row["shift"], row["group"], row["severity"]) == (shift, "attack", 3)
        assert row["n_in"] == row["n_out"] == 90
        for key in R.DETECTOR_METRICS:  # every metric column: the stored value or missing
            if key in m:
                assert row[key] == m[key]
            else:
                assert row[key] is None or math.isnan(row[key])
        assert (row["acc"], row["ece"], row["attack_success"]) == (0.25, 0.5, 0.75)
        assert "aupr_in_trapz" not in df.columns  # comparison-only metrics stay in the records

    with_failed = R.load(tmp_path, include_failed=True)
    assert sorted(with_failed.status) == ["failed", "ok", "ok"]
    assert with_failed.set_index("detector").loc["zhou", "error"] == "boom"
