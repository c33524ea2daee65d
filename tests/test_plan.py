"""The plan stage: paths resolved at the edge, specs validated before work, seeds that mean
what they say (--seeds for shifts and detectors, --model-seed, --split-seed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from bench.errors import BenchError
from bench.plan import MAX_SEED, Paths, RunConfig, make_plan
from bench.runner import run

BENCH = Path(sys.executable).with_name("bench")


def paths_for(tmp_path: Path) -> Paths:
    return Paths(home=tmp_path / "home", data_root=tmp_path / "data", out=tmp_path / "out",
                 cwd=tmp_path)


def test_paths_resolve_at_the_edge(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "d"))
    monkeypatch.chdir(tmp_path)
    p = Paths.resolve(out="rel/results")
    assert (p.home, p.data_root, p.out, p.cwd) == (tmp_path / "h", tmp_path / "d",
                                                   tmp_path / "rel" / "results", tmp_path)
    monkeypatch.delenv("BENCH_DATA")
    assert Paths.resolve().data_root == tmp_path / "h" / "data"
    # arguments win over the environment
    assert Paths.resolve(home=tmp_path / "x", data_root="dd").data_root == tmp_path / "dd"


def test_plan_expands_and_validates_specs(tmp_path):
    plan = make_plan(RunConfig(detectors=["msp,zhou(epochs=2)"], device="cpu",
                               shifts=["gaussian_noise(severity=1..2)", "contrast"],
                               severities=[1, 5]), paths_for(tmp_path), plugins=[])
    assert plan.detectors == ("msp", "zhou(epochs=2)")
    assert plan.shifts == ("gaussian_noise(severity=1)", "gaussian_noise(severity=2)",
                           "contrast(severity=1)", "contrast(severity=5)")
    assert plan.model == "cnn"  # declared by the digits dataset class
    assert "features" in plan.needs and not plan.keep_images
    with pytest.raises(BenchError, match="seed comes from --seeds"):
        make_plan(RunConfig(detectors=["zhou(seed=3)"]), paths_for(tmp_path), plugins=[])


@pytest.mark.parametrize("kw, message", [
    ({"seeds": [-1]}, "out of range"),
    ({"seeds": [MAX_SEED + 1]}, "out of range"),
    ({"seeds": [0, 0]}, "lists a seed twice"),
    ({"seeds": []}, "no seeds"),
    ({"model_seed": -2}, "--model-seed"),
    ({"split_seed": 2**40}, "--split-seed"),
    ({"batch_size": 0}, "--batch-size"),
])
def test_bad_options_fail_in_the_plan(tmp_path, kw, message):
    with pytest.raises(BenchError, match=message):
        make_plan(RunConfig(detectors=["msp"], **kw), paths_for(tmp_path), plugins=[])


def test_ood_all_asks_each_dataset_class(tmp_path, shared_data):
    root = tmp_path / "root"
    (root / "ood").mkdir(parents=True)
    (root / "MNIST").mkdir()
    (root / "MNIST" / "raw").symlink_to(shared_data / "MNIST" / "raw")
    for name in ("tinyimagenet_val_resize32.npz", "dtd_subset10_resize32.npz"):
        (root / "ood" / name).symlink_to(shared_data / "ood" / name)
    paths = Paths(home=tmp_path / "home", data_root=root, out=tmp_path / "o", cwd=tmp_path)
    plan = make_plan(RunConfig(dataset="cifar10", detectors=["msp"], shifts=[], ood=["all"]),
                     paths, plugins=[])
    tin, dtd = root / "ood" / "tinyimagenet_val_resize32.npz", root / "ood" / "dtd_subset10_resize32.npz"
    assert set(plan.ood) == {"gaussian", "uniform", "mnist", f"npz:{dtd}",
                             f"npz:{tin}(exclude=cifar10_overlap)"}
    assert plan.model == "resnet20"


def test_split_and_model_seeds_are_recorded_and_change_what_they_should(tmp_path):
    home = tmp_path / "home"
    base = dict(detectors=["msp"], shifts=["contrast"], device="cpu", home=home)
    a = run(RunConfig(**base, out=tmp_path / "a")).records[-1]
    b = run(RunConfig(**base, split_seed=1, out=tmp_path / "b")).records[-1]
    c = run(RunConfig(**base, model_seed=1, out=tmp_path / "c")).records[-1]
    d = run(RunConfig(**base, seeds=[1], out=tmp_path / "d")).records[-1]
    assert (a["dataset"]["split_seed"], b["dataset"]["split_seed"]) == (0, 1)
    assert (a["model"]["train_seed"], c["model"]["train_seed"], d["model"]["train_seed"]) == (0, 1, 0)
    # --split-seed: the val images are another stratified draw (sklearn, independently)
    from bench.datasets.base import LoadContext, load_set
    _, test = load_set("digits", "test", LoadContext(data_root=tmp_path))
    labels = test.labels.numpy()
    n_val = round(0.1 * len(labels))
    val0 = np.sort(train_test_split(np.arange(len(labels)), test_size=n_val, stratify=labels,
                                    random_state=0)[1])
    val1 = np.sort(train_test_split(np.arange(len(labels)), test_size=n_val, stratify=labels,
                                    random_state=1)[1])
    assert not np.array_equal(val0, val1)
    assert b["dataset"]["n_val"] == a["dataset"]["n_val"] == n_val
    assert a["metrics"] != b["metrics"]
    # same classifier and data: the clean accuracy differs only through the scored images
    assert a["model"]["weights_sha256"] == b["model"]["weights_sha256"] == d["model"]["weights_sha256"]
    # --model-seed trains another classifier; --seeds does not
    assert c["model"]["weights_sha256"] != a["model"]["weights_sha256"]


def test_output_locations_are_checked_before_any_work(tmp_path):
    """A results folder or BENCH_HOME that is a file: one line, exit 2, nothing trained."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    env = {**os.environ, "BENCH_HOME": str(tmp_path / "home")}
    res = subprocess.run([str(BENCH), "run", "--detector", "msp", "--out", str(blocker / "r")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("bench: error: results folder") and "is a file" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "home" / "models").exists()  # no classifier was trained
    env = {**os.environ, "BENCH_HOME": str(blocker)}
    res = subprocess.run([str(BENCH), "run", "--detector", "msp", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2 and "cache folder (BENCH_HOME)" in res.stderr
    assert not (tmp_path / "r").exists()


def test_records_folder_that_is_a_file_fails_before_fitting(tmp_path):
    """The per-model records folder is named after the classifier; a file there is reported
    once the model is known, before any detector is fitted or any shift computed."""
    out = tmp_path / "r"
    out.mkdir()
    first = run(RunConfig(detectors=["msp"], shifts=["contrast"], device="cpu", out=out,
                          home=tmp_path / "home"))
    folder = first.out_dir
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    folder.write_text("in the way")
    with pytest.raises(BenchError, match="is a file"):
        run(RunConfig(detectors=["zhou"], shifts=["contrast"], device="cpu", out=out,
                      home=tmp_path / "home"))
    assert not (tmp_path / "home" / "detectors").exists()  # zhou was never fitted
