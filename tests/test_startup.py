"""`bench --help`, `bench list` and spec validation never load torch, scipy or scikit-learn.

They answer in well under a second because nothing heavy is imported on their path
(``bench._lazy``); ``benchmarks/cli_startup.py`` measures the times. This test checks the
cause, not a time: each command runs in a fresh interpreter and reports which heavy modules
were imported by the time it exited.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "scipy", "sklearn", "pandas", "PIL", "matplotlib",
         "albumentations", "cv2", "torchattacks", "pytorch_ood", "ray")

PROBE = r"""
import json, os, sys
sys.argv = ["bench"] + json.loads(os.environ["PROBE_ARGS"])
code = 0
try:
    from bench.cli import main
    code = main() or 0
except SystemExit as exc:
    code = exc.code or 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(os.environ["PROBE_HEAVY"])))
print("PROBE " + json.dumps({"code": code, "heavy": heavy}), file=sys.__stderr__)
"""

CASES = [
    (["--help"], 0),
    (["run", "--help"], 0),
    (["list"], 0),
    (["list", "detectors"], 0),
    (["run", "--detector", "msq"], 2),
    (["run", "--attack", "fgsm(epsilon=1)"], 2),
    (["run", "--detector", "msp(t=0)"], 2),
    (["run", "--detector", "zhou(lam=-1)"], 2),
    (["run", "--detector", "ae(device=tpu)"], 2),
    (["run", "--attack", "adaptive_pgd(objective=cw)"], 2),
    (["run", "--ood", "svhm"], 2),
    (["run", "--dataset", "cifar11"], 2),
    (["run", "--model", "resnet21"], 2),
]


@pytest.mark.parametrize("args, code", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_fast_paths_import_nothing_heavy(args, code, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "BENCH_HOME": str(tmp_path), "HOME": str(tmp_path),
           "COLUMNS": "120", "PROBE_ARGS": json.dumps(args), "PROBE_HEAVY": json.dumps(HEAVY)}
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, env=env)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("PROBE ")][-1]
    report = json.loads(line.removeprefix("PROBE "))
    assert report["code"] == code, proc.stderr[-2000:]
    assert report["heavy"] == [], f"{args} imported {report['heavy']}"
