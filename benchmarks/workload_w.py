"""Workload W against its floor and against the pytorch-ood pipeline, alternated.

W: CIFAR-10 with the akamaster ResNet-20, detectors msp, energy and mahalanobis, shifts
``gaussian_noise`` and ``fgsm`` (severity 3) and the MNIST test set as OOD: 9 AUROCs.

- ``bench``: ``bench run`` as a user types it, with an empty ``$BENCH_HOME`` (nothing cached).
- ``floor``: plain PyTorch doing only the passes W needs: one forward pass over the training
  split (Mahalanobis' class means and covariance), the val and test images, the noisy and
  FGSM images (one forward+backward for FGSM) and MNIST; MSP, energy and Mahalanobis in
  float64 and scikit-learn's AUROC. Data and weights are read with shiftbench's loaders (the
  same bytes), the network is shiftbench's ResNet-20 class.
- ``pood``: pytorch-ood's detectors on the same tensors: ``MaxSoftmax(model)``,
  ``EnergyBased(model)``, ``Mahalanobis(model.features).fit(train_loader)``, each detector's
  ``predict`` over each set once (every detector runs the network itself), AUROC by
  scikit-learn.
- ``pood-docs``: the same detectors as pytorch-ood's Quick Start runs them: torchvision's
  ``CIFAR10`` with ``ToTensor()`` (decoded image by image), and for each detector and OOD set one
  ``DataLoader`` over the scored ID test images followed by that set, ``metrics.update(detector(x),
  y)`` with OOD labels -1 and ``OODMetrics().compute()``. The ID test images are thus scored once
  per OOD set, as the Quick Start's loop does. The shifted sets and MNIST are the tensors of the
  other variants.

Each run is a fresh process; the variants are alternated ``--repeat`` times so that a busy
moment of the machine hits them alike. Reports the median wall time, the peak resident memory
of each run's main process (GNU ``time -f %M``) and the AUROCs (floor and bench must agree).

    python benchmarks/workload_w.py --data-root data/cifar \\
        --weights ../shared/data/weights/akamaster/resnet20-12fca82f.th --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = str(Path(sys.executable).with_name("bench"))
DETECTORS = ("msp", "energy", "mahalanobis")
SIGMA = 0.08          # gaussian_noise severity 3 (METHODS.md §5)
EPS = 4 / 255         # fgsm severity 3


# ------------------------------------------------------------------------------------------
# the floor and the pytorch-ood pipeline (run in a child process)
# ------------------------------------------------------------------------------------------
def _model(weights: str):
    """shiftbench's ResNet-20 with ``weights``, in eval mode, without parameter gradients."""
    from bench.models import load_classifier

    model, _ = load_classifier("resnet20", num_classes=10, in_channels=3, image_size=32,
                               dataset="cifar10", weights=weights)
    return model.eval().requires_grad_(False)


def _mnist(data_root: str):
    """The MNIST test set resized to 3x32x32 uint8, as ``bench run --ood mnist`` loads it."""
    from bench.datasets.base import LoadContext, load_set, resize_to

    _, mnist = load_set("mnist", "test", LoadContext(data_root=Path(data_root)))
    return resize_to(mnist.images, (3, 32, 32))


def _data(data_root: str, weights: str):
    """ID splits, MNIST resized to 3x32x32 and the classifier, through shiftbench's loaders."""
    import torch

    from bench.datasets.base import LoadContext, load_set, split_val_test

    ctx = LoadContext(data_root=Path(data_root))
    _, train = load_set("cifar10", "train", ctx)
    _, test = load_set("cifar10", "test", ctx)
    val_idx, test_idx = split_val_test(test.labels, seed=0)
    return (train.images, train.labels, test.images[torch.as_tensor(test_idx)],
            test.labels[torch.as_tensor(test_idx)], _mnist(data_root), _model(weights))


def _shifted(x_u8, y, model):
    """gaussian_noise and fgsm of the test images, as shiftbench draws them (seed 0)."""
    import torch
    import torch.nn.functional as F

    x = x_u8.float() / 255
    g = torch.Generator().manual_seed(0)
    noise = (x + SIGMA * torch.randn(x.shape, generator=g)).clamp(0, 1)
    adv = torch.empty_like(x)
    for s in range(0, len(x), 256):
        xb = x[s:s + 256].clone().requires_grad_(True)
        loss = F.cross_entropy(model(xb), y[s:s + 256], reduction="sum")
        (grad,) = torch.autograd.grad(loss, xb)
        adv[s:s + 256] = (xb + EPS * grad.sign()).clamp(0, 1).detach()
    return {"gaussian_noise": noise, "fgsm": adv}


def floor(data_root: str, weights: str) -> dict[str, float]:
    import torch
    from sklearn.metrics import roc_auc_score

    train_x, train_y, test_x, test_y, ood, model = _data(data_root, weights)

    @torch.no_grad()
    def views(x):
        zs, fs = [], []
        for s in range(0, len(x), 256):
            xb = x[s:s + 256]
            xb = xb.float() / 255 if xb.dtype == torch.uint8 else xb
            z, f = model.forward_features(xb)
            zs.append(z.double())
            fs.append(f.double())
        return torch.cat(zs), torch.cat(fs)

    _, f_train = views(train_x)
    classes = torch.arange(10)
    means = torch.stack([f_train[train_y == c].mean(0) for c in classes])
    centred = f_train - means[train_y]
    prec = torch.linalg.pinv(centred.T @ centred / len(f_train), hermitian=True)

    def scores(z, f):
        d = torch.stack([((f - m) @ prec * (f - m)).sum(1) for m in means], 1)
        return {"msp": torch.log_softmax(z, 1).amax(1), "energy": torch.logsumexp(z, 1),
                "mahalanobis": -d.amin(1)}

    s_in = scores(*views(test_x))
    sets = {**_shifted(test_x, test_y, model), "mnist": ood}
    out = {}
    for name, x in sets.items():
        s_out = scores(*views(x))
        for det in DETECTORS:
            y = [1] * len(s_in[det]) + [0] * len(s_out[det])
            out[f"{det} x {name}"] = float(roc_auc_score(y, torch.cat([s_in[det],
                                                                      s_out[det]]).numpy()))
    return out


def pood(data_root: str, weights: str) -> dict[str, float]:
    import torch
    from pytorch_ood.detector import EnergyBased, Mahalanobis, MaxSoftmax
    from sklearn.metrics import roc_auc_score
    from torch.utils.data import DataLoader, TensorDataset

    train_x, train_y, test_x, test_y, ood, model = _data(data_root, weights)
    train_loader = DataLoader(TensorDataset(train_x.float() / 255, train_y), batch_size=256)
    dets = {"msp": MaxSoftmax(model), "energy": EnergyBased(model),
            "mahalanobis": Mahalanobis(lambda x: model.forward_features(x)[1])}
    dets["mahalanobis"].fit(train_loader)

    def predict(det, x):
        x = x.float() / 255 if x.dtype == torch.uint8 else x
        with torch.no_grad():
            return torch.cat([det.predict(x[s:s + 256]) for s in range(0, len(x), 256)])

    sets = {**_shifted(test_x, test_y, model), "mnist": ood}
    out = {}
    for det_name, det in dets.items():
        s_in = -predict(det, test_x)           # pytorch-ood: higher = more OOD
        for name, x in sets.items():
            s_out = -predict(det, x)
            y = [1] * len(s_in) + [0] * len(s_out)
            out[f"{det_name} x {name}"] = float(roc_auc_score(
                y, torch.cat([s_in, s_out]).double().numpy()))
    return out


def pood_docs(data_root: str, weights: str) -> dict[str, float]:
    import torch
    from pytorch_ood.detector import EnergyBased, Mahalanobis, MaxSoftmax
    from pytorch_ood.metrics import OODMetrics
    from torch.utils.data import ConcatDataset, DataLoader, Subset, TensorDataset
    from torchvision.datasets import CIFAR10
    from torchvision.transforms import ToTensor

    from bench.datasets.base import split_val_test

    class Cifar10(CIFAR10):
        """torchvision's CIFAR10 on the JPEG development copy (its files are not the official
        ones, so their md5 differs; the layout is torchvision's)."""

        def _check_integrity(self) -> bool:
            return True

    train = Cifar10(data_root, train=True, transform=ToTensor())
    test = Cifar10(data_root, train=False, transform=ToTensor())
    _, test_idx = split_val_test(torch.as_tensor(test.targets), seed=0)
    id_test = Subset(test, [int(i) for i in test_idx])
    model = _model(weights)
    test_x = torch.from_numpy(test.data[test_idx]).permute(0, 3, 1, 2).contiguous()
    test_y = torch.as_tensor(test.targets)[torch.as_tensor(test_idx)]
    sets = {**_shifted(test_x, test_y, model), "mnist": _mnist(data_root).float() / 255}
    dets = {"msp": MaxSoftmax(model), "energy": EnergyBased(model),
            "mahalanobis": Mahalanobis(lambda x: model.forward_features(x)[1])}
    dets["mahalanobis"].fit(DataLoader(train, batch_size=256))
    out = {}
    for det_name, det in dets.items():
        for name, x in sets.items():
            unknown = TensorDataset(x, torch.full((len(x),), -1))
            metrics = OODMetrics()
            with torch.no_grad():
                for xb, yb in DataLoader(ConcatDataset([id_test, unknown]), batch_size=256):
                    metrics.update(det(xb), yb)
            out[f"{det_name} x {name}"] = float(metrics.compute()["AUROC"])
    return out


# ------------------------------------------------------------------------------------------
# the driver
# ------------------------------------------------------------------------------------------
def _bench_aurocs(out_dir: Path) -> dict[str, float]:
    res = {}
    for p in out_dir.rglob("*.json"):
        r = json.loads(p.read_text())
        if r["status"] == "ok" and r["shift"]["group"] != "clean":
            name = r["shift"]["name"]
            res[f"{r['detector']['spec']} x {name}"] = r["metrics"]["auroc"]
    return res


def run_variant(variant: str, args: argparse.Namespace) -> dict:
    """One fresh process tree of ``variant``: wall time, peak RSS (GNU time's %M), AUROCs."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "BENCH_HOME": tmp}
        if variant == "bench":
            cmd = [BENCH, "run", "--dataset", "cifar10", "--data-root", args.data_root,
                   "--model", "resnet20", "--weights", args.weights, "--detector",
                   ",".join(DETECTORS), "--attack", "gaussian_noise,fgsm", "--ood", "mnist",
                   "--device", "cpu", "--out", str(Path(tmp) / "out")]
        else:
            cmd = [sys.executable, __file__, "--child", variant, "--data-root", args.data_root,
                   "--weights", args.weights]
        rss = Path(tmp) / "rss"
        t = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss), *cmd],
                              capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"{variant} failed:\n{proc.stderr[-2000:]}")
        aurocs = (_bench_aurocs(Path(tmp) / "out") if variant == "bench"
                  else json.loads(proc.stdout.splitlines()[-1]))
        peak_kb = int(rss.read_text().split()[-1])
    return {"wall_s": wall, "peak_rss_mb": peak_kb / 1024, "aurocs": aurocs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default="data/cifar")
    ap.add_argument("--weights", default="../shared/data/weights/akamaster/resnet20-12fca82f.th")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variants", default="floor,bench,pood,pood-docs")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        fn = {"floor": floor, "pood": pood, "pood-docs": pood_docs}[args.child]
        print(json.dumps(fn(args.data_root, args.weights)))
        return
    variants = args.variants.split(",")
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for i in range(args.repeat):
        for v in variants:
            runs[v].append(run_variant(v, args))
            print(f"run {i + 1}/{args.repeat} {v}: {runs[v][-1]['wall_s']:.1f} s", flush=True)
    summary = {v: {"median_wall_s": statistics.median(r["wall_s"] for r in rs),
                   "walls_s": [round(r["wall_s"], 1) for r in rs],
                   "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                   "aurocs": rs[0]["aurocs"]} for v, rs in runs.items()}
    if "floor" in summary:
        base = summary["floor"]["median_wall_s"]
        for v in summary:
            summary[v]["ratio_to_floor"] = summary[v]["median_wall_s"] / base
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
