"""The boards' failure-detection table and risk-coverage plots, from real records of a run; and
version-1 records (no failure blocks, no clean cells) still load beside version-2 ones."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.leaderboard import render
from bench.leaderboard.core import build
from bench.results import load, load_records

BENCH = Path(sys.executable).with_name("bench")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fd") / "r"
    res = subprocess.run([str(BENCH), "run", "--detector", "msp,energy", "--attack",
                          "gaussian_noise(severity=5),contrast", "--seeds", "0,1", "--out",
                          str(out)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "failure detection, clean test set" in res.stdout
    return out


def test_failure_rows_aggregate_the_records(results):
    records = load_records(results)
    board = build(records)
    (section,) = board.sections
    assert "clean" not in [c.label for c in section.columns]  # no empty detection column
    rows = {(r.column, r.detector): r for r in section.failure}
    assert {c for c, _ in rows} == {"clean", "gaussian_noise(severity=5)", "contrast(severity=3)"}
    for (col, det), row in rows.items():
        recs = [r for r in records if r["detector"]["spec"] == det
                and (r["shift"]["spec"] == col)]
        assert len(recs) == 2
        for key in ("fd_auroc", "aurc", "risk95"):
            vals = [r["failure"][key] for r in recs]
            assert row.set[key].mean == pytest.approx(np.mean(vals))
            assert row.set[key].std == pytest.approx(np.std(vals, ddof=1))
        if col != "clean":
            assert row.pool["fd_auroc"].mean == pytest.approx(
                np.mean([r["deployment"]["fd_auroc"] for r in recs]))
            assert row.shift_auroc.mean == pytest.approx(
                np.mean([r["metrics"]["auroc"] for r in recs]))
    assert set(section.rc_curves) == {"msp", "energy"}


def test_markdown_and_html_show_the_failure_table(results):
    md = render(results, fmt="md")
    table = md.split("### Failure detection", 1)[1].split("###", 1)[0]
    assert "| set | detector | FD-AUROC | AURC | risk@95 | pool FD-AUROC | shift AUROC |" in table
    recs = [r for r in load_records(results)
            if r["detector"]["spec"] == "msp" and r["shift"]["spec"] == "clean"]
    fd = [100 * r["failure"]["fd_auroc"] for r in recs]
    want = f"{np.mean(fd):.1f}±{np.std(fd, ddof=1):.1f}"
    assert re.search(rf"\| clean \| msp \| {re.escape(want)} \|", table), table
    html = render(results, fmt="html")
    assert 'class="failure sortable"' in html and 'alt="risk-coverage curves"' in html


def test_version_1_records_still_load_beside_version_2(results, tmp_path):
    old = next(p for p in sorted(results.rglob("*.json"))
               if p.name.startswith("msp__gaussian") and "seed0" in p.name)
    rec = json.loads(old.read_text())
    v1 = {k: v for k, v in rec.items()
          if k not in ("cell_key", "code", "failure", "deployment", "cache", "small_set")}
    v1["schema_version"] = 1
    v1["detector"] = dict(v1["detector"], spec="old_msp", name="old_msp")
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "old.json").write_text(json.dumps(v1))
    (folder / "new.json").write_text(old.read_text())
    df = load(folder)
    assert sorted(df["detector"]) == ["msp", "old_msp"]
    assert df.set_index("detector")["fd_auroc"].isna()["old_msp"]
    assert df.set_index("detector").loc["msp", "fd_auroc"] == pytest.approx(
        rec["failure"]["fd_auroc"])
    (section,) = build(load_records(folder)).sections
    assert [r.detector for r in section.failure] == ["msp"]


def test_split_seeds_are_further_runs_and_the_legend_says_so(results, tmp_path):
    """Records that differ only in --split-seed both count in the cell's mean±std (not deduped
    as copies), and the board says what its ± runs over."""
    from bench.leaderboard.core import spread_text

    src = next(p for p in sorted(results.rglob("*.json"))
               if p.name.startswith("msp__contrast") and "seed0" in p.name)
    rec = json.loads(src.read_text())
    other = json.loads(src.read_text())
    other["dataset"]["split_seed"] = 1
    other["metrics"]["auroc"] = rec["metrics"]["auroc"] - 0.1
    folder = tmp_path / "splits"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(rec))
    (folder / "b.json").write_text(json.dumps(other))
    (section,) = build(load_records(folder)).sections
    cell = section.cell("auroc", "msp", section.columns[0].label)
    assert sorted(cell.values) == pytest.approx(sorted([rec["metrics"]["auroc"],
                                                        other["metrics"]["auroc"]]))
    assert "--split-seed 0, 1" in spread_text(section) and "--seeds 0" in spread_text(section)
    assert "Values: mean±std over --seeds 0" in render(folder, fmt="md")
