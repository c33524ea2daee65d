"""Detectors on memory-mapped views at ImageNet width: 1000 classes x 2048 features.

Writes N rows of random float32 logits (1000) and features (2048) with ``ViewFiles`` (as a
streamed run stores its views), then fits and scores msp, energy, mahalanobis and
``zhou(epochs=1)`` on them, as the runner does (``checked_scores``: row-wise detectors chunk by
chunk). After each it prints the wall time and the process's anonymous and file-backed resident
memory (/proc/self/status): pages of the memory map are file-backed, which the kernel can drop,
anonymous memory is what the detectors hold.

    python benchmarks/views_scale.py --n 50000 --work /tmp/views_scale
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch

import bench.detectors  # noqa: F401  (registers the built-in detectors)
from bench.fit import checked_scores
from bench.registry import DETECTORS
from bench.views import ViewFiles, Views

CLASSES, WIDTH = 1000, 2048


def memory() -> str:
    got = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                got[key] = int(value.split()[0]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (f"anonymous {got['RssAnon']:.0f} MB, file-backed {got['RssFile']:.0f} MB, "
            f"peak RSS {peak:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/shiftbench-views-scale"))
    ap.add_argument("--detectors", default="msp,energy,mahalanobis,zhou(epochs=1)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    sink = ViewFiles(args.work / "views", args.n)
    for s in range(0, args.n, 2000):
        m = min(2000, args.n - s)
        sink.write(s, torch.from_numpy(rng.standard_normal((m, CLASSES), dtype=np.float32)),
                   torch.from_numpy(rng.standard_normal((m, WIDTH), dtype=np.float32)))
    logits, feats = sink.finish(CLASSES)
    labels = torch.from_numpy(np.arange(args.n) % CLASSES)
    mb = args.n * (CLASSES + WIDTH) * 4 / 2**20
    print(f"{args.n} x ({CLASSES} + {WIDTH}) float32 views: {mb:.0f} MB on disk; {memory()}")
    fit = Views("fit", logits=logits, features=feats, labels=labels)
    val = Views("val", logits=logits[:2000].clone(), features=feats[:2000].clone(),
                labels=labels[:2000])
    for spec in args.detectors.split(","):
        t = time.perf_counter()
        det = DETECTORS.create(spec)
        det.fit(fit, val)
        scores = checked_scores(det, fit)
        assert torch.isfinite(scores).all()
        print(f"{spec}: fit + score of {args.n} rows in {time.perf_counter() - t:.1f} s; "
              f"{memory()}", flush=True)


if __name__ == "__main__":
    main()
