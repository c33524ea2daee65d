"""Shared fixtures: an isolated BENCH_HOME, the shared development data, a prepared CIFAR root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Two cores, two xdist workers: one torch thread each (more threads only fight over the cores),
# also in the `bench` subprocesses the tests start.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHIFTBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def bench_home(tmp_path_factory) -> Path:
    """Every test session gets its own cache (models, fitted detectors, views)."""
    home = tmp_path_factory.mktemp("bench_home")
    old = os.environ.get("BENCH_HOME")
    os.environ["BENCH_HOME"] = str(home)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    yield home
    if old is None:
        os.environ.pop("BENCH_HOME", None)
    else:
        os.environ["BENCH_HOME"] = old


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (read-only)."""
    if not (SHARED_DATA / "MANIFEST.md").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"shared data not found at {SHARED_DATA}")
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cifar_root(shared_data, tmp_path_factory) -> Path:
    """A complete data root made by ``prepare_cifar10.py`` (cifar-10-batches-py + links), once."""
    root = tmp_path_factory.mktemp("cifar_root")
    subprocess.run([sys.executable, str(shared_data / "prepare_cifar10.py"), "--out", str(root)],
                   check=True, capture_output=True)
    return root
