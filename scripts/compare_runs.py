"""AUROC (and accuracy) of the same cells in two result folders, e.g. a CPU and a GPU run.

    python scripts/compare_runs.py results/cpu/records results/gpu/records [--metric auroc]

Cells are matched by (detector, shift spec or OOD set name, seed); prints a Markdown table of both values and their
difference, then the largest absolute difference. Exit 2 when no cell matches.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import BenchError
from bench.results import load_records


def cells(folder: Path, metric: str) -> dict[tuple[str, str, int], tuple[float, float | None]]:
    out = {}
    for r in load_records(folder):
        if r["status"] != "ok" or metric not in r["metrics"]:
            continue
        # OOD sets by name: their specs hold each run's own data root
        shift = r["shift"]["name"] if r["shift"]["group"] == "ood" else r["shift"]["spec"]
        out[(r["detector"]["spec"], shift, r["seed"])] = (
            r["metrics"][metric], r["classifier"].get("acc"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--metric", default="auroc")
    args = ap.parse_args()
    try:
        a, b = cells(args.a, args.metric), cells(args.b, args.metric)
    except BenchError as exc:
        print(f"compare_runs: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    keys = sorted(set(a) & set(b))
    if not keys:
        print(f"no cell of {args.a} is in {args.b}", file=sys.stderr)
        raise SystemExit(2)
    print(f"| detector | shift | seed | {args.metric} {args.a.name} | {args.metric} {args.b.name} "
          f"| diff | acc diff |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for k in keys:
        (va, acc_a), (vb, acc_b) = a[k], b[k]
        d = vb - va
        worst = max(worst, abs(d))
        acc = "" if acc_a is None or acc_b is None else f"{acc_b - acc_a:+.4f}"
        print(f"| {k[0]} | {k[1]} | {k[2]} | {va:.4f} | {vb:.4f} | {d:+.5f} | {acc} |")
    only = len(set(a) ^ set(b))
    print(f"\n{len(keys)} cells in both ({only} in one only); largest |diff| of {args.metric}: "
          f"{worst:.5f}")


if __name__ == "__main__":
    main()
