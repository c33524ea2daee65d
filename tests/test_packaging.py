"""The wheel installs one top-level package, `bench`: no `attacks` or `datasets` in site-packages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_has_only_the_bench_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    wheel, = tmp_path.glob("shiftbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"bench"}
    for sub in ("attacks", "detectors", "datasets", "leaderboard", "models"):
        assert f"bench/{sub}/__init__.py" in names
    assert "bench/attacks/fgsm.py" in names and "bench/detectors/zhou.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "bench = bench.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
