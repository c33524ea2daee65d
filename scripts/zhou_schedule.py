"""What does zhou's short default schedule cost against the reference's 300 epochs? (issue 9)

Trains :class:`bench.detectors.zhou.Zhou` twice on the same cached features, with our default
schedule and with the reference's (``configs/ood/cifar100_ood.yaml``: Adam lr 1e-4, batch 128,
per-step cosine decay to 1e-7, 300 epochs), and prints one JSON line with the AUROC (ID test
images positive, sklearn ``roc_auc_score``) of each on every OOD set, the training time and the
final training loss. The MSP AUROC of the same logits is printed beside them for scale.

Inputs are ``.pt`` files written by ``torch.save`` holding a dict of tensors
``{"features": (N, H), "logits": (N, K), "labels": (N,) int64 or None}``, e.g. from views::

    v = compute_views(model, images, name="fit", labels=y)
    torch.save({"features": v.features, "logits": v.logits, "labels": v.labels}, "fit.pt")

W is initialised from the classifier's head. The head is not stored in the files: it is
recovered from ``logits = features @ W.T + b`` by least squares on the fit set (exact up to
rounding for a linear head; the residual is printed), or read from ``--head`` (a ``.pt`` dict
with ``weight`` (K, H) and ``bias`` (K,)).

Example::

    python scripts/zhou_schedule.py --fit fit.pt --val val.pt --test test.pt \
        --ood tin.pt --ood dtd.pt --device cuda --out zhou_schedule.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from bench.detectors.zhou import Zhou
from bench.views import Views

REFERENCE = {"epochs": 300, "lr": 1e-4, "batch_size": 128, "lr_min": 1e-7}


def load(path: Path, name: str) -> Views:
    d = torch.load(path, map_location="cpu", weights_only=True)
    missing = {"features", "logits"} - set(d)
    if missing:
        sys.exit(f"zhou_schedule: {path} lacks {sorted(missing)}; expected a dict with "
                 f"features, logits, labels")
    labels = d.get("labels")
    return Views(name=name, features=d["features"].to(torch.float64),
                 logits=d["logits"].to(torch.float64),
                 labels=None if labels is None else labels.to(torch.int64))


def recover_head(fit: Views) -> tuple[nn.Linear, float]:
    """Least-squares ``[W b]`` from fit features and logits; returns the head and max residual."""
    f, z = fit.features, fit.logits
    a = torch.cat([f, torch.ones(len(f), 1, dtype=f.dtype)], dim=1)
    sol = torch.linalg.lstsq(a, z).solution  # (H + 1, K)
    head = nn.Linear(f.shape[1], z.shape[1])
    with torch.no_grad():
        head.weight.copy_(sol[:-1].T)
        head.bias.copy_(sol[-1])
    resid = float((a @ sol - z).abs().max())
    return head, resid


def auroc(s_in: torch.Tensor, s_out: torch.Tensor) -> float:
    y = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
    return float(roc_auc_score(y, np.r_[s_in.numpy(), s_out.numpy()]))


def run(schedule: dict[str, Any], fit: Views, val: Views, test: Views, oods: list[Views],
        device: str, seed: int) -> dict[str, Any]:
    det = Zhou(device=device, **schedule)
    det.seed = seed
    t0 = time.perf_counter()
    det.fit(fit, val)
    seconds = time.perf_counter() - t0
    s_in = det.score(test)
    return {**schedule, "seconds": round(seconds, 2),
            "final_loss": det.history_[-1] if det.history_ else None,
            "auroc": {o.name: auroc(s_in, det.score(o)) for o in oods}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fit", type=Path, required=True, help="ID training split (features, labels)")
    p.add_argument("--val", type=Path, required=True, help="ID val split (Gaussian fits)")
    p.add_argument("--test", type=Path, required=True, help="ID test split (positives)")
    p.add_argument("--ood", type=Path, action="append", required=True,
                   help="an OOD set (repeat for several); named after the file stem")
    p.add_argument("--head", type=Path, help="classifier head {weight, bias} (default: recover)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None,
                   help="short schedule's epochs (default: Zhou's default)")
    p.add_argument("--lr", type=float, default=None, help="short schedule's lr (default: Zhou's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--ref-epochs", type=int, default=REFERENCE["epochs"])
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--out", type=Path, help="also write the JSON result here")
    args = p.parse_args(argv)

    fit, val, test = load(args.fit, "fit"), load(args.val, "val"), load(args.test, "test")
    oods = [load(path, path.stem) for path in args.ood]
    if fit.labels is None:
        sys.exit("zhou_schedule: the fit file needs labels")
    if args.head is not None:
        hd = torch.load(args.head, map_location="cpu", weights_only=True)
        head = nn.Linear(hd["weight"].shape[1], hd["weight"].shape[0])
        with torch.no_grad():
            head.weight.copy_(hd["weight"])
            head.bias.copy_(hd["bias"])
        resid = float((fit.features.float() @ head.weight.T + head.bias
                       - fit.logits).abs().max())
    else:
        head, resid = recover_head(fit)
    fit.model = SimpleNamespace(head=head, num_classes=head.out_features)  # what Zhou reads

    defaults = Zhou().get_params()
    short = {"epochs": defaults["epochs"], "lr": defaults["lr"],
             "batch_size": defaults["batch_size"], "lr_min": defaults["lr_min"]}
    for key in ("epochs", "lr", "batch_size"):
        if getattr(args, key) is not None:
            short[key] = getattr(args, key)
    schedules = {"short": short}
    if not args.skip_reference:
        schedules["reference"] = {**REFERENCE, "epochs": args.ref_epochs}

    msp_in = test.logits.softmax(1).amax(1)
    result: dict[str, Any] = {
        "device": args.device, "seed": args.seed, "n_fit": len(fit), "n_val": len(val),
        "n_test": len(test), "n_ood": {o.name: len(o) for o in oods},
        "head_residual": resid,
        "msp_auroc": {o.name: auroc(msp_in, o.logits.softmax(1).amax(1)) for o in oods},
    }
    for name, schedule in schedules.items():
        result[name] = run(schedule, fit, val, test, oods, args.device, args.seed)
        print(f"# {name}: {json.dumps(result[name])}", file=sys.stderr, flush=True)
    line = json.dumps(result)
    print(line, flush=True)
    if args.out is not None:
        args.out.write_text(line + "\n")
    return result


if __name__ == "__main__":
    main()
