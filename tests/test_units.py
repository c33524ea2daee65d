"""Units of work: a plain function of explicit arguments; cached shifted sets; code-versioned
cells; claims that keep concurrent runs from computing a cell twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from bench import claims
from bench.context import build_context, load_id_data
from bench.fit import fit_detectors
from bench.plan import Paths, RunConfig, make_plan
from bench.runner import run
from bench.units import plan_cells, run_unit, shift_unit

BENCH = Path(sys.executable).with_name("bench")


def paths_for(tmp_path: Path) -> Paths:
    return Paths(home=tmp_path / "home", data_root=tmp_path / "data", out=tmp_path / "out",
                 cwd=tmp_path)


def test_unit_is_a_function_of_plain_arguments(tmp_path):
    """Plan, context and fit built by hand; run_unit called directly writes a correct record."""
    paths = paths_for(tmp_path)
    plan = make_plan(RunConfig(detectors=["msp"], shifts=["gaussian_noise"], device="cpu"),
                     paths, plugins=[])
    data = load_id_data(plan, paths)
    ctx, views = build_context(plan, paths, data)
    fitted = fit_detectors([("msp", 0)], ctx, views, home=paths.home, refit=False)
    unit = shift_unit("gaussian_noise(severity=3)", 0, ("msp",), paths.data_root)
    res = run_unit(unit, ctx=ctx, fitted=fitted, paths=paths, force=False, command="test")
    (rec, path), = res.written
    assert path.is_file() and json.loads(path.read_text())["cell_id"] == rec["cell_id"]
    assert rec["status"] == "ok" and rec["shift"]["spec"] == "gaussian_noise(severity=3)"

    # independent recomputation: the same noise drawn with the seed, logits by the model, MSP
    g = torch.Generator().manual_seed(0)
    x = ctx.test_images.float() / 255
    noisy = (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    with torch.no_grad():
        z_in = ctx.model(x).double()
        z_out = ctx.model(noisy).double()
    msp_in = torch.softmax(z_in, 1).max(1).values.numpy()
    msp_out = torch.softmax(z_out, 1).max(1).values.numpy()
    y = np.r_[np.ones(len(msp_in)), np.zeros(len(msp_out))]
    assert rec["metrics"]["auroc"] == pytest.approx(roc_auc_score(y, np.r_[msp_in, msp_out]),
                                                    abs=1e-6)

    # a second call finds the cell done and computes nothing
    again = run_unit(unit, ctx=ctx, fitted=fitted, paths=paths, force=False, command="test")
    assert not again.written and [r["cell_id"] for r in again.previous] == [rec["cell_id"]]


def test_adding_detectors_computes_no_shift_and_no_forward_pass(tmp_path, monkeypatch):
    """A finished mahalanobis x (fgsm, pgd) run; adding msp,energy reuses the attacked sets."""
    import bench.attacks.fgsm as fgsm_mod
    import bench.attacks.pgd as pgd_mod
    import bench.views as views_mod

    home = tmp_path / "home"
    first = run(RunConfig(detectors=["mahalanobis"], shifts=["fgsm", "pgd"], device="cpu",
                          out=tmp_path / "r", home=home))
    attacked = [r for r in first.records if r["shift"]["group"] == "attack"]
    assert [r["cache"]["shift_views"] for r in attacked] == [False, False]
    assert all(r["timings"]["shift"] > 0 for r in attacked)

    passes, attacks = [], []
    orig_views = views_mod.compute_views
    monkeypatch.setattr(views_mod, "compute_views",
                        lambda model, images, **kw: passes.append(kw["name"])
                        or orig_views(model, images, **kw))
    for mod, cls_name in ((fgsm_mod, "FGSM"), (pgd_mod, "PGD")):
        cls = getattr(mod, cls_name)
        orig_apply = cls.apply
        monkeypatch.setattr(cls, "apply", lambda self, *a, _o=orig_apply, **k:
                            attacks.append(self.name) or _o(self, *a, **k))
    second = run(RunConfig(detectors=["mahalanobis", "msp", "energy"], shifts=["fgsm", "pgd"],
                           device="cpu", out=tmp_path / "r", home=home))
    assert attacks == []
    assert [p for p in passes if p not in ("fit", "test")] == []  # ID views come from the cache too
    # mahalanobis' three cells were done; msp and energy get their clean and attack cells
    assert second.skipped == 3 and len(second.records) == 6
    attacked = [r for r in second.records if r["shift"]["group"] == "attack"]
    assert len(attacked) == 4 and all(r["cache"]["shift_views"] and r["timings"]["shift"] == 0.0
                                      for r in attacked)
    assert second.shift_views_cached == 2


def test_edited_detector_source_recomputes_its_records(tmp_path):
    """Records carry the code that made them: after an edit, resume recomputes (and says so)."""
    plugin = tmp_path / "maxlogit.py"
    src = ('from bench.detectors.base import DETECTORS, Detector\n\n'
           '@DETECTORS.register("maxlogit")\n'
           'class MaxLogit(Detector):\n'
           '    """Largest logit."""\n'
           '    def score(self, views):\n'
           '        return self.logits64(views).max(1).values\n')
    plugin.write_text(src)
    env = {**os.environ, "BENCH_HOME": str(tmp_path / "home")}
    cmd = [str(BENCH), "run", "--detector", "maxlogit,msp", "--attack", "gaussian_noise",
           "--plugin", str(plugin), "--out", str(tmp_path / "r")]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr
    files = sorted((tmp_path / "r").rglob("*.json"))
    old = {p.name: json.loads(p.read_text()) for p in files}
    assert len(old) == 4  # 2 detectors x (gaussian_noise + the clean cell)

    same = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert "0 record(s) written" in same.stderr and "4 cell(s) already done" in same.stderr

    plugin.write_text(src + "# a comment: the source changed\n")
    edited = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert edited.returncode == 0, edited.stderr
    assert "2 record(s) written" in edited.stderr  # maxlogit's two cells, not msp's
    assert "2 cell(s) recomputed" in edited.stderr
    new = {p.name: json.loads(p.read_text()) for p in sorted((tmp_path / "r").rglob("*.json"))}
    assert set(new) == set(old)  # the maxlogit record was replaced in place, msp kept
    ml = next(n for n in new if n.startswith("maxlogit__gaussian"))
    assert new[ml]["cell_id"] != old[ml]["cell_id"]
    assert new[ml]["code"]["detector"] != old[ml]["code"]["detector"]
    assert new[ml]["metrics"] == old[ml]["metrics"]  # a comment changes no number
    msp = next(n for n in new if n.startswith("msp__gaussian"))
    assert new[msp]["created"] == old[msp]["created"]


def test_two_runs_into_one_folder_compute_every_cell_once(tmp_path):
    env = {**os.environ, "BENCH_HOME": str(tmp_path / "home")}
    # the classifier and ID views first, so both runs reach the cells at the same time
    warm = subprocess.run([str(BENCH), "run", "--detector", "msp", "--attack", "brightness",
                           "--out", str(tmp_path / "warm")], capture_output=True, text=True,
                          env=env, timeout=600)
    assert warm.returncode == 0, warm.stderr
    cmd = [str(BENCH), "run", "--detector", "msp,energy,mahalanobis",
           "--attack", "fgsm,pgd,gaussian_noise,salt_pepper,contrast,pixel_dropout",
           "--seeds", "0,1", "--json", "--out", str(tmp_path / "r")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    written = [int(o[1].split(" record(s) written")[0].split()[-1]) for o in outs]
    n_cells = 3 * (6 + 1) * 2  # detectors x (shifts + the clean cell) x seeds
    assert sum(written) == n_cells, written  # each cell computed by exactly one run
    files = list((tmp_path / "r").rglob("*.json"))
    assert len(files) == n_cells
    assert not list((tmp_path / "r").rglob(".*.lock"))
    # both runs report every cell, with the same numbers
    tables = [{(r["detector"]["spec"], r["shift"]["spec"], r["seed"]): r["metrics"].get("auroc")
               for r in map(json.loads, o[0].splitlines())} for o in outs]
    assert tables[0] == tables[1] and len(tables[0]) == n_cells


def test_claims_exclude_live_runs_and_take_over_dead_ones(tmp_path):
    record = tmp_path / "cell.json"
    mine = claims.claim(record)
    assert mine is not None and claims.lock_path(record).is_file()
    assert claims.claim(record) is None  # held by a live process (this one)
    mine.release()
    assert not claims.lock_path(record).exists()

    # a claim by a process that has exited is stale and taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    info = {"host": os.uname().nodename, "pid": int(dead), "pid_start": 0.0, "time": time.time(),
            "token": "other"}
    claims.lock_path(record).write_text(json.dumps(info))
    taken = claims.claim(record)
    assert taken is not None
    assert json.loads(claims.lock_path(record).read_text())["pid"] == os.getpid()
    taken.release()

    # this pid, but a claim made before this process started: the pid was reused
    info = {"host": os.uname().nodename, "pid": os.getpid(),
            "pid_start": claims.process_start(os.getpid()) - 1000.0, "time": 0.0, "token": "x"}
    claims.lock_path(record).write_text(json.dumps(info))
    assert claims.is_stale(info)
    assert claims.claim(record) is not None


def test_release_own_removes_this_process_claims_only(tmp_path):
    """An interrupted run gives back its own claims; another live run's stay."""
    import socket

    mine = claims.claim(tmp_path / "a" / "x.json")
    assert mine is not None
    theirs = claims.lock_path(tmp_path / "a" / "y.json")
    theirs.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid(),
                                  "pid_start": claims.process_start(os.getppid()),
                                  "time": 0.0, "token": "t"}))
    assert claims.release_own(tmp_path) == 1
    assert not mine.path.exists() and theirs.exists()


def test_plan_cells_sees_older_records_of_the_same_cell(tmp_path):
    paths = paths_for(tmp_path)
    plan = make_plan(RunConfig(detectors=["energy"], shifts=["contrast"], device="cpu"), paths,
                     plugins=[])
    ctx, views = build_context(plan, paths, load_id_data(plan, paths))
    unit = shift_unit("contrast", 0, ("energy",), paths.data_root)
    fitted = fit_detectors([("energy", 0)], ctx, views, home=paths.home, refit=False)
    (rec, path), = run_unit(unit, ctx=ctx, fitted=fitted, paths=paths).written
    (cell,) = plan_cells(ctx, unit, force=False, command="")
    assert cell.state == "done"
    # the same cell written by other code under another file name (older naming)
    stale = dict(rec, cell_id="0" * 64)
    other = path.with_name(path.name.replace(rec["cell_key"][:12], "abcdef012345"))
    other.write_text(json.dumps(stale))
    path.unlink()
    (cell,) = plan_cells(ctx, unit, force=False, command="")
    assert cell.state == "todo" and cell.outdated == (other,)
    res = run_unit(unit, ctx=ctx, fitted=fitted, paths=paths)
    assert res.outdated == 1 and not other.exists() and path.is_file()
