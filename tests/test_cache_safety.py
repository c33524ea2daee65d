"""Caches are data, never code: plain entries only, read with weights_only=True, unsafe = rebuilt.

The crafted entries below hold an object whose unpickling runs ``touch MARKER`` (os.system):
with ``weights_only=False`` loading them creates the marker (checked, so the payload is known to
work); bench must refuse them before anything runs, warn once per file and rebuild the entry.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from bench import cache
from bench.detectors.base import Detector
from bench.errors import BenchError


class Payload:
    """Unpickling this runs ``touch MARKER`` (the pickle names os.system, not this class)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def craft(path: Path, marker: Path, **fields: Any) -> None:
    """Overwrite ``path`` with a torch.save'd dict of ``fields`` plus the payload under
    ``'value'`` (a cache entry's layout) or, when ``fields`` has it, under ``'state_dict'``."""
    slot = "state_dict" if "state_dict" in fields else "value"
    cache.save(path, {**fields, slot: Payload(marker)})


# --- plain data -----------------------------------------------------------------------------
def test_plain_entries_roundtrip_with_weights_only(tmp_path):
    net = nn.Linear(3, 2)
    value = {"net": net.state_dict(), "params": net.state_dict(keep_vars=True),
             "dims": [3, 2], "mu": (0.5, -1.0), "name": "x", "none": None, "flag": True,
             "by_int": {0: torch.arange(3)}}
    path = tmp_path / "e.pt"
    cache.store(path, "k", value)
    back = cache.load(path, "k")
    assert back["dims"] == [3, 2] and back["mu"] == (0.5, -1.0)
    assert back["by_int"][0].tolist() == [0, 1, 2] and back["none"] is None and back["flag"]
    assert torch.equal(back["net"]["weight"], net.weight.detach())
    assert cache.load(path, "other key") is None


@pytest.mark.parametrize("value, where, type_name", [
    ({"bank": np.zeros(3)}, "['bank']", "numpy.ndarray"),
    ({"mu": [1.0, np.float64(2.0)]}, "['mu'][1]", "numpy.float64"),   # a float subclass
    ({"net": nn.Linear(1, 1)}, "['net']", "torch.nn.modules.linear.Linear"),
    ({(1, 2): 3.0}, " key (1, 2)", "tuple"),
])
def test_store_refuses_what_weights_only_cannot_load(tmp_path, value, where, type_name):
    path = tmp_path / "e.pt"
    with pytest.raises(BenchError) as err:
        cache.store(path, "k", value)
    assert str(err.value).startswith(f"cache entry e.pt{where} is of type {type_name}: ")
    assert "\n" not in str(err.value)
    assert not path.exists()


def test_detector_state_that_is_not_plain_names_the_detector_and_key():
    class KNNLike(Detector):
        name = "knn_like"
        cacheable = True

        def state(self) -> dict[str, Any]:
            return {"k": 5, "bank_": np.zeros((4, 2))}

    class Child(KNNLike):
        def state(self) -> dict[str, Any]:
            return super().state()

    for cls in (KNNLike, Child):
        with pytest.raises(BenchError, match=r"^detector 'knn_like': state\(\)\['bank_'\] is of "
                                             r"type numpy\.ndarray: cache entries hold only"):
            cls().state()


# --- unsafe entries are cache misses --------------------------------------------------------
def test_crafted_entry_is_refused_warned_about_once_and_never_run(tmp_path, caplog):
    marker = tmp_path / "MARKER"
    path = tmp_path / "views" / "test-0123.pt"
    path.parent.mkdir()
    craft(path, marker, key="k")
    control = tmp_path / "control.pt"
    craft(control, tmp_path / "CONTROL")
    torch.load(control, weights_only=False)
    assert (tmp_path / "CONTROL").exists()        # the payload does run when unpickled freely

    with caplog.at_level(logging.WARNING, logger="bench.cache"):
        assert cache.load(path, "k") is None
    assert not marker.exists()
    warnings = [r.getMessage() for r in caplog.records if r.name == "bench.cache"]
    assert len(warnings) == 1 and str(path) in warnings[0] and "\n" not in warnings[0]

    cache.store(path, "k", {"logits": torch.zeros(2, 3)})   # what the runner does next
    assert torch.equal(cache.load(path, "k")["logits"], torch.zeros(2, 3))
    assert not marker.exists()


# --- the installed CLI against crafted views, detectors and model -------------------------------
def _bench(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("bench")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "bench.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=600)


def _metrics(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    recs = [json.loads(p.read_text()) for p in sorted(out.glob("*/*.json"))]
    assert recs and all(r["status"] == "ok" for r in recs)
    return {(r["detector"]["spec"], r["shift"]["spec"]): r["metrics"] for r in recs}


def test_bench_run_rebuilds_crafted_cache_entries_without_running_them(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "BENCH_HOME": str(home), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    args = ["run", "--detector", "zhou,mahalanobis", "--attack", "gaussian_noise"]
    first = _bench(*args, "--out", "clean", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    entries = sorted([*(home / "views").glob("*.pt"), *(home / "detectors").glob("*.pt")])
    models = sorted((home / "models").glob("*.pt"))
    assert {p.parent.name for p in entries} == {"views", "detectors"} and len(models) == 1
    keys = {p: cache.read_safe(p)["key"] for p in entries}

    marker = tmp_path / "MARKER"
    for p in entries:
        craft(p, marker, key=keys[p])
    model_fields = dict(cache.read_safe(models[0]))
    craft(models[0], marker, **model_fields)

    second = _bench(*args, "--out", "again", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert not marker.exists()
    for p in [*entries, *models]:      # one warning line per crafted file
        lines = [ln for ln in second.stderr.splitlines() if str(p) in ln]
        assert len(lines) == 1 and "WARNING" in lines[0], second.stderr
    for p in entries:                  # valid entries again, under the same key
        assert cache.load(p, keys[p]) is not None
        assert cache.find_unplain(cache.read_safe(p)) is None
    assert cache.read_safe(models[0])["state_dict"].keys() == model_fields["state_dict"].keys()
    assert "loaded from cache" not in second.stdout + second.stderr
    assert _metrics(tmp_path / "again") == _metrics(tmp_path / "clean")
    assert not marker.exists()
