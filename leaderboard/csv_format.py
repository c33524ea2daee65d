"""Tidy long CSV: one row per (record, metric), loadable with ``pandas.read_csv``.

Named ``csv_format`` so it does not shadow the standard library's ``csv`` inside the package.
Values are fractions in [0, 1] at full precision (not percentages); ``ci_lo``/``ci_hi`` are the
record's bootstrap 95 % interval when stored; ``small_set`` is true when the record's metrics
come from fewer than 30 ID or shifted images (its flag, else judged from ``n_in``/``n_out``);
empty cells are nulls. Failed records keep their
rows with empty values and ``status == "failed"``, so nothing disappears silently.
"""

from __future__ import annotations

from typing import Any

from bench.leaderboard.core import Board
from bench.results import DETECTOR_METRICS, record_small_set

COLUMNS: tuple[str, ...] = (
    "dataset", "model", "weights_sha256", "detector", "shift", "shift_name", "group", "severity",
    "proximity", "seed", "metric", "value", "ci_lo", "ci_hi", "n_in", "n_out", "small_set",
    "status",
)


def record_metrics(record: dict[str, Any]) -> list[str]:
    """The metrics a record gets rows for: the schema's detector metrics, then any extra ones."""
    extra = sorted(k for k in (record.get("metrics") or {}) if k not in DETECTOR_METRICS)
    return list(DETECTOR_METRICS) + extra


def rows(board: Board) -> list[dict[str, Any]]:
    out = []
    for section in board.sections:
        for r in section.records:
            shift, cis = r["shift"], r.get("metrics_ci") or {}
            base = {
                "dataset": section.dataset, "model": section.model,
                "weights_sha256": section.weights_sha256,
                "detector": r["detector"].get("spec") or r["detector"].get("name"),
                "shift": shift.get("spec") or shift.get("name"), "shift_name": shift.get("name"),
                "group": shift.get("group"), "severity": shift.get("severity"),
                "proximity": shift.get("proximity"), "seed": r["seed"],
                "n_in": r.get("n_in"), "n_out": r.get("n_out"),
                "small_set": record_small_set(r), "status": r["status"],
            }
            for m in record_metrics(r):
                ci = cis.get(m) if isinstance(cis.get(m), (list, tuple)) else None
                out.append({**base, "metric": m, "value": r["metrics"].get(m),
                            "ci_lo": ci[0] if ci else None, "ci_hi": ci[1] if ci else None})
    return out


def render(board: Board, metric: str = "auroc") -> str:
    """CSV text; ``metric`` is accepted for a uniform interface (every metric is written)."""
    import pandas as pd

    frame = pd.DataFrame(rows(board), columns=list(COLUMNS))
    # Integers with nulls would otherwise be written as floats ("3.0").
    for col in ("severity", "seed", "n_in", "n_out"):
        frame[col] = frame[col].astype("Int64")
    return frame.to_csv(index=False, lineterminator="\n")
