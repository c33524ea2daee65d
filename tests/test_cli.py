"""`bench` end to end on the embedded default (digits + cnn), and every usage error -> exit 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.metrics import roc_auc_score

from bench.cli import main

BENCH = [sys.executable, "-m", "bench.cli"]


def bench(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=600)


def records(folder: Path, clean: bool = False) -> list[dict]:
    """The records under ``folder``; the clean cells (failure detection only) when asked."""
    recs = [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))]
    return [r for r in recs if clean or r["shift"]["group"] != "clean"]


def test_run_msp_fgsm_writes_records_and_table(tmp_path):
    res = bench("run", "--detector", "msp", "--attack", "fgsm", "--out", str(tmp_path / "r"))
    assert res.returncode == 0, res.stderr
    assert "AUROC" in res.stdout and "fgsm" in res.stdout  # the results table
    assert "clean accuracy" in res.stderr
    recs = records(tmp_path / "r")
    assert len(recs) == 1
    (clean,) = [r for r in records(tmp_path / "r", clean=True) if r["shift"]["spec"] == "clean"]
    assert clean["detector"]["name"] == "msp" and clean["failure"]["n"] == 809
    rec = recs[0]
    assert rec["status"] == "ok" and rec["detector"]["name"] == "msp"
    # severity 3 = 4 quantisation steps; the digits' pixels have 17 levels, a step of 16/255
    assert rec["shift"]["params"]["eps"] == pytest.approx(4 * 16 / 255)
    assert rec["shift"]["params"]["pixel_step"] == pytest.approx(16 / 255)
    assert rec["n_in"] == rec["n_out"] == rec["dataset"]["n_test"]
    # 1,797 digits -> 899 test half -> val = round(0.1 * 899) = 90 -> 809 scored
    assert rec["dataset"]["n_test"] == 809 and rec["dataset"]["n_val"] == 90
    for m in ("auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_oodpos", "detect95"):
        assert 0.0 <= rec["metrics"][m] <= 1.0
    assert rec["model"]["clean_acc"] > 0.9
    assert 0 < rec["classifier"]["attack_success"] <= 1
    assert rec["classifier"]["acc"] < rec["model"]["clean_acc"]  # FGSM hurts
    assert len(rec["model"]["weights_sha256"]) == 64

    # the board's format follows the --out file's extension unless --format says otherwise
    for name, start in (("b.html", "<!DOCTYPE html>"), ("b.md", "# shiftbench leaderboard"),
                        ("b.csv", "dataset,")):
        res = bench("leaderboard", str(tmp_path / "r"), "--out", str(tmp_path / name))
        assert res.returncode == 0, res.stderr
        assert (tmp_path / name).read_text().startswith(start), name
    res = bench("leaderboard", str(tmp_path / "r"), "--format", "md", "--out",
                str(tmp_path / "forced.html"))
    assert (tmp_path / "forced.html").read_text().startswith("# shiftbench leaderboard")


def test_json_output_and_metrics_match_independent_computation(tmp_path):
    """msp on the uniform-noise OOD set: AUROC equals sklearn on numpy softmax of the model's logits."""
    from bench.datasets.base import LoadContext, load_set, split_val_test
    from bench.models import load_classifier

    res = bench("run", "--detector", "msp", "--attack", "", "--ood", "uniform", "--json",
                "--out", str(tmp_path / "r"))
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    assert sorted(r["shift"]["name"] for r in lines) == ["clean", "uniform"]
    lines = [r for r in lines if r["shift"]["name"] == "uniform"]
    rec = lines[0]

    ctx = LoadContext(data_root=Path("."), seed=0, id_shape=(1, 8, 8), n_id_test=809)
    _, train = load_set("digits", "train", ctx)
    _, test = load_set("digits", "test", ctx)
    _, test_idx = split_val_test(test.labels)
    _, noise = load_set("uniform", "test", ctx)
    model, _ = load_classifier("cnn", num_classes=10, in_channels=1, image_size=8, dataset="digits",
                               train_set=train)
    with torch.no_grad():
        z_in = model(test.images[test_idx].float() / 255).double().numpy()
        z_out = model(noise.images.float() / 255).double().numpy()
    s = np.concatenate([softmax(z_in, 1).max(1), softmax(z_out, 1).max(1)])
    y = np.r_[np.ones(len(z_in)), np.zeros(len(z_out))]
    assert rec["metrics"]["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert rec["n_out"] == 809


def test_resume_runs_only_missing_cells(tmp_path):
    out = tmp_path / "r"
    args = ["run", "--detector", "msp,energy", "--attack", "gaussian_noise,contrast", "--out", str(out)]
    assert bench(*args).returncode == 0
    files = sorted(out.rglob("*.json"))
    assert len(files) == 6  # 2 detectors x (2 shifts + the clean cell)
    files[0].unlink()  # as if the run had been interrupted before this cell
    before = {p: p.stat().st_mtime_ns for p in files[1:]}
    res = bench(*args)
    assert res.returncode == 0
    assert "5 cell(s) already done" in res.stderr
    assert files[0].is_file()
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    res = bench(*args, "--force")
    assert "already done" not in res.stderr


@pytest.mark.parametrize("args, message", [
    (["--detector", "mps"], "did you mean 'msp'"),
    (["--attack", "fgsm(eps=1/255"], "unbalanced parentheses"),
    (["--attack", "gaussian_noise(severity=7)"], "severity must be an integer 1..5"),
    (["--attack", "gaussian_noise(severity=2, sigma=0.1)"], "either severity or sigma"),
    (["--attack", "fgsm(epsilon=0.1)"], "has no parameter 'epsilon'"),
    (["--dataset", "cifar10", "--data-root", "/nonexistent/dir"], "/nonexistent/dir"),
    (["--ood", "npz:/nonexistent/file.npz"], "/nonexistent/file.npz"),
    (["--seeds", "0,x"], "comma-separated integers"),
    (["--device", "tpu"], "unknown device"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, args, message):
    res = bench("run", *args, "--out", str(tmp_path))
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("bench: error:")
    assert len(res.stderr.strip().splitlines()) == 1


def test_empty_ood_set_exits_2(tmp_path):
    f = tmp_path / "empty.npz"
    np.savez(f, images=np.zeros((0, 8, 8), np.uint8))
    res = bench("run", "--detector", "msp", "--attack", "", "--ood", f"npz:{f}", "--out",
                str(tmp_path / "r"))
    assert res.returncode == 2 and "empty" in res.stderr and "Traceback" not in res.stderr


def test_checkpoint_mismatch_exits_2(tmp_path, shared_data, cifar_root):
    res = bench("run", "--dataset", "cifar10", "--data-root", str(cifar_root), "--model", "resnet20",
                "--weights", str(shared_data / "weights/akamaster/resnet32-d509ac18.th"),
                "--detector", "msp", "--attack", "fgsm", "--out", str(tmp_path))
    assert res.returncode == 2, res.stderr
    assert "missing" in res.stderr or "unexpected" in res.stderr
    assert "Traceback" not in res.stderr


def test_help_explains_every_option_with_example():
    for cmd in (["run"], ["list"], ["leaderboard"], ["train"]):
        res = bench(*cmd, "--help", env={"COLUMNS": "200", "NO_COLOR": "1"})
        assert res.returncode == 0
        # one block per option in rich's box: "│ --name ... help text (wrapped lines)"
        blocks = re.split(r"\n│ (?=--|\* --)", res.stdout)[1:]
        names = [b.split()[0] if b.startswith("--") else b.split()[1] for b in blocks]
        assert len(names) >= 2, res.stdout
        lacking = [n for n, b in zip(names, blocks)
                   if "Example" not in b and n not in ("--help", "--install-completion",
                                                       "--show-completion")]
        assert lacking == [], f"bench {cmd[0]} --help: no example for {lacking}"
    res = bench("run", "--help")
    for opt in ("--detector", "--attack", "--ood", "--dataset", "--model", "--weights", "--data-root",
                "--seed", "--device", "--batch-size", "--out", "--json"):
        assert opt in res.stdout


def test_list_shows_components_with_parameters():
    res = bench("list")
    assert res.returncode == 0, res.stderr
    for name in ("fgsm", "pgd", "gaussian_noise", "mix", "msp", "energy", "mahalanobis", "digits",
                 "cifar10", "npz:ARG", "resnet20", "cnn"):
        assert name in res.stdout
    assert "eps" in res.stdout


def test_failing_plugin_cell_is_recorded_and_exit_1(tmp_path):
    plugin = tmp_path / "nan_detector.py"
    plugin.write_text(
        "import torch\n"
        "from bench.detectors.base import Detector, DETECTORS\n\n"
        "@DETECTORS.register('nan_det')\n"
        "class NanDetector(Detector):\n"
        "    '''Returns NaN for every image (a broken plugin).'''\n"
        "    def score(self, views):\n"
        "        return torch.full((len(views),), float('nan'))\n")
    res = bench("run", "--detector", "nan_det,msp", "--attack", "fgsm", "--plugin", str(plugin),
                "--out", str(tmp_path / "r"))
    assert res.returncode == 1, res.stderr
    assert "non-finite" in res.stderr
    recs = {r["detector"]["name"]: r for r in records(tmp_path / "r")}
    assert recs["nan_det"]["status"] == "failed" and "non-finite" in recs["nan_det"]["error"]
    assert recs["msp"]["status"] == "ok"
    assert recs["nan_det"]["detector"]["dist"] == f"file {plugin}"
    assert recs["msp"]["detector"]["dist"] is None  # built-in


def test_main_returns_2_in_process(capsys):
    assert main(["run", "--detector", "nope"]) == 2
    assert "unknown detector 'nope'" in capsys.readouterr().err


def test_ctrl_c_then_rerun_completes_only_missing_cells(tmp_path):
    """SIGINT mid-run leaves only whole records; the same command then does the rest."""
    import signal
    import time

    out = tmp_path / "r"
    args = [*BENCH, "run", "--detector", "msp,energy", "--attack",
            "gaussian_noise,contrast,brightness,salt_pepper,pixel_dropout,fgsm,pgd,mix",
            "--seeds", "0,1,2", "--out", str(out)]
    # a shell that started us in the background may have left SIGINT ignored, and a child
    # inherits that; restore the default so Python turns the signal into KeyboardInterrupt
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and len(list(out.rglob("*.json"))) < 4:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    done = sorted(out.rglob("*.json"))
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert 4 <= len(done) < 54, len(done)  # 2 detectors x (8 shifts + clean) x 3 seeds
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix != ".json"]  # no temp files
    for p in done:
        json.loads(p.read_text())  # every file on disk is a whole record
    res = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert f"{54 - len(done)} record(s) written" in res.stderr.replace("\n", " ")
    assert f"{len(done)} cell(s) already done" in res.stderr.replace("\n", " ")


def test_train_then_run_with_the_checkpoint(tmp_path):
    """`bench train` writes a checkpoint that `bench run --weights` loads and records by sha256."""
    import hashlib

    ckpt = tmp_path / "cnn-digits.pt"
    res = bench("train", "--model", "cnn", "--dataset", "digits", "--epochs", "60", "--no-flip",
                "--device", "cpu", "--out", str(ckpt))
    assert res.returncode == 0, res.stderr
    assert ckpt.is_file()
    res = bench("run", "--model", "cnn", "--weights", str(ckpt), "--detector", "msp",
                "--attack", "contrast", "--out", str(tmp_path / "r"))
    assert res.returncode == 0, res.stderr
    rec, = records(tmp_path / "r")
    assert rec["model"]["weights_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert rec["model"]["clean_acc"] > 0.8  # trained, not a random model (chance is 0.1)
