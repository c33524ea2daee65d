"""Executors: the same matrix on a real local Ray instance writes the same records as locally."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(sys.executable).with_name("bench")


def records(folder: Path) -> dict[tuple, dict]:
    out = {}
    for p in folder.rglob("*.json"):
        r = json.loads(p.read_text())
        out[(r["detector"]["spec"], r["shift"]["spec"], r["seed"])] = (p.name, r)
    return out


@pytest.mark.slow
def test_local_and_ray_write_the_same_records(tmp_path):
    pytest.importorskip("ray")
    # attacks aimed at each detector run as one unit per detector: on Ray too
    matrix = ["run", "--detector", "all", "--attack", "all,adaptive_pgd(n=40,steps=3)",
              "--ood", "gaussian", "--ood-attack", "adaptive_pgd(n=30,steps=3)",
              "--seeds", "0,1", "--device", "cpu"]
    local_home, ray_home = tmp_path / "home_local", tmp_path / "home_ray"
    local = subprocess.run([str(BENCH), *matrix, "--out", str(tmp_path / "local")],
                           capture_output=True, text=True, timeout=900,
                           env={**os.environ, "BENCH_HOME": str(local_home), "OMP_NUM_THREADS": "1"})
    assert local.returncode == 0, local.stderr
    # the trained classifier and fitted detectors are shared (fitting runs on the driver either
    # way); the shifted sets and their views are not: Ray's workers compute them again
    for kind in ("models", "detectors"):
        shutil.copytree(local_home / kind, ray_home / kind)
    ray_run = subprocess.run([str(BENCH), *matrix, "--executor", "ray", "--threads-per-worker", "1",
                              "--out", str(tmp_path / "ray")], capture_output=True, text=True,
                             timeout=900, env={**os.environ, "BENCH_HOME": str(ray_home)})
    assert ray_run.returncode == 0, ray_run.stderr
    a, b = records(tmp_path / "local"), records(tmp_path / "ray")
    # 6 detectors x (9 built-in shifts + adaptive_pgd + the clean cell + gaussian and
    # gaussian+adaptive_pgd) x 2 seeds
    assert set(a) == set(b) and len(a) == 6 * 13 * 2
    for key in a:
        (name_a, ra), (name_b, rb) = a[key], b[key]
        assert name_a == name_b and ra["cell_id"] == rb["cell_id"], key
        assert ra["status"] == rb["status"] == "ok", (key, ra["error"], rb["error"])
        # one torch thread per unit on both sides: bit-identical numbers
        assert ra["metrics"] == rb["metrics"], key
        assert ra["metrics_ci"] == rb["metrics_ci"], key
        assert ra["classifier"] == rb["classifier"], key
        assert ra["failure"] == rb["failure"] and ra["deployment"] == rb["deployment"], key
        assert ra.get("adaptive") == rb.get("adaptive"), key
        if rb["shift"]["group"] != "clean":
            assert rb["cache"]["shift_views"] is False  # computed by a Ray worker
    assert "units (ray)" not in ray_run.stdout  # progress goes to stderr only


def test_ray_missing_is_one_line_exit_2(tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "ray.py").write_text("raise ImportError('no ray here')\n")
    env = {**os.environ, "PYTHONPATH": str(fake)}
    res = subprocess.run([str(BENCH), "run", "--detector", "msp", "--executor", "ray",
                          "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 2
    assert res.stderr.strip() == ("bench: error: --executor ray needs Ray: "
                                  "pip install 'shiftbench[ray]'")
    assert not (tmp_path / "r").exists()  # refused before any work


@pytest.mark.parametrize("args, message", [
    (["--executor", "slurm"], "unknown executor 'slurm'"),
    (["--ray-address", "127.0.0.1:6379"], "--ray-address needs --executor ray"),
])
def test_executor_usage_errors(tmp_path, args, message):
    res = subprocess.run([str(BENCH), "run", "--detector", "msp", *args, "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_ray_tasks_ask_for_a_gpu_only_when_the_run_computes_on_cuda():
    from bench.executors import RayExecutor

    ex = RayExecutor(threads=2)
    assert ex.task_resources() == {"num_cpus": 2}
    assert ex.task_resources(gpus=0) == {"num_cpus": 2}
    assert ex.task_resources(gpus=1) == {"num_cpus": 2, "num_gpus": 1}
