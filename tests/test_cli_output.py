"""What `bench` prints is readable: tables fit the terminal, names and headers are never cut,
messages to a pipe stay one line, `bench list` shows whole descriptions and severity tables.

Everything runs through the installed `bench` executable in a subprocess, the way users see it.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(sys.executable).with_name("bench")
DETS = ("msp", "energy", "mahalanobis")
SHIFT_SPECS = ("gaussian_noise(severity=3)", "brightness_contrast(severity=3)",
               "fgsm(severity=3)")


def bench(*args: str, columns: int, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns), "BENCH_HOME": str(home)}
    return subprocess.run([str(BENCH), *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def run80(tmp_path_factory):
    """One real run of 3 detectors x 3 shifts on digits, its table printed 80 columns wide."""
    tmp = tmp_path_factory.mktemp("out80")
    res = bench("run", "--detector", ",".join(DETS), "--attack",
                "gaussian_noise,brightness_contrast,fgsm", "--out", "results",
                columns=80, cwd=tmp, home=tmp / "home")
    assert res.returncode == 0, res.stderr[-3000:]
    recs = [json.loads(p.read_text()) for p in (tmp / "results").rglob("*.json")]
    recs = [r for r in recs if r["shift"]["group"] != "clean"]  # failure detection only
    assert len(recs) == 9
    return tmp, res, recs


def _pct(v):
    return "-" if v is None else f"{100 * v:.1f}"


def _row(lines: list[str], det: str, shift_name: str) -> str:
    hits = [ln for ln in lines if re.match(rf"\s*{det}\s+{shift_name}(?=\s)", ln)]
    assert len(hits) == 1, (det, shift_name, lines)
    return hits[0]


def test_run_table_fits_80_columns_with_whole_names(run80):
    _, res, recs = run80
    lines = res.stdout.splitlines()
    assert lines and max(len(ln) for ln in lines) <= 80, res.stdout
    header = next(ln for ln in lines if ln.split()[:2] == ["detector", "shift"])
    assert header.split() == ["detector", "shift", "AUROC", "FPR95", "Det95", "acc", "ECE",
                              "succ"]
    assert sum(bool(re.search(r"\bmahalanobis\b", ln)) for ln in lines) == 3 + 1  # + clean table
    assert "…" not in res.stdout
    for r in recs:
        det, shift = r["detector"]["spec"], r["shift"]["name"]
        cells = _row(lines, det, shift).split()
        m, c = r["metrics"], r["classifier"]
        want = [_pct(m["auroc"]), _pct(m["fpr95"]), _pct(m["detect95"]), _pct(c["acc"]),
                _pct(c["ece"]), _pct(c["attack_success"])]
        assert cells[-6:] == want, (det, shift, cells)
        assert (cells[-1] != "-") == (shift == "fgsm")   # attack success only for the attack


def test_run_table_wide_terminal_shows_every_column(run80):
    tmp, _, recs = run80
    res = bench("run", "--detector", ",".join(DETS), "--attack",
                "gaussian_noise,brightness_contrast,fgsm", "--out", "results",
                columns=160, cwd=tmp, home=tmp / "home")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "12 cell(s) already done" in res.stderr  # 9 + each detector's clean cell
    lines = res.stdout.splitlines()
    assert max(len(ln) for ln in lines) <= 160
    header = next(ln for ln in lines if ln.split()[:2] == ["detector", "shift"]).split()
    assert header[:3] == ["detector", "shift", "seed"] and "AUPRin" in header
    for r in recs:
        line = _row(lines, r["detector"]["spec"], re.escape(r["shift"]["spec"]))
        assert f"{_pct(r['metrics']['aupr_out'])}" in line.split()


@pytest.mark.parametrize("columns", [80, 100, 200])
def test_terminal_leaderboard_shows_whole_shift_headers(run80, columns):
    tmp, _, _ = run80
    res = bench("leaderboard", "results", columns=columns, cwd=tmp, home=tmp / "home")
    assert res.returncode == 0, res.stderr
    assert "…" not in res.stdout and "..." not in res.stdout
    assert max(len(ln) for ln in res.stdout.splitlines()) <= columns
    matrix = res.stdout.split("AUROC (%), higher is better", 1)[1].split("Classifier", 1)[0]
    for spec in SHIFT_SPECS:
        assert spec in matrix
    for det in DETS:
        assert re.search(rf"\b{det}\b", matrix)


def test_stderr_lines_are_not_hard_wrapped_in_a_pipe(run80):
    tmp, _, _ = run80
    long_dir = tmp / ("a-folder-with-a-rather-long-name-" * 3) / "and-one-more-level"
    long_dir.mkdir(parents=True)
    target = long_dir / "board.md"
    res = bench("leaderboard", "results", "--format", "md", "--out", str(target),
                columns=80, cwd=tmp, home=tmp / "home")
    assert res.returncode == 0, res.stderr
    assert len(str(target)) > 120
    assert res.stderr.splitlines() == [f"leaderboard written to {target}"]


def test_list_shows_whole_descriptions_and_severity_tables(tmp_path):
    from bench.registry import DATASETS, DETECTORS, MODELS, SHIFTS

    res = bench("list", columns=400, cwd=tmp_path, home=tmp_path / "home")
    assert res.returncode == 0, res.stderr
    rows = {}
    for ln in res.stdout.splitlines():
        cells = [c.strip() for c in ln.strip("│ ").split("│")]
        if len(cells) >= 4 and cells[0] and not cells[0].startswith("name"):
            rows[cells[0].removesuffix(":ARG")] = cells
    for reg in (SHIFTS, DETECTORS, DATASETS, MODELS):
        for name, cls in reg.items():
            desc = rows[name][-2]
            # the docstring's whole first paragraph, on one line: it ends a sentence
            para = " ".join(inspect.getdoc(cls).split("\n\n")[0].split()).replace("``", "")
            assert desc == para and desc.endswith("."), (name, desc)
    assert rows["mahalanobis"][-2].startswith("Minus the Mahalanobis distance")
    # severity tables as METHODS.md §5 gives them
    assert rows["gaussian_noise"][2] == "sigma: 0.04 0.06 0.08 0.09 0.1"
    assert rows["fgsm"][2] == "eps: 1/255 2/255 4/255 8/255 16/255"
    assert rows["pixel_dropout"][2] == "p: 0.05 0.1 0.2 0.3 0.5"
    assert rows["fgsm"][1].startswith("severity=3, eps=4/255, batch_size=256")
    shifts = res.stdout.split("detectors", 1)[0]
    # severity parameters are resolved; adaptive_pgd's n=None (every image) is a real default
    assert "=None" not in shifts.replace("n=None", "")
