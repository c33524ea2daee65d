"""Stage 4 of a run: units of work, each a plain function of explicit, picklable arguments.

A unit is one shifted set (a shift of the ID test images for one seed, or one OOD set) and the
detector cells that score it. :func:`run_unit` computes the shifted set's views (or reads them
from the cache), scores every pending cell with the already fitted detectors and writes one
record per cell atomically. It prints nothing, reads no environment variable and changes no
process-wide setting, so the same call runs in this process or on a Ray worker.

Cells are named by their identity (dataset, model, detector, shift, seed) and carry a
``cell_id`` that also covers the code that produced them: a record made by older code is
recomputed. A cell is claimed with a lock file beside its record while it is computed, so two
runs into one results folder never compute it twice (see :mod:`bench.claims`).
"""

from __future__ import annotations

import base64
import io
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

import bench
from bench import cache, claims, progress
from bench.context import Context
from bench.errors import BenchError
from bench.fit import Fitted, checked_scores, make_detector
from bench.plan import Paths, slug
from bench.registry import DATASETS, DETECTORS, SHIFTS, parse_spec
from bench.results import SCHEMA, SCHEMA_VERSION, read_record, write_record
from bench.datasets._stream import first_images
from bench.views import (Views, cached_views, files_base, forward_views, load_views,
                         store_views, to_float01, views_entry)

log = logging.getLogger(__name__)

#: bootstrap resamples for the per-cell 95 % interval
N_BOOT = 200
#: scores kept per side for histograms
N_PLOT_SCORES = 1000
#: an in-memory OOD set of a streamed run above this many bytes of pixels gets a warning
IN_MEMORY_WARN_BYTES = 1 << 30
#: names how streamed sets draw random numbers (attacks/_common.KeyedRng) in their cache keys:
#: change it with the derivation, or cached shifted views would outlive it
KEYED_RNG = "keyed-blake2b-v1"


@dataclass(frozen=True)
class OodSet:
    """An OOD set loaded and resized to the ID format, with the records' shift block."""

    meta: dict[str, Any]
    images: Any             # (N, C, H, W) uint8 tensor, or FileImages (decoded per batch)
    load_s: float


@dataclass(frozen=True)
class Unit:
    """One shifted set and the detectors to score on it."""

    kind: str                       # "clean", "shift" (of the ID test images) or "ood"
    spec: str
    seed: int
    detectors: tuple[str, ...]
    meta: dict[str, Any]            # the records' shift block
    ood: OodSet | None = None
    #: an OOD unit's attack aimed at the detector (``--ood-attack``); None: the set as loaded
    attack: str | None = None

    @property
    def label(self) -> str:
        return f"{self.meta['name'] if self.kind == 'ood' else self.spec} (seed {self.seed})"

    @property
    def adaptive(self) -> bool:
        """One attacked set per detector: an ``--ood-attack`` or a shift aimed at the detector."""
        if self.attack is not None:
            return True
        return self.kind == "shift" and SHIFTS.get(parse_spec(self.spec).name).needs_detector

    def only(self, detectors: tuple[str, ...]) -> "Unit":
        """The same shifted set with only these detector cells."""
        return replace(self, detectors=tuple(detectors))


@dataclass
class UnitResult:
    """What a unit did: records written (with paths), records found done, cells left to others."""

    unit: Unit
    written: list[tuple[dict[str, Any], Path]] = field(default_factory=list)
    previous: list[dict[str, Any]] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)      # detector specs claimed by another run
    outdated: int = 0                                   # records of older code recomputed
    shift_cached: bool | None = None                    # views of the shifted set from the cache


# ------------------------------------------------------------------------------------------
# units and their cells
# ------------------------------------------------------------------------------------------
#: the records' shift block of the clean cells (failure detection on the unshifted test set)
CLEAN = {"name": "clean", "spec": "clean", "params": {}, "dist": None, "group": "clean",
         "severity": None, "proximity": None, "sha256": None, "code": None}


def clean_unit(seed: int, detectors: tuple[str, ...]) -> Unit:
    """The clean ID test set itself: one cell per detector with its failure detection only."""
    return Unit("clean", "clean", seed, detectors, dict(CLEAN))


def shift_unit(spec: str, seed: int, detectors: tuple[str, ...], data_root: Path,
               pixel_step: float = 1 / 255) -> Unit:
    shift = SHIFTS.create(spec, data_root=data_root, pixel_step=pixel_step)
    meta = {"name": shift.name, "spec": shift.spec(), "params": shift.get_params(),
            "dist": SHIFTS.dist_of(shift.name), "group": shift.group,
            "severity": getattr(shift, "severity", None), "proximity": None, "sha256": None,
            "code": cache.source_hash(type(shift))}
    return Unit("shift", spec, seed, detectors, meta)


def ood_unit(ood: OodSet, seed: int, detectors: tuple[str, ...]) -> Unit:
    return Unit("ood", ood.meta["spec"], seed, detectors, ood.meta, ood)


def attacked_ood_unit(ood: OodSet, attack_spec: str, seed: int, detectors: tuple[str, ...],
                      data_root: Path, pixel_step: float = 1 / 255) -> Unit:
    """An OOD set attacked per detector (``--ood-attack``): named ``<set>+<attack spec>``, its
    parameters and code those of the set and of the attack."""
    attack = SHIFTS.create(attack_spec, data_root=data_root, pixel_step=pixel_step)
    spec = attack.spec()
    meta = {**ood.meta, "name": f"{ood.meta['name']}+{spec}", "spec": f"{ood.meta['spec']}+{spec}",
            "params": {**ood.meta["params"], "attack": {"spec": spec, **attack.get_params()}},
            "code": cache.config_hash([ood.meta["code"], cache.source_hash(type(attack))])}
    return Unit("ood", meta["spec"], seed, detectors, meta, ood, attack=spec)


def load_ood(spec: str, seed: int, paths: Paths, *, id_shape: tuple[int, int, int],
             n_id_test: int, download: bool, jpeg: int | None, preprocess: Any = None) -> OodSet:
    """OOD set ``spec`` resized to the ID format ``id_shape`` (and JPEG-encoded if asked), with
    its meta. Generated sets (gaussian, uniform) draw ``n_id_test`` images with ``seed``.
    File-based sets (``imagefolder:``) stay files, read with the ID run's ``preprocess``."""
    from bench.datasets.base import LoadContext, load_set, resize_to

    t = time.perf_counter()
    octx = LoadContext(data_root=paths.data_root, download=download, seed=seed,
                       id_shape=id_shape, n_id_test=n_id_test, cwd=paths.cwd,
                       preprocess=preprocess)
    ds, oset = load_set(spec, "test", octx)
    if oset.streams:
        if jpeg is not None:
            raise BenchError(f"--ood-jpeg re-encodes images held in memory; {spec} is read from "
                             f"files batch by batch: drop --ood-jpeg")
        if tuple(oset.shape) != tuple(id_shape):
            raise BenchError(f"{spec}: its preprocessing gives {oset.shape} images, the ID set "
                             f"{id_shape}: drop its resize=/crop= or match them")
        imgs, sha = oset.images, oset.images.digest()
    else:
        n_bytes = len(oset) * int(np.prod(id_shape))   # uint8 pixels at the ID format
        if preprocess is not None and n_bytes > IN_MEMORY_WARN_BYTES:
            log.warning("%s is held in memory: %d images at %s take %.1f GB as uint8; a folder "
                        "passed as --ood imagefolder:DIR is read batch by batch instead", spec,
                        len(oset), "x".join(map(str, id_shape)), n_bytes / 1e9)
        imgs = resize_to(oset.images, id_shape)
        if jpeg is not None:
            imgs = jpeg_encode(imgs, jpeg)
        sha = tensor_sha256(imgs)
    name = parse_spec(spec).name
    meta = {"name": (oset.name or name) + ("" if jpeg is None else f"+jpeg{jpeg}"),
            "spec": spec if jpeg is None else f"{spec}+jpeg{jpeg}",
            "params": {**ds.get_params(), "jpeg_quality": jpeg},
            "group": "ood", "severity": None, "proximity": ds.proximity,
            "sha256": sha, "dist": DATASETS.dist_of(name), "n": int(imgs.shape[0]),
            "code": cache.source_hash(type(ds))}
    return OodSet(meta, imgs, time.perf_counter() - t)


@dataclass(frozen=True)
class CellPlan:
    detector: str
    record: dict[str, Any]        # the record skeleton (identity, cell_id, config blocks)
    path: Path
    state: str                    # "done", "todo"
    previous: dict[str, Any] | None = None
    outdated: tuple[Path, ...] = ()   # records of the same cell made by other code or inputs


def plan_cells(ctx: Context, unit: Unit, *, force: bool, command: str) -> list[CellPlan]:
    """Each detector cell of ``unit``: its record skeleton and whether it is done already."""
    out = []
    for spec in unit.detectors:
        det = make_detector(spec, unit.seed, ctx.device)
        rec = cell_record(ctx, unit, det, command)
        path = record_path(ctx.out_dir, rec)
        same = _same_cell_records(ctx.out_dir, rec)
        done = next((r for p, r in same if not force and r["cell_id"] == rec["cell_id"]
                     and r["status"] == "ok"), None)
        if done is not None:
            out.append(CellPlan(spec, rec, path, "done", previous=done))
        else:
            outdated = tuple(p for p, r in same if r["status"] == "ok"
                             and r["cell_id"] != rec["cell_id"])
            out.append(CellPlan(spec, rec, path, "todo", outdated=outdated))
    return out


def cell_record(ctx: Context, unit: Unit, det: Any, command: str) -> dict[str, Any]:
    """A record skeleton: config blocks, the cell's identity and its code-versioned ``cell_id``."""
    det_meta = {"name": det.name, "spec": det.spec(), "params": det.get_params(),
                "dist": DETECTORS.dist_of(det.name)}
    shift_meta = {k: v for k, v in unit.meta.items() if k != "code"}
    identity = {"schema_version": SCHEMA_VERSION, "dataset": ctx.dataset["sha256"],
                "dataset_spec": ctx.dataset["spec"],
                "model": {k: v for k, v in ctx.model_key.items() if k != "code"},
                "detector": det_meta["spec"], "detector_params": det_meta["params"],
                "shift": shift_meta["spec"], "shift_params": shift_meta["params"],
                "shift_sha256": shift_meta.get("sha256"), "seed": unit.seed,
                "split_seed": ctx.dataset["split_seed"]}
    code = {"shiftbench": bench.__version__, "detector": cache.source_hash(type(det)),
            "shift": unit.meta["code"], "model": ctx.model_key["code"]}
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
            "cell_key": cache.config_hash(identity),
            "cell_id": cache.config_hash({**identity, "code": code}),
            "status": "ok", "error": None, "created": None, "command": command,
            "seed": unit.seed, "dataset": ctx.dataset, "model": ctx.model_meta,
            "detector": det_meta, "shift": shift_meta, "code": code, "n_in": None,
            "n_out": None, "metrics": {}, "metrics_ci": {}, "classifier": {}, "failure": None,
            "deployment": None, "plots": {},
            "examples": {}, "timings": {}, "cache": {}, "environment": ctx.env}


def record_path(out_dir: Path, rec: dict[str, Any]) -> Path:
    return out_dir / (f"{_cell_prefix(rec)}{rec['cell_key'][:12]}.json")


def _cell_prefix(rec: dict[str, Any]) -> str:
    return (f"{slug(rec['detector']['spec'], 50)}__{slug(rec['shift']['spec'], 70)}"
            f"__seed{rec['seed']}__")


def _same_cell_records(out_dir: Path, rec: dict[str, Any]) -> list[tuple[Path, dict[str, Any]]]:
    """Readable records in ``out_dir`` of the same (detector, shift, seed), whatever code made
    them (file names end in a hash of the cell's identity; older versions hashed other fields)."""
    if not out_dir.is_dir():
        return []
    found = []
    for p in sorted(out_dir.glob(f"{_cell_prefix(rec)}*.json")):
        try:
            old = read_record(p)
        except BenchError:
            continue
        if "cell_key" in old:
            same = old["cell_key"] == rec["cell_key"]
        else:  # records from before cell keys: their split was always METHODS.md's
            same = (old["detector"].get("spec") == rec["detector"]["spec"]
                    and old["shift"].get("spec") == rec["shift"]["spec"]
                    and old["seed"] == rec["seed"]
                    and old["dataset"].get("spec") == rec["dataset"]["spec"]
                    and rec["dataset"]["split_seed"] == 0)
        if same:
            found.append((p, old))
    return found


# ------------------------------------------------------------------------------------------
# the unit of work
# ------------------------------------------------------------------------------------------
def run_unit(unit: Unit, *, ctx: Context, fitted: dict[tuple[str, int], Fitted], paths: Paths,
             force: bool = False, command: str = "") -> UnitResult:
    """Compute every pending cell of ``unit``; write its records; say what was done.

    ``fitted`` maps (detector spec, seed) to the fitted detector; ``paths`` gives the cache
    (``paths.home``) and the data root; records go to ``ctx.out_dir``. Cells already done are
    read back, cells another live run has claimed are left to it (``busy``)."""
    result = UnitResult(unit)
    todo: list[tuple[CellPlan, claims.Claim]] = []
    try:
        for cell in plan_cells(ctx, unit, force=force, command=command):
            if cell.state == "done":
                result.previous.append(cell.previous)
                continue
            claim = claims.claim(cell.path)
            if claim is None:
                result.busy.append(cell.detector)
                continue
            if not force:  # another run may have finished it between the check and the claim
                again = plan_cells(ctx, unit.only((cell.detector,)), force=False, command=command)
                if again[0].state == "done":
                    claim.release()
                    result.previous.append(again[0].previous)
                    continue
            todo.append((cell, claim))
        if todo:
            _compute(ctx, unit, todo, fitted, paths, result)
    finally:
        for _, claim in todo:
            claim.release()
    return result


def _compute(ctx: Context, unit: Unit, todo: list[tuple[CellPlan, Any]],
             fitted: dict[tuple[str, int], Fitted], paths: Paths, result: UnitResult) -> None:
    try:
        shifted = _shifted_views(ctx, unit, paths, fitted)
    except BenchError as exc:
        shifted = exc
    except Exception as exc:  # a broken shift fails its cells, never the run
        log.debug("%s failed", unit.spec, exc_info=True)
        shifted = BenchError(f"{type(exc).__name__}: {exc}")
    for cell, _ in todo:
        rec = dict(cell.record)
        rec["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        f = fitted.get((cell.detector, unit.seed))
        if isinstance(shifted, BenchError):
            rec["status"], rec["error"] = "failed", str(shifted)
        elif f is None:
            rec["status"], rec["error"] = "failed", "detector was not fitted (internal error)"
        else:
            _score_cell(ctx, rec, f, shifted)
        write_record(rec, cell.path)
        for old in cell.outdated:
            if old != cell.path:
                old.unlink(missing_ok=True)
        result.outdated += len(cell.outdated)
        result.written.append((rec, cell.path))
    if not isinstance(shifted, BenchError):
        result.shift_cached = shifted.cached


@dataclass
class Shifted:
    """A shifted set as the cells see it."""

    views: Views | None          # None for the clean set (its scores come with the detector)
    classifier: dict[str, Any]
    keep: Tensor | None          # successful_only: the images both sides are restricted to
    correct: Tensor | None       # (n,) bool: the classifier is right on these images (ID side)
    shift_png: str | None
    timings: dict[str, float]
    cached: bool | None          # views from the cache (None: no views of its own)
    #: adaptive cells: the ID side's scores and correctness when not the fitted detector's
    #: whole-test-set ones (a subset, or attacked ID images), and the honesty-check inputs
    s_in: Tensor | None = None
    c_in: Tensor | None = None
    adaptive: dict[str, Any] | None = None


def _shifted_views(ctx: Context, unit: Unit, paths: Paths,
                   fitted: dict[tuple[str, int], Fitted]) -> Shifted:
    from bench.attacks.base import attack_success
    from bench.metrics import classifier_metrics

    if unit.adaptive:
        from bench.adaptive import evade_views, ood_views

        return (ood_views if unit.kind == "ood" else evade_views)(ctx, unit, paths, fitted)
    views_dir = cache.cache_dir("views", paths.home)
    if unit.kind == "clean":
        return Shifted(None, {**ctx.clean, "attack_success": None}, None,
                       ctx.clean_pred == ctx.test_labels, png_grid(first_images(ctx.test_images)),
                       {"views": ctx.views_s, "shift": 0.0}, None)
    if unit.kind == "ood":
        ood = unit.ood
        v, cached = cached_views(
            ctx.model, ood.images, name=f"ood-{slug(unit.meta['name'], 30)}",
            key={"ood": unit.meta["sha256"]}, model_key=ctx.model_key, cache_dir=views_dir,
            on_disk=ctx.streams, **ctx.view_opts())
        v.images = ood.images if ctx.keep_images else None
        v.model = ctx.model
        return Shifted(v, {"acc": None, "ece": None, "attack_success": None}, None, None,
                       png_grid(first_images(ood.images)),
                       {"views": ctx.views_s, "shift": ood.load_s}, cached)

    # the shifted set is named by what produces it: a cache hit runs no shift, no forward pass
    shift = SHIFTS.create(unit.spec, data_root=paths.data_root,
                          pixel_step=ctx.dataset["pixel_step"])
    name = f"{unit.spec}-seed{unit.seed}"
    key = {"shift": unit.meta["spec"], "params": unit.meta["params"], "seed": unit.seed,
           "code": unit.meta["code"], "data": ctx.dataset["sha256"]["test"],
           "split": ["METHODS-1", ctx.dataset["split_seed"]]}
    if ctx.streams:  # shifted batch by batch with draws keyed by (seed, image index)
        key["rng"] = KEYED_RNG
    path, full_key = views_entry(views_dir, name, key, ctx.model_key)
    hit = load_views(path, full_key, name, len(ctx.test_labels))
    # an entry stored by a run whose detectors needed no pixels cannot serve one that does
    cached = hit is not None and (not ctx.keep_images or hit[1].get("images") is not None)
    if cached:
        v, extra = hit
    elif ctx.streams:
        t = time.perf_counter()
        v, png, _ = stream_shift(ctx, shift, unit.seed, name, out=files_base(path))
        extra = {"shift_s": time.perf_counter() - t, "png": png, "images": None}
        store_views(path, full_key, v, extra, on_disk=True)
    elif shift.batchable:  # one batch of float images at a time; the same images and views
        t = time.perf_counter()
        v, png, xs = stream_shift(ctx, shift, unit.seed, name, keep_images=ctx.keep_images)
        extra = {"shift_s": time.perf_counter() - t, "png": png, "images": xs}
        store_views(path, full_key, v, extra)
    else:
        g = torch.Generator().manual_seed(unit.seed)  # a fresh generator per shift (METHODS.md §5)
        t = time.perf_counter()
        with progress.task(f"shift: {unit.spec}", None):
            xs = shift(to_float01(ctx.test_images).to(ctx.device), ctx.test_labels.to(ctx.device),
                       model=ctx.model if shift.needs_model else None, generator=g,
                       index=ctx.test_index).detach().cpu()
        extra = {"shift_s": time.perf_counter() - t, "png": png_grid(xs),
                 "images": xs if ctx.keep_images else None}
        v = forward_views(ctx.model, xs, name=name, **ctx.view_opts())
        store_views(path, full_key, v, extra)
    y = ctx.test_labels
    v.labels, v.index, v.model = y, ctx.test_index, ctx.model
    v.images = extra.get("images") if ctx.keep_images else None
    pred = v.logits.argmax(1)
    cls = classifier_metrics(v.logits, y)
    cls["attack_success"] = (attack_success(y, ctx.clean_pred, pred) if shift.needs_model
                             else None)
    keep = ((ctx.clean_pred == y) & (pred != y)) if shift.successful_only else None
    timings = {"views": ctx.views_s, "shift": 0.0 if cached else extra["shift_s"]}
    return Shifted(v, cls, keep, pred == y, extra.get("png"), timings, cached)


def shifted_batches(ctx: Context, shift: Any, seed: int) -> Iterator[tuple[slice, Tensor]]:
    """``(rows, shifted float images on the device)`` of the ID test images, read and shifted
    batch by batch. Random draws of streamed sets are keyed by (seed, image index)
    (:class:`KeyedRng`), so the images do not depend on ``--batch-size``, ``--workers`` or the
    device; in-memory sets come here only for ``batchable`` shifts, which draw nothing (they
    get the whole-set generator of METHODS.md §5 all the same)."""
    from bench.attacks._common import KeyedRng
    from bench.datasets._stream import image_batches

    dev = torch.device(ctx.device)
    whole_set = None if ctx.streams else torch.Generator().manual_seed(seed)
    for start, batch in image_batches(ctx.test_images, ctx.batch_size, workers=ctx.workers,
                                      pin_memory=dev.type == "cuda"):
        rows = slice(start, start + batch.shape[0])
        index = ctx.test_index[rows]
        x = to_float01(batch.to(dev, non_blocking=True))
        yield rows, shift(x, ctx.test_labels[rows].to(dev),
                          model=ctx.model if shift.needs_model else None,
                          generator=KeyedRng(seed, index) if whole_set is None else whole_set,
                          index=index).detach()


def stream_shift(ctx: Context, shift: Any, seed: int, name: str, out: Path | None = None,
                 keep_images: bool = False) -> tuple[Views, str | None, Tensor | None]:
    """Views of the shifted ID test images (:func:`shifted_batches`), one batch in memory:
    written to float32 files at ``out`` (:class:`~bench.views.ViewFiles`), else float64 in
    memory. Returns the views, the example grid and, with ``keep_images``, the shifted images."""
    from bench.views import forward_context, view_sink

    n = len(ctx.test_labels)
    sink, png, images = view_sink(n, out), None, []
    with progress.task(f"shift + features: {name}", n) as bar:
        for rows, xs in shifted_batches(ctx, shift, seed):
            if png is None:
                png = png_grid(xs.cpu())
            with torch.no_grad(), forward_context(ctx.device, ctx.precision):
                z, f = ctx.model.forward_features(xs)
            sink.write(rows.start, z, f)
            if keep_images:
                images.append(xs.cpu())
            bar.advance(xs.shape[0])
    z_all, f_all = sink.finish(ctx.model.num_classes)
    return (Views(name=name, logits=z_all, features=f_all), png,
            torch.cat(images) if keep_images else None)


def _score_cell(ctx: Context, rec: dict[str, Any], f: Fitted, shifted: Shifted) -> None:
    from bench.metrics import (BOOTSTRAPPED, bootstrap_cis, detector_metrics, failure_metrics,
                               rc_points, roc_points, small_set)

    rec["classifier"] = shifted.classifier
    rec["timings"] = {**shifted.timings, "fit": f.fit_s}
    rec["cache"] = {"shift_views": shifted.cached, "detector": f.from_cache}
    if f.error is not None:
        rec["status"], rec["error"] = "failed", f.error
        return
    det = f.detector
    try:
        t = time.perf_counter()
        g = torch.Generator().manual_seed(rec["seed"])
        c_in = (ctx.clean_pred == ctx.test_labels).numpy()
        si = f.s_in.numpy()
        if shifted.views is None:  # the clean cell: failure detection of the scored test set
            pick = _sample_index(len(si), g)
            rec["n_in"] = int(len(si))
            rec["failure"] = failure_metrics(si, c_in)
            cov, risk = rc_points(si, c_in)
            rec["plots"] = {"scores_in": _floats(si[pick]), "correct_in": _bools(c_in[pick]),
                            "rc_coverage": cov, "rc_risk": risk}
            rec["examples"] = {"shift_png": shifted.shift_png, "detector_png": None}
            rec["timings"]["score"] = time.perf_counter() - t
            rec["timings"]["total"] = sum(v for v in rec["timings"].values() if v)
            return
        so, sv = checked_scores(det, shifted.views).numpy(), f.s_val.numpy()
        c_out = shifted.correct.numpy() if shifted.correct is not None else None
        if shifted.s_in is not None:  # adaptive: a subset, or attacked ID images
            si, c_in = shifted.s_in.numpy(), shifted.c_in.numpy()
        if shifted.keep is not None:  # successful_only: both sides restricted (METHODS.md §2)
            keep = shifted.keep.numpy()
            si, so, c_in = si[keep], so[keep], c_in[keep]
            c_out = c_out[keep] if c_out is not None else None
        if len(so) == 0 or len(si) == 0:
            raise BenchError("empty set: no images left to score "
                             "(successful_only with no successful attack?)")
        rec["metrics"] = detector_metrics(si, so, sv, None if c_out is None else ~c_out)
        if shifted.adaptive is not None:
            from bench.adaptive import adaptive_block

            rec["adaptive"] = adaptive_block(shifted.adaptive, si, so, sv,
                                             rec["metrics"]["auroc"])
        # a shift of the ID test images scores the same images on both sides: resample pairs
        paired = shifted.correct is not None
        cis = bootstrap_cis(si, so, BOOTSTRAPPED, n_boot=N_BOOT, seed=rec["seed"], paired=paired)
        rec["metrics_ci"] = {m: list(cis[m]) for m in BOOTSTRAPPED}
        rec["n_in"], rec["n_out"] = int(len(si)), int(len(so))
        rec["small_set"] = small_set(len(si), len(so))
        fpr, tpr = roc_points(si, so)
        pick_in, pick_out = _sample_index(len(si), g), _sample_index(len(so), g)
        rec["plots"] = {"scores_in": _floats(si[pick_in]), "scores_out": _floats(so[pick_out]),
                        "roc_fpr": [float(v) for v in fpr], "roc_tpr": [float(v) for v in tpr],
                        "correct_in": _bools(c_in[pick_in])}
        if shifted.adaptive is not None and "s_before" in shifted.adaptive:
            rec["plots"]["scores_before"] = _floats(shifted.adaptive["s_before"].numpy()[pick_out])
        if c_out is not None:  # an ID-side shift: does the score flag the classifier's errors?
            rec["failure"] = failure_metrics(so, c_out)
            cov, risk = rc_points(so, c_out)
            rec["plots"].update(correct_out=_bools(c_out[pick_out]), rc_coverage=cov,
                                rc_risk=risk)
            # deployment: clean and shifted images in one pool, equal parts
            pool = failure_metrics(np.r_[si, so], np.r_[c_in, c_out])
            rec["deployment"] = {"auroc_shifted": rec["metrics"]["auroc"], **pool}
        images = shifted.views.images
        rec["examples"] = {"shift_png": shifted.shift_png,
                           "detector_png": (png_grid(det.reconstruct(images[:8]))
                                            if det.reconstructs and images is not None else None)}
        rec["timings"]["score"] = time.perf_counter() - t
        rec["timings"]["total"] = sum(v for v in rec["timings"].values() if v)
    except BenchError as exc:
        rec["status"], rec["error"], rec["metrics"] = "failed", str(exc), {}
    except Exception as exc:
        log.debug("cell failed", exc_info=True)
        rec["status"], rec["error"], rec["metrics"] = "failed", f"{type(exc).__name__}: {exc}", {}


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def png_grid(images: Tensor | None, n: int = 8) -> str | None:
    """base64 PNG of the first ``n`` images in one row (uint8 or float in [0,1])."""
    if images is None or images.shape[0] == 0:
        return None
    from PIL import Image

    x = images[:n]
    if x.dtype != torch.uint8:
        x = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    x = x.cpu()
    c, h, w = x.shape[1:]
    row = x.permute(0, 2, 3, 1).reshape(-1, h, w, c)  # (n, H, W, C)
    row = torch.cat(list(row), dim=1).numpy()          # (H, n*W, C)
    img = Image.fromarray(row[..., 0] if c == 1 else row)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def jpeg_encode(images: Tensor, quality: int) -> Tensor:
    """JPEG-encode uint8 (N,C,H,W) images like the ID copy (4:2:0 chroma), decode back."""
    from PIL import Image

    out = torch.empty_like(images)
    arr = images.permute(0, 2, 3, 1).numpy()
    for i in range(arr.shape[0]):  # PIL encodes one image at a time
        im = Image.fromarray(arr[i, ..., 0] if arr.shape[-1] == 1 else arr[i])
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality, subsampling=2)
        buf.seek(0)
        dec = np.array(Image.open(buf).convert("L" if arr.shape[-1] == 1 else "RGB"))
        out[i] = torch.from_numpy(dec.reshape(arr.shape[1:])).permute(2, 0, 1)
    return out


def tensor_sha256(t: Tensor) -> str:
    """sha256 of a CPU tensor's bytes (uint8 images, int64 positions): names its content."""
    import hashlib

    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def _sample_index(n: int, g: torch.Generator) -> np.ndarray:
    """Positions of at most N_PLOT_SCORES values kept for plots (all of them when fewer)."""
    if n <= N_PLOT_SCORES:
        return np.arange(n)
    return torch.randperm(n, generator=g)[:N_PLOT_SCORES].sort().values.numpy()


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in values]


def _bools(values: np.ndarray) -> list[bool]:
    return [bool(v) for v in values]


__all__ = ["Unit", "OodSet", "UnitResult", "run_unit", "clean_unit", "shift_unit", "ood_unit",
           "attacked_ood_unit",
           "load_ood",
           "plan_cells", "cell_record", "record_path", "png_grid", "jpeg_encode"]
