"""Stage 4 for attacks aimed at a detector: one attacked set per (attack, detector, seed).

A shift that declares ``needs_detector`` (``adaptive_pgd``) runs as one unit per detector: the
attacked images depend on the fitted detector and its 95 % threshold. Two kinds of cells:

- ``--attack adaptive_pgd(...)``: the ID test images (or a seeded subset of ``n``) attacked to be
  misclassified AND accepted (goal ``evade``); both sides of the cell are the same images,
  clean and attacked.
- ``--ood-attack adaptive_pgd(...)`` on an OOD set: its images (or a subset) pushed toward
  "in-distribution" (``raise``); with ``side=both`` the ID test images (same ``n``) are also
  pushed toward "OOD" (``lower``).

Every cell also carries the honesty checks of docs/adaptive.md in its ``adaptive`` block: the
non-adaptive reference on the same images, the attack continued to twice the steps, and the
fraction of images whose score moved the way the attacker wanted. Attacked sets are cached
under ``home/views`` keyed by the attack, the seed, the subset, the data and the fitted
detector, so re-running a cell (or adding a metric) attacks nothing again.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bench import cache
from bench.context import Context
from bench.errors import BenchError
from bench.plan import Paths, slug
from bench.registry import SHIFTS
from bench.units import tensor_sha256
from bench.views import Views, compute_views, load_views, store_views, to_float01, views_entry

#: tolerance (AUROC units) before an adaptive AUROC above its reference counts as a failed attack
AUROC_TOLERANCE = 1e-9


def subset_index(total: int, n: int | None, seed: int) -> Tensor:
    """Sorted positions of a seeded random subset of ``n`` of ``total`` images (all if None or
    ``n >= total``); drawn with ``torch.randperm`` from a generator seeded with ``seed``."""
    if n is None or n >= total:
        return torch.arange(total)
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(total, generator=g)[:n].sort().values


def _detector(fitted: dict, spec: str, seed: int) -> Any:
    f = fitted.get((spec, seed))
    if f is None:
        raise BenchError("detector was not fitted (internal error)")
    if f.error is not None:
        raise BenchError(f.error)
    det = f.detector
    if not det.differentiable:
        raise BenchError(f"{det.spec()} is not differentiable with respect to the input pixels: "
                         f"an adaptive attack cannot aim at it, and no non-adaptive number is "
                         f"reported in its place")
    return f


def _attack(shift: Any, images: Tensor, labels: Tensor | None, *, det: Any, ctx: Context,
            goal: str, seed: int) -> tuple[Tensor, Tensor | None]:
    """The attack's best iterates at ``steps`` and ``2 * steps`` (None without ``check``)."""
    model = ctx.model
    out = shift.attack(to_float01(images), labels, goal=goal,
                       forward=lambda x: det.forward_scores(x, model),
                       generator=torch.Generator().manual_seed(seed),
                       device=torch.device(ctx.device))
    return out.images, out.images_check


def _views(ctx: Context, images: Tensor, name: str) -> Views:
    # the run's batch size, device and precision, as the ID views it is compared with
    v = compute_views(ctx.model, images, name=name, keep_images=True, **ctx.view_opts())
    v.model = ctx.model
    return v


def _scores(det: Any, views: Views) -> Tensor:
    from bench.fit import checked_scores

    return checked_scores(det, views)


def _cached_attack(ctx: Context, paths: Paths, key: dict[str, Any], name: str, n: int,
                   compute: Any) -> tuple[Views, Tensor | None, bool, float]:
    """The attacked set's views (carrying its images) and its 2x-steps images (None without
    ``check``) from the cache, else from ``compute()`` and one forward pass, stored; then
    whether they came from the cache and the seconds the attack took."""
    views_dir = cache.cache_dir("views", paths.home)
    path, full_key = views_entry(views_dir, name, key, ctx.model_key)
    hit = load_views(path, full_key, name, n)
    if hit is not None and isinstance(hit[1].get("images"), Tensor):
        (v, extra), cached, spent = hit, True, 0.0
    else:
        t = time.perf_counter()
        images, check = compute()
        spent = time.perf_counter() - t
        v, extra, cached = _views(ctx, images, name), {"images": images, "check": check}, False
        store_views(path, full_key, v, extra)
    v.images, v.model = extra["images"], ctx.model
    return v, extra["check"], cached, spent


def _key(ctx: Context, attack: Any, seed: int, det: Any | None, idx: Tensor,
         side: str) -> dict[str, Any]:
    from bench.fit import detector_key

    return {"shift": attack.spec(), "params": attack.get_params(), "seed": seed,
            "code": cache.source_hash(type(attack)), "data": ctx.dataset["sha256"]["test"],
            "split": ["METHODS-1", ctx.dataset["split_seed"]], "side": side,
            "detector": None if det is None else [det.spec(), detector_key(det, ctx)],
            "subset": tensor_sha256(idx.to(torch.int64))}


# ------------------------------------------------------------------------------------------
# evasion of detection on the ID test images (--attack adaptive_pgd)
# ------------------------------------------------------------------------------------------
def evade_views(ctx: Context, unit: Any, paths: Paths, fitted: dict) -> Any:
    """The shifted set of an ``--attack adaptive_pgd`` cell (one detector), with its checks."""
    from bench.attacks.base import attack_success
    from bench.metrics import classifier_metrics
    from bench.units import Shifted, png_grid

    f = _detector(fitted, unit.detectors[0], unit.seed)
    det = f.detector
    attack = SHIFTS.create(unit.spec, data_root=paths.data_root,
                           pixel_step=ctx.dataset["pixel_step"])
    idx = subset_index(len(ctx.test_labels), attack.n, unit.seed)
    x, y = ctx.test_images[idx], ctx.test_labels[idx]
    key = _key(ctx, attack, unit.seed, det, idx, "id")
    name = f"{slug(unit.spec, 40)}-{slug(det.spec(), 30)}-seed{unit.seed}"
    v, check, cached, spent = _cached_attack(
        ctx, paths, key, name, len(idx),
        lambda: _attack(attack, x, y, det=det, ctx=ctx, goal="evade", seed=unit.seed))
    v.labels, v.index = y, ctx.test_index[idx]
    pred = v.logits.argmax(1)
    cls = classifier_metrics(v.logits, y)
    cls["attack_success"] = attack_success(y, ctx.clean_pred[idx], pred)

    # the non-adaptive reference: plain pgd with the same budget, steps and start, same images
    ref = SHIFTS.create(attack.reference_spec(), pixel_step=ctx.dataset["pixel_step"])
    ref_key = _key(ctx, ref, unit.seed, None, idx, "id")
    ref_name = f"{slug(ref.spec(), 40)}-subset-seed{unit.seed}"
    rv, _, _, ref_spent = _cached_attack(
        ctx, paths, ref_key, ref_name, len(idx),
        lambda: (ref(to_float01(x), y, model=ctx.model,
                     generator=torch.Generator().manual_seed(unit.seed)).detach().cpu(), None))
    payload = {"goal": "evade", "attack": attack, "reference": ref.spec(),
               "s_reference": _scores(det, rv), "wrong_reference": rv.logits.argmax(1) != y,
               "n_total": len(ctx.test_labels), "index": idx}
    if check is not None:
        cv = _views(ctx, check, name + "-2x")
        payload["s_check"] = _scores(det, cv)
        payload["wrong_check"] = cv.logits.argmax(1) != y
    c_in = (ctx.clean_pred == ctx.test_labels)[idx]
    return Shifted(v, cls, None, pred == y, png_grid(v.images),
                   {"views": ctx.views_s, "shift": spent + ref_spent}, cached,
                   s_in=f.s_in[idx], c_in=c_in, adaptive=payload)


# ------------------------------------------------------------------------------------------
# attacks on OOD detection (--ood-attack adaptive_pgd)
# ------------------------------------------------------------------------------------------
def ood_views(ctx: Context, unit: Any, paths: Paths, fitted: dict) -> Any:
    """The shifted set of an ``--ood-attack`` cell: the OOD images pushed toward ID (and, with
    ``side=both``, the ID test images pushed toward OOD)."""
    from bench.units import Shifted, png_grid

    f = _detector(fitted, unit.detectors[0], unit.seed)
    det = f.detector
    attack = SHIFTS.create(unit.attack, data_root=paths.data_root,
                           pixel_step=ctx.dataset["pixel_step"])
    ood = unit.ood
    idx = subset_index(ood.images.shape[0], attack.n, unit.seed)
    x = ood.images[idx]
    key = {**_key(ctx, attack, unit.seed, det, idx, "ood"), "ood": ood.meta["sha256"]}
    name = f"{slug(ood.meta['name'], 20)}-{slug(unit.attack, 30)}-{slug(det.spec(), 20)}"
    v, check, cached, spent = _cached_attack(
        ctx, paths, key, name, len(idx),
        lambda: _attack(attack, x, None, det=det, ctx=ctx, goal="raise", seed=unit.seed))
    before = _views(ctx, to_float01(x), name + "-clean")
    payload: dict[str, Any] = {"goal": "raise", "attack": attack, "s_before": _scores(det, before),
                               "n_total": int(ood.images.shape[0]), "index": idx}
    if check is not None:
        payload["s_check"] = _scores(det, _views(ctx, check, name + "-2x"))
    s_in = c_in = None
    if attack.side == "both":  # the ID test images pushed toward OOD, the same n
        id_idx = subset_index(len(ctx.test_labels), attack.n, unit.seed)
        y = ctx.test_labels[id_idx]
        id_key = _key(ctx, attack, unit.seed, det, id_idx, "id-lower")
        id_name = f"id-{slug(unit.attack, 30)}-{slug(det.spec(), 20)}"
        iv, id_check, id_cached, id_spent = _cached_attack(
            ctx, paths, id_key, id_name, len(id_idx),
            lambda: _attack(attack, ctx.test_images[id_idx], y, det=det, ctx=ctx, goal="lower",
                            seed=unit.seed))
        s_in, c_in = _scores(det, iv), iv.logits.argmax(1) == y
        payload.update(s_in_before=f.s_in[id_idx], id_index=id_idx)
        if id_check is not None:
            payload["s_in_check"] = _scores(det, _views(ctx, id_check, id_name + "-2x"))
        spent += id_spent
        cached = cached and id_cached
    return Shifted(v, {"acc": None, "ece": None, "attack_success": None}, None, None,
                   png_grid(v.images), {"views": ctx.views_s, "shift": ood.load_s + spent},
                   cached, s_in=s_in, c_in=c_in, adaptive=payload)


# ------------------------------------------------------------------------------------------
# the record's adaptive block
# ------------------------------------------------------------------------------------------
def adaptive_block(payload: dict[str, Any], s_in: np.ndarray, s_out: np.ndarray,
                   s_val: np.ndarray, a: float) -> dict[str, Any]:
    """The honesty checks of one adaptive cell (docs/adaptive.md), from its scores.

    ``s_in``/``s_out``: the cell's scored sides; ``a``: the cell's AUROC (already computed)."""
    from bench.metrics import auroc, threshold95, undetected_success

    attack = payload["attack"]
    tau = threshold95(s_val)
    out: dict[str, Any] = {
        "goal": payload["goal"], "attack": attack.spec(), "params": attack.get_params(),
        "n": int(len(payload["index"])), "n_total": payload["n_total"],
        "subset_sha256": tensor_sha256(payload["index"].to(torch.int64)), "threshold": tau, "auroc": a,
        "steps": attack.steps, "restarts": attack.restarts, "objective": attack.objective,
        "auroc_2x_steps": None, "converged": None, "reference": None, "auroc_reference": None,
        "undetected_success_reference": None, "undetected_success_2x_steps": None,
        "auroc_before": None, "score_moved": None, "stronger_than_reference": None,
        "warning": None}
    warnings = []
    if payload["goal"] == "evade":
        s_ref = payload["s_reference"].numpy()
        wrong_ref = payload["wrong_reference"].numpy()
        out["reference"] = payload["reference"]
        out["auroc_reference"] = auroc(s_in, s_ref)
        out["undetected_success_reference"] = undetected_success(s_ref, wrong_ref, tau)
        out["stronger_than_reference"] = bool(a <= out["auroc_reference"] + AUROC_TOLERANCE)
        # the detector term worked when the attacked image scores above plain pgd's
        out["score_moved"] = float(np.mean(s_out > s_ref))
        if not out["stronger_than_reference"]:
            warnings.append(f"attack failed to converge: adaptive AUROC {a:.4f} above the "
                            f"non-adaptive {out['reference']}'s {out['auroc_reference']:.4f}")
        if "s_check" in payload:
            s2 = payload["s_check"].numpy()
            out["auroc_2x_steps"] = auroc(s_in, s2)
            out["undetected_success_2x_steps"] = undetected_success(
                s2, payload["wrong_check"].numpy(), tau)
    else:
        s_before = payload["s_before"].numpy()
        s_in_before = payload["s_in_before"].numpy() if "s_in_before" in payload else s_in
        out["auroc_before"] = auroc(s_in_before, s_before)
        out["reference"] = "unattacked"
        out["auroc_reference"] = out["auroc_before"]
        out["stronger_than_reference"] = bool(a <= out["auroc_before"] + AUROC_TOLERANCE)
        moved = s_out > s_before
        if "s_in_before" in payload:
            moved = np.r_[moved, s_in < s_in_before]
        out["score_moved"] = float(np.mean(moved))
        if not out["stronger_than_reference"]:
            warnings.append(f"attack failed to converge: attacked AUROC {a:.4f} above the "
                            f"unattacked {out['auroc_before']:.4f}")
        if "s_check" in payload:
            s_in2 = payload["s_in_check"].numpy() if "s_in_check" in payload else s_in
            out["auroc_2x_steps"] = auroc(s_in2, payload["s_check"].numpy())
    if out["auroc_2x_steps"] is not None:
        # twice the steps should not find much more: 1 AUROC point is the documented bound
        out["converged"] = bool(out["auroc_2x_steps"] >= a - 0.01)
        if not out["converged"]:
            warnings.append(f"not converged: AUROC {a:.4f} at {attack.steps} steps, "
                            f"{out['auroc_2x_steps']:.4f} at {2 * attack.steps}")
    out["warning"] = "; ".join(warnings) or None
    return out


def attacked_name(ood_meta: dict[str, Any], attack_spec: str) -> str:
    """``mnist+adaptive_pgd(eps=8/255)``: an attacked OOD set's name in records and boards."""
    return f"{ood_meta['name']}+{attack_spec}"


__all__ = ["subset_index", "evade_views", "ood_views", "adaptive_block", "attacked_name",
           "AUROC_TOLERANCE"]
