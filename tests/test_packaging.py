"""The wheel installs one top-level package, `bench`: no `attacks` or `datasets` in site-packages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

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


def test_documented_commands_are_valid_bash():
    """Every ``bench ...`` line in a bash/sh block of the READMEs and docs parses in bash as is
    (``--attack jpeg(severity=1..5)`` unquoted is a bash syntax error)."""
    import re
    import shutil
    import subprocess

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    repo = Path(__file__).resolve().parents[1]
    files = [repo / "README.md", *sorted((repo / "docs").glob("*.md")),
             *sorted((repo / "examples").rglob("README.md"))]
    checked = 0
    for f in files:
        for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", f.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if not line.lstrip().startswith("bench "):
                    continue
                res = subprocess.run([bash, "-n", "-c", line], capture_output=True, text=True)
                assert res.returncode == 0, f"{f.name}: {line!r}: {res.stderr.strip()}"
                checked += 1
    assert checked >= 5
