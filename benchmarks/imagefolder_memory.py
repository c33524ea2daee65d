"""Peak memory of ``bench run`` on an ImageFolder against the number of images it holds.

Builds an ImageNet-style folder (``ROOT/train/<class>/*.jpg``, ``ROOT/val/<class>/*.jpg``) of
224 x 224 JPEGs from the real CIFAR-10 JPEGs in the shared data (bicubic upsampling), at
``--scales`` multiples of a base size (a smaller scale links to the first files of the largest
folder), an OOD folder of TinyImageNet images of fixed size, and a torchvision ResNet-18 (10
classes, random weights) saved to a file. Then runs, once per scale, in a fresh process with an
empty ``$BENCH_HOME``::

    bench run --dataset imagefolder:ROOT --model 'torchvision:resnet18(weights=FILE)' \\
        --detector msp,energy,mahalanobis --attack fgsm --ood imagefolder:OOD

and reports the wall time, the peak resident memory of the ``bench`` process (GNU ``time -f
%M``), the peak of the whole process tree (``bench`` plus its DataLoader workers, sampled from
/proc every 50 ms) and the growth of both against the smallest scale.

    python benchmarks/imagefolder_memory.py --work /tmp/ifbench --per-class 50 --scales 1,4
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = str(Path(sys.executable).with_name("bench"))
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SIZE = 224


def build(work: Path, per_class: int, n_ood: int) -> tuple[Path, Path, Path]:
    """The largest folder (``per_class`` train and ``per_class // 2`` val images per class),
    the OOD folder and the weights file; kept between runs of this script."""
    import numpy as np
    import torch
    import torchvision
    from PIL import Image

    root, ood, weights = work / f"full{per_class}", work / "ood", work / "resnet18-10.pt"
    done = work / f".built{per_class}"
    if not done.exists():
        for split, npz, n in (("train", "train.npz", per_class), ("val", "test.npz",
                                                                   max(10, per_class // 2))):
            src = np.load(SHARED / "cifar10-jpeg" / npz)
            counts: dict[int, int] = {}
            for i, c in enumerate(src["labels"].tolist()):
                if counts.get(c, 0) >= n:
                    continue
                counts[c] = counts.get(c, 0) + 1
                raw = src["jpeg"][src["offsets"][i]:src["offsets"][i + 1]].tobytes()
                im = Image.open(io.BytesIO(raw)).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC)
                p = root / split / str(src["class_names"][c]) / f"{i:05d}.jpg"
                p.parent.mkdir(parents=True, exist_ok=True)
                im.save(p, quality=90)
                if len(counts) == 10 and min(counts.values()) >= n:
                    break
        ood.mkdir(parents=True, exist_ok=True)
        imgs = np.load(SHARED / "ood" / "tinyimagenet_test_resize32.npz")["images"][:n_ood]
        for i, a in enumerate(imgs):
            Image.fromarray(a).resize((SIZE, SIZE), Image.BICUBIC).save(ood / f"{i:04d}.jpg",
                                                                         quality=90)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), weights)
        done.touch()
    return root, ood, weights


def subset(full: Path, work: Path, fraction: int, of: int) -> Path:
    """A folder linking to the first ``fraction / of`` of each class's files of ``full``."""
    out = work / f"{full.name}_{fraction}of{of}"
    if out.exists():
        return out
    for cls_dir in sorted(p for p in full.glob("*/*") if p.is_dir()):
        files = sorted(cls_dir.iterdir())
        keep = files[:len(files) * fraction // of]
        dst = out / cls_dir.relative_to(full)
        dst.mkdir(parents=True, exist_ok=True)
        for f in keep:
            (dst / f.name).symlink_to(f)
    return out


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (from /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


def run_once(root: Path, ood: Path, weights: Path, work: Path, tag: str, workers: int,
             batch_size: int) -> dict:
    home, out = work / f"home_{tag}", work / f"res_{tag}"
    for d in (home, out):
        subprocess.run(["rm", "-rf", str(d)], check=True)
    cmd = ["/usr/bin/time", "-f", "%M", BENCH, "run", "--dataset", f"imagefolder:{root}",
           "--model", f"torchvision:resnet18(weights={weights})",
           "--detector", "msp,energy,mahalanobis", "--attack", "fgsm",
           "--ood", f"imagefolder:{ood}", "--device", "cpu", "--workers", str(workers),
           "--batch-size", str(batch_size), "--out", str(out), "--json"]
    env = {**os.environ, "BENCH_HOME": str(home)}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            stop.wait(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, stderr = proc.communicate()
    stop.set()
    th.join()
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"bench run failed ({tag}):\n{stderr[-3000:]}")
    max_rss_kb = int(stderr.strip().splitlines()[-1])
    recs = [json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")]
    n_img = sum(1 for _ in root.rglob("*.jpg"))
    return {"tag": tag, "images": n_img, "wall_s": round(wall, 1),
            "peak_rss_mb": round(max_rss_kb / 1024, 1), "peak_tree_mb": round(peak[0] / 2**20, 1),
            "auroc": {f"{r['detector']['spec']}/{r['shift']['name']}": r["metrics"].get("auroc")
                      for r in recs if r["shift"]["group"] != "clean"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/shiftbench-imagefolder-bench"))
    ap.add_argument("--per-class", type=int, default=50,
                    help="train images per class at scale 1 (val: half of it)")
    ap.add_argument("--scales", default="1,4")
    ap.add_argument("--n-ood", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    scales = sorted(int(s) for s in args.scales.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    full, ood, weights = build(args.work, args.per_class * scales[-1], args.n_ood)
    rows = []
    for s in scales:
        root = full if s == scales[-1] else subset(full, args.work, s, scales[-1])
        rows.append(run_once(root, ood, weights, args.work, f"x{s}", args.workers,
                             args.batch_size))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    base = rows[0]
    for r in rows:
        r["rss_growth"] = round(r["peak_rss_mb"] / base["peak_rss_mb"] - 1, 4)
        r["tree_growth"] = round(r["peak_tree_mb"] / base["peak_tree_mb"] - 1, 4)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'scale':>5} {'images':>7} {'wall s':>7} {'peak RSS MB':>12} {'growth':>7} "
          f"{'tree MB':>8} {'growth':>7}")
    for s, r in zip(scales, rows):
        print(f"{s:>5} {r['images']:>7} {r['wall_s']:>7} {r['peak_rss_mb']:>12} "
              f"{r['rss_growth']:>7.1%} {r['peak_tree_mb']:>8} {r['tree_growth']:>7.1%}")


if __name__ == "__main__":
    main()
