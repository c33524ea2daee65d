"""Result records: one JSON file per (detector, shift, seed) cell, versioned and validated.

Schema ``shiftbench.result`` version 2 (all metric values are fractions in [0, 1] or null).
Version 1 records (no ``cell_key``, ``code``, ``failure``, ``deployment``, ``cache``) still load.

=================  ==========================================================================
key                meaning
=================  ==========================================================================
schema             ``"shiftbench.result"``
schema_version     ``2``
cell_key           sha256 of the cell's identity (dataset, model, detector, shift with their
                   parameters, seed); the record's file name ends in its first 12 digits
cell_id            sha256 of the identity and ``code``: a record made by other code is recomputed
status             ``"ok"`` or ``"failed"`` (then ``error`` holds the reason, metrics are empty)
error              null or one line
created            ISO 8601 time the record was written
command            the ``bench run`` command line that produced it
seed               the run's seed (shifts, synthetic sets, detector training)
dataset            {name, spec, sha256: {train, test}, n_fit, n_val, n_test, shape}
model              {spec, arch, weights, weights_sha256, norm, mean, std, clean_acc, clean_ece}
detector           {name, spec, params, dist}
shift              {name, spec, params, group, severity, proximity, sha256, dist}
code               {shiftbench (version), detector, shift, model}: sha256 of the source of the
                   detector class, the shift (or OOD dataset) class and the network that made it
n_in, n_out        number of ID test images and shifted images scored
small_set          true when n_in or n_out < MIN_SET_SIZE (30): metrics_ci is then null and
                   leaderboards mark the numbers (absent in older records: judged from n_in/n_out)
metrics            {auroc, aupr_in, aupr_out, fpr95, fpr95_oodpos, detect95, id_accept95,
                    undetected_success (shifts of the ID test images: misclassified AND
                    accepted at the 95 % val threshold; null for OOD sets),
                    aupr_in_trapz, aupr_out_trapz}
metrics_ci         {metric: [lo, hi]}: bootstrap 95 % interval over images (auroc, aupr_in,
                   aupr_out, fpr95, fpr95_oodpos), resampling ID and shifted scores separately
classifier         the classifier on the shifted set: {acc, ece, attack_success} (null for OOD)
failure            ID-side cells (``clean`` and every corruption/attack; null for OOD sets):
                   failure detection of the scored set, correct predictions positive:
                   {fd_auroc, aurc, e_aurc, risk80, risk90, risk95, n, n_errors}
deployment         corruption/attack cells: clean and shifted images in one pool (equal
                   parts): {auroc_shifted (= metrics.auroc, shifted rejected), and the
                   ``failure`` keys on the pool (wrong predictions rejected)}
plots              {scores_in, scores_out (<= 1000 each, subsampled with the seed),
                    correct_in, correct_out (the classifier right on those same images),
                    roc_fpr, roc_tpr (<= 200 points), rc_coverage, rc_risk (<= 200 points)}
adaptive           cells of attacks aimed at the detector only (docs/adaptive.md): {goal,
                   attack, params, n, n_total, subset_sha256, threshold, auroc, reference,
                   auroc_reference, undetected_success_reference, stronger_than_reference,
                   auroc_2x_steps, undetected_success_2x_steps, converged, score_moved,
                   auroc_before, warning, ...}; ``plots.scores_before`` then holds the
                   attacked OOD images' scores before the attack
examples           {shift_png, detector_png}: base64 PNG grids (may be null)
timings            seconds: {views, shift, fit, score, total}; ``shift`` is 0 when the shifted
                   set's views came from the cache
cache              {shift_views, detector}: whether the shifted set's views and the fitted
                   detector were read from the cache
environment        {python, shiftbench, torch, numpy, scikit-learn, scipy, platform, device}
=================  ==========================================================================
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from bench.errors import BenchError
# re-exported: the metric lists are derived from bench.metrics.METRIC_TABLE
from bench.metrics import (CLASSIFIER_METRICS, DETECTOR_METRICS, FAILURE_METRICS,  # noqa: F401
                           LOWER_IS_BETTER, MIN_SET_SIZE, small_set)

log = logging.getLogger(__name__)

SCHEMA = "shiftbench.result"
SCHEMA_VERSION = 2
#: versions :func:`read_record` accepts (older ones miss fields that newer ones add)
READABLE_VERSIONS = (1, 2)

REQUIRED = {
    "schema": str, "schema_version": int, "cell_id": str, "status": str, "seed": int,
    "dataset": dict, "model": dict, "detector": dict, "shift": dict, "metrics": dict,
}


def record_small_set(record: dict[str, Any]) -> bool:
    """Whether a record's metrics come from a small set: its ``small_set`` flag when present,
    else judged from ``n_in`` / ``n_out`` (records written before the flag existed)."""
    flag = record.get("small_set")
    if isinstance(flag, bool):
        return flag
    n_in, n_out = record.get("n_in"), record.get("n_out")
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (n_in, n_out)):
        return False
    return small_set(n_in, n_out)


def check_dir_writable(path: Path, what: str, option: str) -> None:
    """BenchError (one line) unless folder ``path`` exists writable or can be created: a file in
    the way or a read-only ancestor is reported before any work, not after it."""
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise BenchError(f"{what} {path} cannot be created: {existing} is a file; "
                         f"choose another {option}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BenchError(f"{what} {path} is not writable ({existing} is read-only); "
                         f"choose another {option}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf become null (a metric that could not be computed is null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _clean(obj.item())
    return obj


def write_record(record: dict[str, Any], path: Path) -> Path:
    validate(record, source=str(path))
    atomic_write_text(path, json.dumps(_clean(record), indent=1, sort_keys=False) + "\n")
    return path


def validate(record: Any, source: str = "record") -> dict[str, Any]:
    """Check a record against the schema; a BenchError names the file and the problem."""
    if not isinstance(record, dict):
        raise BenchError(f"{source}: not a JSON object")
    if record.get("schema") != SCHEMA:
        raise BenchError(f"{source}: not a shiftbench result (schema={record.get('schema')!r})")
    version = record.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise BenchError(f"{source}: result schema version {version!r} is not supported by this "
                         f"shiftbench (reads versions {', '.join(map(str, READABLE_VERSIONS))}); "
                         f"re-run `bench run`")
    for key, typ in REQUIRED.items():
        if not isinstance(record.get(key), typ):
            raise BenchError(f"{source}: field {key!r} missing or not {typ.__name__}")
    if record["status"] not in ("ok", "failed"):
        raise BenchError(f"{source}: status must be 'ok' or 'failed'")
    if record["status"] == "ok":
        for m in DETECTOR_METRICS:
            v = record["metrics"].get(m)
            if v is not None and not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise BenchError(f"{source}: metric {m}={v!r} is not a fraction in [0, 1]")
    return record


def read_record(path: Path) -> dict[str, Any]:
    """One validated record; BenchError (one line, naming the file) if it cannot be used."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BenchError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise BenchError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise BenchError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return validate(data, source=str(path))


def record_files(directory: Path) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise BenchError(f"results folder {directory} does not exist; run `bench run --out {directory}`")
    return sorted(p for p in directory.rglob("*.json") if not p.name.startswith("."))


def load_records(directory: Path, *, include_failed: bool = False,
                 skip_invalid: bool = False) -> list[dict[str, Any]]:
    """Every record under ``directory`` (validated); failed cells only when asked.

    Strict by default: the first unreadable or invalid file raises a BenchError naming it.
    ``skip_invalid=True`` leaves such files out instead and logs one warning per file (logger
    ``bench.results``; `bench leaderboard` prints them as ``bench: WARNING: <file>: <why>``).
    """
    records = []
    for p in record_files(directory):
        try:
            records.append(read_record(p))
        except BenchError as exc:
            if not skip_invalid:
                raise
            log.warning("skipped %s", exc)
    if not include_failed:
        records = [r for r in records if r["status"] == "ok"]
    return records


def to_frame(records: Iterable[dict[str, Any]]):
    """Tidy wide DataFrame: one row per record, config columns plus one column per metric."""
    import pandas as pd

    rows = []
    for r in records:
        cls = r.get("classifier") or {}
        row = {
            "cell_id": r["cell_id"], "status": r["status"], "error": r.get("error"),
            "dataset": r["dataset"].get("name"), "model": r["model"].get("spec"),
            "weights_sha256": r["model"].get("weights_sha256"),
            "detector": r["detector"].get("spec"), "detector_name": r["detector"].get("name"),
            "shift": r["shift"].get("spec"), "shift_name": r["shift"].get("name"),
            "group": r["shift"].get("group"), "severity": r["shift"].get("severity"),
            "proximity": r["shift"].get("proximity"), "seed": r["seed"],
            "n_in": r.get("n_in"), "n_out": r.get("n_out"), "small_set": record_small_set(r),
        }
        for m in DETECTOR_METRICS:
            row[m] = r["metrics"].get(m)
        for m in CLASSIFIER_METRICS:
            row[m] = cls.get(m)
        fd, dep = r.get("failure") or {}, r.get("deployment") or {}
        for m in FAILURE_METRICS:
            row[m] = fd.get(m)
            row[f"pool_{m}"] = dep.get(m)
        row["clean_acc"] = r["model"].get("clean_acc")
        row["clean_ece"] = r["model"].get("clean_ece")
        rows.append(row)
    return pd.DataFrame(rows)


def load(directory: Path, *, include_failed: bool = False, skip_invalid: bool = False):
    """``bench.results.load(dir)``: the records under ``dir`` as a tidy pandas DataFrame.

    Strict by default (an invalid file raises); ``skip_invalid=True`` leaves invalid files out
    with a logged warning each, as :func:`load_records`."""
    return to_frame(load_records(directory, include_failed=include_failed,
                                 skip_invalid=skip_invalid))
