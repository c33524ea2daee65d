"""Bad command lines through the installed `bench` executable: exit 2, one line, no traceback.

Each case runs ``bench`` (the console script beside this Python) in a subprocess with its own
BENCH_HOME, and checks what a user sees: exit status 2, exactly one non-empty line on stderr
(``bench: error: ...``) that says what was wrong, and never a Python traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(sys.executable).with_name("bench")

#: (id, arguments, a phrase the error line must contain); "{tmp}" is the test's folder
CASES = [
    ("unknown-command", ["bogus"], "No such command"),
    ("unknown-option", ["run", "--bogus-option"], "--bogus-option"),
    ("unknown-option-leaderboard", ["leaderboard", "{tmp}", "--colour"], "--colour"),
    ("seed-float", ["run", "--seed", "1.5"], "Invalid value for '--seed'"),
    ("batch-size-text", ["run", "--batch-size", "abc"], "Invalid value for '--batch-size'"),
    ("train-epochs-text", ["train", "--epochs", "abc"], "Invalid value for '--epochs'"),
    ("leaderboard-missing-dir", ["leaderboard"], "Missing argument"),
    ("option-missing-value", ["leaderboard", "{tmp}", "--format"], "'--format' requires"),
    ("detector-bad-param", ["run", "--detector", "msp(t=0)"], "t must be a positive number"),
    ("attack-empty-value", ["run", "--attack", "fgsm(eps=)"], "fgsm(eps=)"),
    ("attack-unbalanced", ["run", "--attack", "fgsm(eps=1/255"], "unbalanced parentheses"),
    ("attack-div-zero", ["run", "--attack", "fgsm(eps=1/0)"], "division by zero"),
    ("detector-unknown", ["run", "--detector", "mps"], "did you mean 'msp'"),
    ("attack-unknown", ["run", "--attack", "gausian_noise"], "did you mean 'gaussian_noise'"),
    ("dataset-unknown", ["run", "--dataset", "cifar11"], "cifar11"),
    ("ood-unknown", ["run", "--ood", "svhm"], "svhm"),
    ("model-unknown", ["run", "--model", "resnet21"], "resnet21"),
    ("attack-unknown-param", ["run", "--attack", "fgsm(epsilon=0.1)"], "no parameter 'epsilon'"),
    ("severity-range", ["run", "--attack", "gaussian_noise(severity=7)"], "1..5"),
    ("severity-and-param", ["run", "--attack", "gaussian_noise(severity=2, sigma=0.1)"],
     "either severity or sigma"),
    ("zhou-lam", ["run", "--detector", "zhou(lam=-1)"], "lam"),
    ("ae-epochs", ["run", "--detector", "ae(epochs=0)"], "epochs"),
    ("pgd-steps", ["run", "--attack", "pgd(steps=0)"], "steps"),
    ("fgsm-eps", ["run", "--attack", "fgsm(eps=-0.1)"], "eps"),
    ("noise-sigma", ["run", "--attack", "gaussian_noise(sigma=-1)"], "sigma"),
    ("device", ["run", "--device", "tpu"], "unknown device"),
    ("data-root-missing", ["run", "--dataset", "cifar10", "--data-root", "/nonexistent/dir"],
     "/nonexistent/dir"),
    ("npz-missing", ["run", "--ood", "npz:/nonexistent/file.npz"], "/nonexistent/file.npz"),
    ("plugin-missing", ["run", "--plugin", "missing.py"], "missing.py"),
    ("list-plugin-missing", ["list", "--plugin", "missing.py"], "missing.py"),
    ("list-unknown-kind", ["list", "widgets"], "unknown kind 'widgets'"),
    ("leaderboard-missing-folder", ["leaderboard", "/nonexistent/results"], "does not exist"),
    ("leaderboard-empty-folder", ["leaderboard", "{tmp}"], "no results in"),
    ("leaderboard-format", ["leaderboard", "{tmp}", "--format", "pdf"], "unknown format 'pdf'"),
    ("leaderboard-metric", ["leaderboard", "{tmp}", "--metric", "aurco"],
     "did you mean `--metric auroc`"),
    ("seeds-text", ["run", "--seeds", "0,x"], "comma-separated integers"),
    pytest.param("seeds-empty-entry", ["run", "--seeds", "0,,1"], "empty entry"),
    pytest.param("seeds-negative", ["run", "--seeds", "-1"], "out of range"),
    pytest.param("seeds-huge", ["run", "--seeds", "99999999999999999999"], "out of range"),
    pytest.param("seeds-duplicate", ["run", "--seeds", "0,0"], "given twice"),
    pytest.param("seed-negative", ["run", "--seed", "-1"], "-1"),
    pytest.param("out-under-a-file", ["run", "--out", "{tmp}/afile/results"], "afile"),
    ("ood-attack-not-adaptive", ["run", "--ood", "gaussian", "--ood-attack", "fgsm"],
     "only attacks aimed at the detector"),
    ("ood-attack-without-ood", ["run", "--ood-attack", "adaptive_pgd"], "give them with --ood"),
    ("attack-adaptive-side", ["run", "--attack", "adaptive_pgd(side='both')"],
     "side= applies to --ood-attack"),
    ("adaptive-objective", ["run", "--attack", "adaptive_pgd(objective='cw')"], "objective"),
    ("adaptive-restarts-no-start", ["run", "--attack",
                                    "adaptive_pgd(restarts=3, random_start=False)"], "restarts"),
    ("adaptive-n", ["run", "--attack", "adaptive_pgd(n=0)"], "n"),
    ("leaderboard-out-under-a-file", ["leaderboard", "{tmp}", "--out", "{tmp}/afile/b.html"],
     "afile"),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli_errors_home")


def _run(args: list[str], tmp: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENCH_HOME": str(home), "BENCH_DATA": str(home / "data"),
           "COLUMNS": "100"}
    env.pop("BENCH_PLUGINS", None)
    # cheap runs: anything that gets past validation trains only the digits CNN (cached in home)
    if args and args[0] == "run":
        if "--detector" not in args:
            args = [*args, "--detector", "msp"]
        if "--attack" not in args:
            args = [*args, "--attack", "brightness"]
        if "--out" not in args:
            args = [*args, "--out", str(tmp / "results")]
    return subprocess.run([str(BENCH), *[a.replace("{tmp}", str(tmp)) for a in args]],
                          capture_output=True, text=True, cwd=tmp, env=env, timeout=300)


@pytest.mark.parametrize("case, args, phrase", CASES,
                         ids=[c.values[0] if hasattr(c, "values") else c[0] for c in CASES])
def test_bad_command_line(tmp_path, home, case, args, phrase):
    (tmp_path / "afile").write_text("not a folder")
    res = _run(args, tmp_path, home)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("bench: error: ")
    assert phrase in lines[0]


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30


def test_a_good_command_line_still_works(tmp_path, home):
    # the control: the same helper with valid arguments exits 0 and writes a record
    res = _run(["run"], tmp_path, home)
    assert res.returncode == 0, res.stderr[-2000:]
    recs = [json.loads(p.read_text()) for p in (tmp_path / "results").rglob("*.json")]
    # the shift cell and the detector's clean cell
    assert sorted(r["shift"]["group"] for r in recs) == ["clean", "corruption"]
    assert all(r["status"] == "ok" for r in recs)


@pytest.mark.parametrize("text, want", [("0", [0]), ("0,1,2", [0, 1, 2]), (" 5 , 3 ", [5, 3]),
                                        ("4294967295", [2**32 - 1])])
def test_parse_seeds_accepts(text, want):
    from bench.cli import parse_seeds

    assert parse_seeds(text) == want


@pytest.mark.parametrize("text, phrase", [
    ("0,,1", "empty entry"), ("0,", "empty entry"), ("", "empty"), (",", "empty"),
    ("-1", "out of range"), ("4294967296", "out of range"),
    ("99999999999999999999", "out of range"), ("0,0", "given twice"), ("1,2,1", "given twice"),
    ("1.5", "comma-separated integers"), ("x", "comma-separated integers"),
])
def test_parse_seeds_rejects(text, phrase):
    from bench.cli import parse_seeds
    from bench.errors import BenchError

    with pytest.raises(BenchError, match=phrase) as exc:
        parse_seeds(text)
    assert "\n" not in str(exc.value)
