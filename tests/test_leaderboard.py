"""Leaderboards: aggregation checked against numpy on known values, and every output format."""

from __future__ import annotations

import base64
import io
import json
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from bench.errors import BenchError
from bench.leaderboard import render
from bench.leaderboard.core import METRICS, build
from bench.results import DETECTOR_METRICS, SCHEMA, load_records, write_record

SHA = "ab" * 32
DETECTORS = ("msp", "energy", "mahalanobis")
#: spec, name, group, severity, proximity
SHIFTS = (
    ("cifar100", "cifar100", "ood", None, "near"),
    ("svhn", "svhn", "ood", None, "far"),
    ("gaussian_noise(severity=1)", "gaussian_noise", "corruption", 1, None),
    ("gaussian_noise(severity=3)", "gaussian_noise", "corruption", 3, None),
    ("fgsm", "fgsm", "attack", 3, None),
)
SEEDS = (0, 1)
#: single-seed shift with a stored bootstrap interval
MIX = ("mix", "mix", "anomaly mix", 3, None)


def _png(seed: int) -> str:
    """A small real PNG (a 4x8 grid of random colours) as base64."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def known_values(model: str = "resnet20") -> dict[tuple[str, str, int], dict[str, float]]:
    """Metric values per (detector, shift spec, seed), drawn once from a fixed numpy seed."""
    rng = np.random.default_rng(zlib.crc32(model.encode()))
    out = {}
    for d in DETECTORS:
        for spec, *_ in SHIFTS:
            for s in SEEDS:
                out[(d, spec, s)] = {m: float(rng.uniform(0.05, 0.99)) for m in DETECTOR_METRICS}
        out[(d, MIX[0], 0)] = {m: float(rng.uniform(0.05, 0.99)) for m in DETECTOR_METRICS}
    return out


def classifier_values() -> dict[tuple[str, int], dict[str, float | None]]:
    rng = np.random.default_rng(7)
    out: dict[tuple[str, int], dict[str, float | None]] = {}
    for spec, _, group, _, _ in SHIFTS + (MIX,):
        for s in SEEDS:
            labelled = group != "ood"
            out[(spec, s)] = {
                "acc": float(rng.uniform(0.2, 0.9)) if labelled else None,
                "ece": float(rng.uniform(0.01, 0.3)) if labelled else None,
                "attack_success": float(rng.uniform(0.3, 1.0)) if group == "attack" else None,
            }
    return out


def make_record(detector: str, shift: tuple, seed: int, metrics: dict[str, float] | None, *,
                model: str = "resnet20", sha: str | None = SHA, ci: dict | None = None,
                classifier: dict | None = None, status: str = "ok",
                error: str | None = None, with_examples: bool = True) -> dict[str, Any]:
    """A realistic schema-1 record with plots and example images."""
    spec, name, group, severity, proximity = shift
    rng = np.random.default_rng(seed * 1000 + len(spec) * 31 + len(detector))
    s_in, s_out = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 300)
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.r_[np.ones(300), np.zeros(300)], np.r_[s_in, s_out])
    keep = np.unique(np.linspace(0, len(fpr) - 1, 150).astype(int))
    rec: dict[str, Any] = {
        "schema": SCHEMA, "schema_version": 1, "cell_id": f"{model}-{detector}-{spec}-{seed}",
        "status": status, "error": error, "created": f"2026-01-01T00:00:{seed:02d}",
        "command": (f"bench run --model {model} --detector {detector} --attack '{spec}' "
                    f"--seed {seed}"),
        "seed": seed,
        "dataset": {"name": "cifar10", "spec": "cifar10", "sha256": {"train": "t", "test": "u"},
                    "n_fit": 50000, "n_val": 1000, "n_test": 9000, "shape": [3, 32, 32]},
        "model": {"spec": model, "arch": "resnet20", "weights": "akamaster", "weights_sha256": sha,
                  "norm": True, "mean": [0.5] * 3, "std": [0.25] * 3, "clean_acc": 0.9159,
                  "clean_ece": 0.0421},
        "detector": {"name": detector, "spec": detector, "params": {}, "dist": "shiftbench"},
        "shift": {"name": name, "spec": spec, "params": {}, "group": group, "severity": severity,
                  "proximity": proximity, "sha256": "x", "dist": "shiftbench"},
        "n_in": 9000, "n_out": 9000 if group != "ood" else 26032,
        "metrics": dict(metrics or {}),
        "classifier": classifier or {"acc": None, "ece": None, "attack_success": None},
        "plots": {"scores_in": s_in.tolist(), "scores_out": s_out.tolist(),
                  "roc_fpr": fpr[keep].tolist(), "roc_tpr": tpr[keep].tolist()},
        "examples": {"shift_png": _png(seed + len(spec)) if with_examples else None,
                     "detector_png": _png(99) if with_examples and detector == "msp" else None},
        "timings": {"views": 1.0, "shift": 0.5, "fit": 0.1, "score": 0.1, "total": 2.0},
        "environment": {"python": "3.11.2", "shiftbench": "0.1.0", "torch": "2.14.1",
                        "numpy": "2.0", "platform": "linux", "device": "cpu"},
    }
    if ci is not None:
        rec["metrics_ci"] = ci
    return rec


def mix_ci(det: str, vals: dict[str, float]) -> dict[str, list[float]]:
    return {m: [max(0.0, v - 0.013), min(1.0, v + 0.021)] for m, v in vals.items()}


def write_board_dir(root: Path, *, model: str = "resnet20", sha: str = SHA,
                    examples: bool = True) -> dict[tuple[str, str, int], dict[str, float]]:
    """Write 3 detectors x (5 shifts x 2 seeds + mix x 1 seed) records; return the values."""
    values, cls = known_values(model), classifier_values()
    for (det, spec, seed), vals in values.items():
        shift = next(s for s in SHIFTS + (MIX,) if s[0] == spec)
        ci = mix_ci(det, vals) if spec == MIX[0] else None
        rec = make_record(det, shift, seed, vals, model=model, sha=sha, ci=ci,
                          classifier=cls[(spec, seed)], with_examples=examples)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", rec["cell_id"])
        write_record(rec, root / model / f"{safe}.json")
    return values


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("results")
    return root, write_board_dir(root)


@pytest.fixture(scope="module")
def board(board_dir):
    return build(load_records(board_dir[0], include_failed=True))


def _mean_std(values: dict, det: str, spec: str, metric: str) -> tuple[float, float]:
    v = np.array([values[(det, spec, s)][metric] for s in SEEDS])
    return float(np.mean(v)), float(np.std(v, ddof=1))


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------
def test_matrix_mean_and_std_equal_numpy(board, board_dir):
    _, values = board_dir
    (section,) = board.sections
    labels = {c.spec: c.label for c in section.columns}
    for metric in METRICS:
        for det in DETECTORS:
            for spec, *_ in SHIFTS:
                cell = section.cell(metric, det, labels[spec])
                mean, std = _mean_std(values, det, spec, metric)
                assert cell.n == 2 and cell.ci is None
                assert cell.mean == pytest.approx(mean, abs=1e-12)
                assert cell.std == pytest.approx(std, abs=1e-12)


def test_single_seed_cell_shows_stored_interval(board, board_dir):
    _, values = board_dir
    (section,) = board.sections
    label = next(c.label for c in section.columns if c.spec == "mix")
    for det in DETECTORS:
        cell = section.cell("auroc", det, label)
        v = values[(det, "mix", 0)]["auroc"]
        assert cell.n == 1 and cell.std is None
        assert cell.mean == v
        assert cell.ci == pytest.approx((max(0.0, v - 0.013), min(1.0, v + 0.021)))


def _expected_ranking(values: dict, specs: list[str], metric: str, higher: bool) -> list[tuple]:
    rows = []
    for det in DETECTORS:
        per_shift = [np.mean([values[(det, sp, s)][metric] for s in SEEDS
                              if (det, sp, s) in values]) for sp in specs]
        rows.append((det, float(np.mean(per_shift))))
    return sorted(rows, key=lambda t: -t[1] if higher else t[1])


@pytest.mark.parametrize("scope,specs", [
    ("all", [s[0] for s in SHIFTS] + ["mix"]),
    ("ood", ["cifar100", "svhn"]),
    ("ood:near", ["cifar100"]),
    ("ood:far", ["svhn"]),
    ("corruption", ["gaussian_noise(severity=1)", "gaussian_noise(severity=3)"]),
    ("attack", ["fgsm"]),
    ("anomaly mix", ["mix"]),
])
def test_rankings_by_mean_auroc(board, board_dir, scope, specs):
    _, values = board_dir
    (section,) = board.sections
    expected = _expected_ranking(values, specs, "auroc", higher=True)
    got = section.rankings["auroc"][scope]
    assert [r.detector for r in got] == [d for d, _ in expected]
    assert [r.mean for r in got] == pytest.approx([m for _, m in expected], abs=1e-12)
    assert [r.rank for r in got] == [1, 2, 3]
    assert all(r.complete for r in got)


def test_lower_is_better_metric_ranks_ascending(board, board_dir):
    _, values = board_dir
    (section,) = board.sections
    expected = _expected_ranking(values, [s[0] for s in SHIFTS] + ["mix"], "fpr95", higher=False)
    assert [r.detector for r in section.rankings["fpr95"]["all"]] == [d for d, _ in expected]
    # ... and the matrix rows follow the AUROC ranking
    auroc = _expected_ranking(values, [s[0] for s in SHIFTS] + ["mix"], "auroc", higher=True)
    assert section.detectors == [d for d, _ in auroc]


def test_classifier_table_and_severity_curves(board, board_dir):
    _, values = board_dir
    (section,) = board.sections
    cls = classifier_values()
    labels = {c.spec: c.label for c in section.columns}
    for spec in ("gaussian_noise(severity=1)", "fgsm"):
        acc = [cls[(spec, s)]["acc"] for s in SEEDS]
        assert section.classifier[labels[spec]]["acc"].mean == pytest.approx(np.mean(acc))
        assert section.classifier[labels[spec]]["acc"].std == pytest.approx(np.std(acc, ddof=1))
    succ = [cls[("fgsm", s)]["attack_success"] for s in SEEDS]
    assert section.classifier[labels["fgsm"]]["attack_success"].mean == pytest.approx(np.mean(succ))
    assert section.classifier[labels["svhn"]]["acc"].mean is None  # OOD: no labels
    assert section.clean["acc"].mean == pytest.approx(0.9159)
    # gaussian_noise has severities 1 and 3; fgsm has only one, svhn none
    assert set(section.severity["auroc"]) == {"gaussian_noise"}
    for det in DETECTORS:
        pts = section.severity["auroc"]["gaussian_noise"][det]
        assert [s for s, _ in pts] == [1, 3]
        for (sev, cell), spec in zip(pts, ("gaussian_noise(severity=1)",
                                           "gaussian_noise(severity=3)")):
            assert cell.mean == pytest.approx(_mean_std(values, det, spec, "auroc")[0])


def test_models_are_separate_sections_never_mixed(tmp_path):
    a = write_board_dir(tmp_path, model="resnet20", examples=False)
    b = write_board_dir(tmp_path, model="resnet56", sha="cd" * 32, examples=False)
    board = build(load_records(tmp_path))
    assert [(s.model, s.weights_sha256) for s in board.sections] == [
        ("resnet20", SHA), ("resnet56", "cd" * 32)]
    for section, values in zip(board.sections, (a, b)):
        label = next(c.label for c in section.columns if c.spec == "svhn")
        assert section.cell("auroc", "energy", label).mean == pytest.approx(
            _mean_std(values, "energy", "svhn", "auroc")[0], abs=1e-12)
    # same model spec with other weights is a third group
    rec = make_record("msp", SHIFTS[1], 0, {"auroc": 0.5}, sha="ef" * 32, with_examples=False)
    write_record(rec, tmp_path / "other.json")
    assert len(build(load_records(tmp_path)).sections) == 3


def test_failed_cell_is_shown_not_dropped(tmp_path):
    write_record(make_record("msp", SHIFTS[1], 0, {"auroc": 0.8}, with_examples=False),
                 tmp_path / "a.json")
    write_record(make_record("energy", SHIFTS[1], 0, {}, status="failed",
                             error="CUDA out of memory", with_examples=False), tmp_path / "b.json")
    md = render(tmp_path, fmt="md")
    row = next(line for line in md.splitlines() if line.startswith("| energy |"))
    assert "failed" in row
    board = build(load_records(tmp_path, include_failed=True))
    assert board.n_failed == 1
    assert board.sections[0].cell("auroc", "energy", "svhn").failed == ("CUDA out of memory",)


def test_detector_missing_shifts_ranks_after_complete_ones(tmp_path):
    # msp is better on the one shift it has, but it lacks the other: not comparable, ranked last
    write_record(make_record("msp", SHIFTS[0], 0, {"auroc": 0.99}, with_examples=False),
                 tmp_path / "a.json")
    for i, (shift, v) in enumerate(((SHIFTS[0], 0.6), (SHIFTS[1], 0.7))):
        write_record(make_record("energy", shift, 0, {"auroc": v}, with_examples=False),
                     tmp_path / f"e{i}.json")
    rows = build(load_records(tmp_path)).sections[0].rankings["auroc"]["all"]
    assert [(r.detector, r.n_shifts, r.n_total, r.complete) for r in rows] == [
        ("energy", 2, 2, True), ("msp", 1, 2, False)]
    assert rows[0].mean == pytest.approx(0.65) and rows[1].mean == pytest.approx(0.99)
    assert "[1/2 shifts]" in render(tmp_path, fmt="md")


def test_duplicate_records_keep_the_newest_and_say_so(tmp_path):
    old = make_record("msp", SHIFTS[1], 0, {"auroc": 0.6}, with_examples=False)
    new = make_record("msp", SHIFTS[1], 0, {"auroc": 0.8}, with_examples=False)
    old["created"], new["created"] = "2026-01-01T00:00:00", "2026-02-01T00:00:00"
    write_record(new, tmp_path / "a" / "r.json")
    write_record(old, tmp_path / "b" / "r.json")
    section = build(load_records(tmp_path)).sections[0]
    assert section.cell("auroc", "msp", "svhn").values == (0.8,)
    assert any("duplicate" in n for n in section.notes)


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------
def _fmt_ms(values, det, spec, metric) -> str:
    m, s = _mean_std(values, det, spec, metric)
    return f"{100 * m:.1f}±{100 * s:.1f}"


def test_markdown_matrix_and_numbers(board_dir):
    root, values = board_dir
    md = render(root, fmt="md", metric="auroc")
    header = ("| detector | cifar100 | svhn | gaussian_noise(severity=1) | "
              "gaussian_noise(severity=3) | fgsm (s3) | mix (s3) |")
    assert header in md
    assert "### AUROC (%), higher is better" in md
    lines = md.splitlines()
    start = lines.index("### AUROC (%), higher is better")
    for det in DETECTORS:
        row = next(line for line in lines[start:] if line.startswith(f"| {det} |"))
        cells = [c.strip().strip("*") for c in row.strip("|").split("|")][1:]
        want = [_fmt_ms(values, det, s[0], "auroc") for s in SHIFTS]
        v = values[(det, "mix", 0)]["auroc"]
        want.append(f"{100 * v:.1f} [{100 * max(0, v - .013):.1f}, {100 * min(1, v + .021):.1f}]")
        assert cells == want
    assert "### FPR@95TPR (ID+) (%), lower is better" in md
    assert "### Ranking by mean AUROC" in md and "### Classifier" in md
    assert "bench run --model resnet20 --detector msp --attack 'svhn' --seed 1" in md


def test_markdown_bolds_the_best_per_column(board_dir):
    root, values = board_dir
    md = render(root, fmt="md", metric="fpr95")
    lines = md.splitlines()
    start = lines.index("### FPR@95TPR (ID+) (%), lower is better")
    best = min(DETECTORS, key=lambda d: _mean_std(values, d, "svhn", "fpr95")[0])
    for det in DETECTORS:
        row = next(line for line in lines[start:] if line.startswith(f"| {det} |"))
        svhn = row.strip("|").split("|")[2].strip()
        assert svhn.startswith("**") == (det == best)


def test_csv_one_row_per_record_and_metric(board_dir, tmp_path):
    root, values = board_dir
    out = tmp_path / "board.csv"
    render(root, fmt="csv", out=out)
    df = pd.read_csv(out)
    assert list(df.columns[:16]) == ["dataset", "model", "weights_sha256", "detector", "shift",
                                     "shift_name", "group", "severity", "proximity", "seed",
                                     "metric", "value", "ci_lo", "ci_hi", "n_in", "n_out"]
    assert len(df) == len(values) * len(DETECTOR_METRICS)
    assert not df.duplicated(["detector", "shift", "seed", "metric"]).any()
    for (det, spec, seed), vals in values.items():
        sub = df[(df.detector == det) & (df["shift"] == spec) & (df.seed == seed)]
        got = dict(zip(sub.metric, sub.value))
        assert got == pytest.approx(vals, abs=0)  # full precision round trip
    mix = df[(df["shift"] == "mix") & (df.metric == "auroc") & (df.detector == "msp")].iloc[0]
    v = values[("msp", "mix", 0)]["auroc"]
    assert (mix.ci_lo, mix.ci_hi) == pytest.approx((v - 0.013, min(1.0, v + 0.021)))
    svhn = df[df["shift"] == "svhn"].iloc[0]
    assert svhn.group == "ood" and svhn.proximity == "far" and svhn.n_out == 26032
    assert df[df["shift"] == "svhn"].ci_lo.isna().all()


def test_html_single_self_contained_file(board_dir, tmp_path):
    root, _ = board_dir
    out = tmp_path / "board.html"
    text = render(root, fmt="html", out=out)
    assert out.read_text(encoding="utf-8") == text
    assert text.startswith("<!DOCTYPE html>")
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", text, flags=re.I)
    assert refs, "expected embedded images"
    assert not [r for r in refs if re.match(r"(https?:)?//", r, flags=re.I)]
    assert not re.search(r"<link\b|@import|url\(\s*['\"]?https?:", text, flags=re.I)
    uris = re.findall(r'src="(data:image/png;base64,[^"]+)"', text)
    # 3 detector figures + 1 severity figure + 6 shift example grids + msp's image per shift
    assert len(uris) == 3 + 1 + 6 + 6
    for uri in uris:
        assert base64.b64decode(uri.split(",", 1)[1]).startswith(b"\x89PNG")
    assert '<select id="metric">' in text and 'th data-col="svhn"' in text
    for m in METRICS:
        assert f'id="matrix-0-{m}"' in text
    assert "bench run --model resnet20 --detector energy" in text
    assert len(text) < 3_000_000


def test_html_without_plots_and_with_a_broken_example(tmp_path):
    rec = make_record("msp", SHIFTS[1], 0, {"auroc": 0.7}, with_examples=False)
    rec["plots"] = None
    rec["examples"] = {"shift_png": "bm90IGEgcG5n", "detector_png": None}  # "not a png"
    write_record(rec, tmp_path / "r.json")
    text = render(tmp_path, fmt="html")
    assert "data:image" not in text
    assert "1 stored example image(s) were not valid base64 PNG" in text


def test_terminal_prints_and_returns_text(board_dir):
    root, values = board_dir
    console = Console(file=io.StringIO(), width=200, color_system=None)
    text = render(root, fmt="terminal", console=console)
    printed = console.file.getvalue()
    for det in DETECTORS:
        assert det in text and det in printed
    assert _fmt_ms(values, "msp", "svhn", "auroc") in text
    assert "Ranking" in text and "Classifier" in text


# --------------------------------------------------------------------------------------------
# Mistakes
# --------------------------------------------------------------------------------------------
def test_empty_folder(tmp_path):
    with pytest.raises(BenchError, match="no results in"):
        render(tmp_path, fmt="md")


def test_missing_folder(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        render(tmp_path / "nope")


def test_old_schema_version(tmp_path):
    rec = make_record("msp", SHIFTS[1], 0, {"auroc": 0.7}, with_examples=False)
    rec["schema_version"] = 0
    (tmp_path / "old.json").write_text(json.dumps(rec))
    with pytest.raises(BenchError, match="schema version 0"):
        render(tmp_path, fmt="csv")


def test_garbage_json(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BenchError, match="not valid JSON"):
        render(tmp_path, fmt="md")


@pytest.mark.parametrize("kwargs,msg", [({"fmt": "pdf"}, "unknown format 'pdf'"),
                                        ({"metric": "aurco"}, "did you mean `--metric auroc`")])
def test_unknown_format_or_metric(board_dir, kwargs, msg):
    with pytest.raises(BenchError, match=re.escape(msg)):
        render(board_dir[0], **kwargs)


def test_out_is_a_folder(board_dir, tmp_path):
    with pytest.raises(BenchError, match="is a folder"):
        render(board_dir[0], fmt="md", out=tmp_path)


# --------------------------------------------------------------------------------------------
# Small sets
# --------------------------------------------------------------------------------------------
def _small_set_dir(root: Path) -> dict[str, dict]:
    """msp and energy on two OOD sets; three records from small sets, one old (no flag)."""
    rng = np.random.default_rng(3)
    recs = {}
    for det in ("msp", "energy"):
        for shift in SHIFTS[:2]:
            vals = {m: float(rng.uniform(0.1, 0.9)) for m in DETECTOR_METRICS}
            rec = make_record(det, shift, 0, vals, with_examples=False,
                              ci={"auroc": [vals["auroc"] - 0.01, vals["auroc"] + 0.01]})
            rec["plots"] = None
            recs[(det, shift[0])] = rec
    recs[("msp", "cifar100")].update(n_out=12, metrics_ci={"auroc": [None, None]})  # old record
    recs[("energy", "cifar100")].update(n_in=29, small_set=True,
                                         metrics_ci={"auroc": [None, None]})
    recs[("msp", "svhn")]["small_set"] = False                    # large, flagged as such
    recs[("energy", "svhn")].update(small_set=True, n_in=9000, n_out=5)
    for (det, spec), rec in recs.items():
        write_record(rec, root / f"{det}-{spec}.json")
    return recs


SMALL_CELLS = {("msp", "cifar100"), ("energy", "cifar100"), ("energy", "svhn")}


def test_small_set_cells_are_marked_in_every_format(tmp_path):
    recs = _small_set_dir(tmp_path)
    board = build(load_records(tmp_path))
    sec = board.sections[0]
    for (det, spec), rec in recs.items():
        cell = sec.cell("auroc", det, spec)
        assert cell.small == ((det, spec) in SMALL_CELLS)
    assert sec.has_small
    legend = "† fewer than 30 ID or shifted images"
    md = render(tmp_path, fmt="md")
    assert legend in md
    for det in ("msp", "energy"):
        v_c = f"{100 * recs[(det, 'cifar100')]['metrics']['auroc']:.1f}"
        v_s = f"{100 * recs[(det, 'svhn')]['metrics']['auroc']:.1f}"
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {det} |")
                    and (v_c in ln or f"**{v_c}" in ln))
        assert (f"{v_c}†" in line) == ((det, "cifar100") in SMALL_CELLS)
        assert (f"{v_s}†" in line) == ((det, "svhn") in SMALL_CELLS)
    # the large flagged-false record keeps its stored interval, unmarked
    v = recs[("msp", "svhn")]["metrics"]["auroc"]
    assert f"{100 * v:.1f} [{100 * (v - 0.01):.1f}, {100 * (v + 0.01):.1f}]" in md
    text = render(tmp_path, fmt="terminal")
    assert legend in text and text.count("†") == len(SMALL_CELLS) + 1   # cells + legend
    html_text = render(tmp_path, fmt="html")
    assert legend in html_text and "small-set" in html_text
    v = recs[("energy", "svhn")]["metrics"]["auroc"]
    assert f">{100 * v:.1f}† " in html_text or f">{100 * v:.1f}†<" in html_text
    df = pd.read_csv(io.StringIO(render(tmp_path, fmt="csv")))
    flags = df[df.metric == "auroc"].set_index(["detector", "shift"]).small_set.to_dict()
    assert flags == {k: k in SMALL_CELLS for k in recs}


def test_no_legend_without_small_sets(board_dir):
    assert "†" not in render(board_dir[0], fmt="md")


# --------------------------------------------------------------------------------------------
# Unreadable records
# --------------------------------------------------------------------------------------------
def test_skip_invalid_keeps_the_good_records(tmp_path, caplog):
    good = make_record("msp", SHIFTS[1], 0, {"auroc": 0.7}, with_examples=False)
    write_record(good, tmp_path / "good.json")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "latin1.json").write_bytes(b"\xff\xfe\x00garbage")
    old = dict(good, schema_version=0)
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(BenchError, match="bad.json: not valid JSON"):
        load_records(tmp_path)                        # strict by default
    (tmp_path / "bad.json").rename(tmp_path / "bad.txt")
    with pytest.raises(BenchError, match="latin1.json: not a UTF-8 text file"):
        load_records(tmp_path)
    (tmp_path / "bad.txt").rename(tmp_path / "bad.json")
    import bench.results as R
    with caplog.at_level("WARNING", logger="bench.results"):
        recs = R.load_records(tmp_path, skip_invalid=True)
        df = R.load(tmp_path, skip_invalid=True)
    assert [r["cell_id"] for r in recs] == [good["cell_id"]] and len(df) == 1
    warned = [r.getMessage() for r in caplog.records]
    for name in ("bad.json", "latin1.json", "old.json"):
        assert sum(name in w for w in warned) == 2    # once per call
    assert "70.0" in render(tmp_path, fmt="md", skip_invalid=True)


def _bench_exe(*args: str, **env: str):
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("bench")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_cli_leaderboard_skips_unreadable_records(tmp_path):
    vals = {"auroc": 0.8125}
    write_record(make_record("msp", SHIFTS[1], 0, vals, with_examples=False), tmp_path / "a.json")
    write_record(make_record("energy", SHIFTS[1], 0, {"auroc": 0.6875}, with_examples=False),
                 tmp_path / "b.json")
    (tmp_path / "c.json").write_text('{"schema": "shiftbench.result", "schema_')   # truncated
    (tmp_path / "d.json").write_text(json.dumps({"schema": "other"}))
    res = _bench_exe("leaderboard", str(tmp_path), "--format", "md", BENCH_HOME=str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "81.2" in res.stdout and "68.8" in res.stdout       # both good records shown
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in res.stderr
    assert "c.json" in lines[0] and "not valid JSON" in lines[0]
    assert "d.json" in lines[1] and "not a shiftbench result" in lines[1]
    # nothing readable: still an error, exit 2, after the warnings
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text("[]")
    res = _bench_exe("leaderboard", str(tmp_path), BENCH_HOME=str(tmp_path))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 5 and lines[-1].startswith("bench: error: no readable results")
    assert "all 4 record file(s) were skipped" in lines[-1]


def test_html_matrix_headers_can_wrap_inside_the_page(board_dir):
    text = render(board_dir[0], fmt="html")
    # long spec headers get break opportunities at their parts; the sort hook keeps the label
    assert ('<th data-col="gaussian_noise(severity=1)" data-first="desc">'
            "gaussian_<wbr>noise<wbr>(severity=1)</th>") in text
    css = text.split("<style>", 1)[1].split("</style>", 1)[0]
    rules = {sel.strip(): body for sel, body in re.findall(r"([^{}]+)\{([^}]*)\}", css)}
    assert "white-space:normal" in rules["table.matrix th"]
    assert "max-width" in rules["table.matrix th"]
    assert "overflow-x:auto" in rules[".scroll"]
    # every matrix sits in a scroll box, so even a very wide one never widens the page
    n = len(re.findall(r'<table class="matrix sortable"', text))
    assert n == len(METRICS) and text.count('<div class="scroll"><table class="matrix') == n


@pytest.mark.parametrize("width", [80, 120, 200])
def test_terminal_board_keeps_names_and_labels_whole(board_dir, width):
    root, values = board_dir
    console = Console(file=io.StringIO(), width=width, color_system=None)
    text = render(root, fmt="terminal", console=console)
    for out in (text, console.file.getvalue()):
        assert "…" not in out
        assert max(len(ln) for ln in out.splitlines()) <= width
        for det in DETECTORS:
            assert re.search(rf"(?<![\w]){det}(?![\w])", out)
        for label in ("gaussian_noise(severity=1)", "gaussian_noise(severity=3)", "fgsm (s3)",
                      "mix (s3)", "cifar100", "svhn", "near OOD", "corruptions", "anomaly mix"):
            assert label in out
    # the numbers are still there, whichever way the matrix is turned
    assert _fmt_ms(values, "msp", "svhn", "auroc") in text
