"""The detector x shift matrix: views computed once per set, detectors fitted once, one record per cell.

Flow (STYLE.md): dataset -> classifier views (cached) -> shift -> views of the shifted set ->
detector.fit(ID fit, ID val) / detector.score(any set) -> metrics -> one JSON record per cell.
The runner never branches on a component's name: what a component needs is declared on its class.
"""

from __future__ import annotations

import base64
import io
import logging
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from bench import cache, progress
from bench.errors import BenchError
from bench.registry import DATASETS, DETECTORS, SHIFTS, Spec, expand, parse_spec, split_specs
from bench.results import SCHEMA, SCHEMA_VERSION, write_record
from bench.views import Views, compute_views, to_float01

log = logging.getLogger(__name__)

#: the model used when --model is not given
DEFAULT_MODEL = {"digits": "cnn", "cifar10": "resnet20", "cifar100": "resnet20", "mnist": "cnn"}
#: bootstrap resamples for the per-cell 95 % interval
N_BOOT = 200
#: scores kept per side for histograms
N_PLOT_SCORES = 1000


@dataclass
class RunConfig:
    """Everything ``bench run`` takes. Lists hold spec strings (``fgsm(eps=4/255)``)."""

    detectors: list[str] = field(default_factory=lambda: ["combined"])
    shifts: list[str] = field(default_factory=lambda: ["fgsm"])
    ood: list[str] = field(default_factory=list)
    dataset: str = "digits"
    model: str | None = None
    weights: str | None = None
    norm: str | None = None
    data_root: Path | None = None
    download: bool = False
    seeds: list[int] = field(default_factory=lambda: [0])
    severities: list[int] | None = None
    device: str = "auto"
    batch_size: int = 256
    out: Path = Path("results")
    force: bool = False
    refit: bool = False
    ood_jpeg: int | None = None
    plugins: list[str] = field(default_factory=list)
    command: str = ""


@dataclass
class Cell:
    detector: Any
    shift_label: str
    seed: int
    record: dict[str, Any] | None = None
    path: Path | None = None
    skipped: bool = False


@dataclass
class RunSummary:
    records: list[dict[str, Any]]
    paths: list[Path]
    skipped: int
    #: records of cells that were already done (resume), read back from disk
    previous: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    clean: dict[str, Any]
    wall_s: float
    out_dir: Path


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise BenchError(f"unknown device {name!r}: use auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


def parse_list(values: list[str] | str | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:
        if v.strip():
            out.extend(split_specs(v))
    return out


def slug(text: str, limit: int = 60) -> str:
    s = re.sub(r"[^A-Za-z0-9._=-]+", "-", text).strip("-")
    return s[:limit] or "x"


def _environment(device: torch.device) -> dict[str, Any]:
    import scipy
    import sklearn

    import bench

    return {"python": sys.version.split()[0], "shiftbench": bench.__version__,
            "torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__, "platform": platform.platform(),
            "device": str(device)}


def png_grid(images: Tensor, n: int = 8) -> str | None:
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


# ------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------
class Runner:
    """Runs one ``RunConfig``. Use :func:`run`; the class keeps per-run state between steps."""

    def __init__(self, config: RunConfig, console: Any = None):
        self.cfg = config
        self.console = console
        self.t0 = time.perf_counter()

    def info(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(msg)
        log.info(msg)

    # -- setup --------------------------------------------------------------------------------
    def prepare(self) -> None:
        from bench.datasets.base import LoadContext, load_set, split_val_test
        from bench.models import load_classifier

        from bench.plugins import load_plugins

        cfg = self.cfg
        load_plugins(cfg.plugins or None)  # --plugin files, then $BENCH_PLUGINS
        self.data_root = self.data_root_for(cfg)
        self.device = resolve_device(cfg.device)
        if cfg.batch_size < 1:
            raise BenchError(f"--batch-size must be >= 1, got {cfg.batch_size}")
        if not cfg.seeds:
            raise BenchError("no seeds given")
        if cfg.ood_jpeg is not None and not 1 <= cfg.ood_jpeg <= 100:
            raise BenchError(f"--ood-jpeg must be a JPEG quality 1..100, got {cfg.ood_jpeg}")

        # specs first: a typo fails in a second, not after the feature pass
        self.detector_specs = self._expand(cfg.detectors, DETECTORS, "detector")
        self.shift_specs = self._expand(cfg.shifts, SHIFTS, "shift", severities=cfg.severities)
        self.ood_specs = self._ood_specs(cfg.ood)
        if not self.detector_specs:
            raise BenchError("no detector given: use --detector msp (or all)")
        if not self.shift_specs and not self.ood_specs:
            raise BenchError("nothing to detect: give --attack A and/or --ood O")
        for s in self.detector_specs:
            DETECTORS.create(s, device=str(self.device))  # validates parameters
        for s in self.shift_specs:
            SHIFTS.create(s, data_root=self.data_root)

        ds_spec = parse_spec(cfg.dataset)
        ds_cls = DATASETS.get(ds_spec.name)
        if not getattr(ds_cls, "is_id", False):
            raise BenchError(f"{cfg.dataset!r} is an OOD set, not an ID dataset with train/test splits")
        ctx = LoadContext(data_root=self.data_root, download=cfg.download, seed=0)
        with progress.task(f"loading {cfg.dataset}", None):
            _, self.train = load_set(cfg.dataset, "train", ctx)
            _, self.test_full = load_set(cfg.dataset, "test", ctx)
        if self.test_full.labels is None or self.train.labels is None:
            raise BenchError(f"{cfg.dataset}: the ID dataset needs labels")
        val_idx, test_idx = split_val_test(self.test_full.labels)
        self.val_idx = torch.as_tensor(val_idx, dtype=torch.long)
        self.test_idx = torch.as_tensor(test_idx, dtype=torch.long)
        self.num_classes = int(max(int(self.train.labels.max()), int(self.test_full.labels.max())) + 1)
        if self.train.classes:
            self.num_classes = max(self.num_classes, len(self.train.classes))
        c, h, w = self.train.shape
        self.id_shape = (c, h, w)
        self.data_sha = {"train": self.train.sha256(), "test": self.test_full.sha256()}

        model_spec = cfg.model or DEFAULT_MODEL.get(ds_spec.name)
        if model_spec is None:
            raise BenchError(f"no default model for dataset {cfg.dataset!r}: pass --model")
        self.model, self.model_info = load_classifier(
            model_spec, num_classes=self.num_classes, in_channels=c, image_size=h,
            dataset=ds_spec.name, weights=cfg.weights, norm=cfg.norm, device=self.device,
            train_set=self.train, seed=cfg.seeds[0])
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model_key = {"spec": self.model_info.get("spec", model_spec),
                          "weights_sha256": self.model_info.get("weights_sha256"),
                          "norm": self.model_info.get("norm"), "mean": self.model_info.get("mean"),
                          "std": self.model_info.get("std")}
        # cached features also depend on the network's code, not only on its weights
        self.model_code = cache.config_hash([cache.source_hash(type(self.model)),
                                             cache.source_hash(type(self.model.net))])
        self.ctx = ctx
        self.env = _environment(self.device)
        # OOD sets load now: a missing or empty set is a usage error before any work is done
        self._ood_cache: dict[tuple[str, int], tuple[dict[str, Any], Tensor, float]] = {}
        n_test = len(self.test_idx)
        for spec in self.ood_specs:
            self.ood_set(spec, cfg.seeds[0], n_test)

    def ood_set(self, spec: str, seed: int, n_test: int) -> tuple[dict[str, Any], Tensor, float]:
        """OOD set ``spec`` resized to the ID format (and JPEG-encoded if asked), with its meta."""
        from bench.datasets.base import LoadContext, load_set, resize_to

        key = (spec, seed)  # generated sets (gaussian/uniform) depend on the seed
        if key in self._ood_cache:
            return self._ood_cache[key]
        t = time.perf_counter()
        octx = LoadContext(data_root=self.data_root, download=self.cfg.download, seed=seed,
                           id_shape=self.id_shape, n_id_test=n_test)
        ds, oset = load_set(spec, "test", octx)
        imgs = resize_to(oset.images, self.id_shape)
        q = self.cfg.ood_jpeg
        if q is not None:
            imgs = jpeg_encode(imgs, q)
        meta = {"name": (oset.name or parse_spec(spec).name) + ("" if q is None else f"+jpeg{q}"),
                "spec": spec if q is None else f"{spec}+jpeg{q}",
                "params": {**ds.get_params(), "jpeg_quality": q},
                "group": "ood", "severity": None, "proximity": getattr(ds, "proximity", None),
                "sha256": _u8_sha(imgs), "dist": DATASETS.dist_of(parse_spec(spec).name),
                "n": int(imgs.shape[0])}
        self._ood_cache[key] = (meta, imgs, time.perf_counter() - t)
        return self._ood_cache[key]

    @staticmethod
    def data_root_for(cfg: RunConfig) -> Path:
        from bench.datasets.base import default_data_root

        return Path(cfg.data_root).expanduser() if cfg.data_root else default_data_root()

    def _expand(self, specs: list[str], registry: Any, kind: str,
                severities: list[int] | None = None) -> list[str]:
        names = parse_list(specs)
        if any(n == "all" for n in names):
            rest = [n for n in names if n != "all"]
            builtin = [n for n in registry.names() if not getattr(registry.get(n), "takes_arg", False)
                       and not getattr(registry.get(n), "hidden", False)]
            names = builtin + [n for n in rest if parse_spec(n).name not in builtin]
        out: list[str] = []
        for n in names:
            spec = parse_spec(n)
            registry.get(spec.name)  # unknown names fail here, with suggestions
            for s in expand(spec):
                cls = registry.get(s.name)
                if (severities and "severity" in cls.param_names() and "severity" not in s.params
                        and not set(getattr(cls, "severity_keys", lambda: ())()) & set(s.params)):
                    out.extend(str(Spec(s.name, s.arg, {**s.params, "severity": v})) for v in severities)
                else:
                    out.append(str(s))
        return list(dict.fromkeys(out))

    def _ood_specs(self, specs: list[str]) -> list[str]:
        names = parse_list(specs)
        if "all" in names:
            names = [n for n in names if n != "all"] + self._ood_in_root()
        for n in names:
            spec = parse_spec(n)
            DATASETS.get(spec.name)
        return list(dict.fromkeys(names))

    def _ood_in_root(self) -> list[str]:
        """`--ood all`: every OOD set found in the data root, plus the synthetic sets."""
        root = self.data_root_for(self.cfg)
        found = ["gaussian", "uniform"]
        if (root / "MNIST" / "raw").is_dir():
            found.append("mnist")
        if (root / "test_32x32.mat").is_file() or (root / "svhn" / "test_32x32.mat").is_file():
            found.append("svhn")
        if (root / "cifar-100-python" / "test").is_file() and self.cfg.dataset != "cifar100":
            found.append("cifar100")
        for p in sorted((root / "ood").glob("*.npz")) if (root / "ood").is_dir() else []:
            # sets that carry CIFAR-10 class flags are scored without those classes (as OpenOOD)
            with np.load(p) as z:
                overlap = "cifar10_overlap" in z.files
            if overlap and parse_spec(self.cfg.dataset).name == "cifar10":
                found.append(f"npz:{p}(exclude=cifar10_overlap)")
            else:
                found.append(f"npz:{p}")
        return found

    # -- views --------------------------------------------------------------------------------
    def views(self, images: Tensor, *, name: str, labels: Tensor | None,
              key: dict[str, Any] | None, keep_images: bool, index: Tensor | None = None) -> Views:
        """Logits/features of ``images``: one forward pass, or the view cache when ``key`` names
        the images by content (clean and OOD sets; shifted sets are computed fresh so that a
        changed shift can never meet stale features)."""
        path = full_key = None
        stored = None
        if key is not None:
            full_key = cache.config_hash({"model": self.model_key, "code": self.model_code,
                                          "data": key})
            path = cache.cache_dir("views") / f"{slug(name, 40)}-{full_key[:24]}.pt"
            stored = cache.load(path, full_key)
        if stored is not None and stored["logits"].shape[0] == images.shape[0]:
            v = Views(name=name, logits=stored["logits"], features=stored["features"])
        else:
            with progress.task(f"features: {name}", images.shape[0]) as t:
                v = compute_views(self.model, images, name=name, batch_size=self.cfg.batch_size,
                                  device=self.device, progress=t.advance)
            if path is not None:
                cache.store(path, full_key, {"logits": v.logits, "features": v.features})
        v.labels = labels
        v.images = images if keep_images else None
        v.model = self.model
        v.index = index
        return v

    # -- detectors ----------------------------------------------------------------------------
    def fit_detector(self, spec: str, seed: int, fit: Views, val: Views) -> tuple[Any, float, bool]:
        det = DETECTORS.create(spec, device=str(self.device))
        det.seed = seed
        needs = set(getattr(det, "needs", ()))
        uses_model = bool(needs & {"logits", "features", "model"})
        # where it trained (device) does not change what a fitted detector is
        spec_no_device = str(Spec(det.name, getattr(det, "arg", None) if det.takes_arg else None,
                                  {k: v for k, v in det.changed_params().items() if k != "device"}))
        key = cache.config_hash({
            "detector": spec_no_device,
            "class": f"{type(det).__module__}.{type(det).__qualname__}",
            "code": cache.source_hash(type(det)),
            "dataset": self.data_sha, "split": "METHODS-1", "seed": seed,
            "model": self.model_key if uses_model else None,
            "model_code": self.model_code if uses_model else None})
        path = cache.cache_dir("detectors") / f"{slug(det.name, 30)}-{key[:24]}.pt"
        t = time.perf_counter()
        if getattr(det, "cacheable", False) and not self.cfg.refit:
            state = cache.load(path, key)
            if state is not None:
                det.load_state(state)
                det.fitted_ = True
                return det, time.perf_counter() - t, True
        self._check_no_leak(fit, val)
        det.fit(fit, val)
        if getattr(det, "cacheable", False):
            cache.store(path, key, det.state())
        return det, time.perf_counter() - t, False

    def _check_no_leak(self, fit: Views, val: Views) -> None:
        """Fit and val never contain a scored ID test image (METHODS.md §1)."""
        if val.index is not None:
            overlap = np.intersect1d(val.index.numpy(), self.test_idx.numpy())
            if overlap.size:
                raise RuntimeError(f"val set overlaps the scored test set ({overlap.size} images)")
        if fit.index is not None and fit.name != "fit":
            raise RuntimeError("fit views must come from the training split")

    # -- one shifted set ----------------------------------------------------------------------
    def make_shift(self, spec: str, seed: int) -> tuple[Any, Tensor, Tensor, float]:
        """Apply shift ``spec`` to the ID test images: returns (shift, images, labels, seconds)."""
        shift = SHIFTS.create(spec, data_root=self.data_root)
        x = self.test_full.images[self.test_idx]
        y = self.test_full.labels[self.test_idx]
        g = torch.Generator().manual_seed(seed)  # a fresh generator per shift (METHODS.md §5)
        t = time.perf_counter()
        kwargs: dict[str, Any] = {}
        if getattr(shift, "needs_index", False):
            kwargs["index"] = self.test_idx
        model = self.model if getattr(shift, "needs_model", False) else None
        with progress.task(f"shift: {spec}", None):
            xs = shift(to_float01(x).to(self.device), y.to(self.device), model=model, generator=g,
                       **kwargs)
        return shift, xs.detach().cpu(), y, time.perf_counter() - t


def _meta(obj: Any, registry: Any) -> dict[str, Any]:
    return {"name": obj.name, "spec": obj.spec(), "params": obj.get_params(),
            "dist": registry.dist_of(obj.name)}


def run(cfg: RunConfig, console: Any = None,
        on_record: Callable[[dict[str, Any], Path], None] | None = None) -> RunSummary:
    """Run every detector on every shift and OOD set for every seed; write one record per cell."""
    from bench.attacks.base import attack_success
    from bench.metrics import bootstrap_ci, classifier_metrics, detector_metrics, roc_points

    r = Runner(cfg, console)
    r.prepare()
    out_dir = Path(cfg.out) / slug(
        f"{cfg.dataset}__{r.model_key['spec']}__{(r.model_key['weights_sha256'] or 'none')[:8]}", 100)
    dets_need = set()
    for s in r.detector_specs:  # instance needs: adapters declare them per wrapped detector
        dets_need |= set(getattr(DETECTORS.create(s, device=str(r.device)), "needs", ()))
    keep_images = "images" in dets_need

    # ID views: fit = train split, val/test from the test split (METHODS.md §1)
    t_views = time.perf_counter()
    fit_v = r.views(r.train.images, name="fit", labels=r.train.labels,
                    key={"set": "train", "sha": r.data_sha["train"]}, keep_images=keep_images,
                    index=torch.arange(len(r.train)))
    test_all = r.views(r.test_full.images, name="test", labels=r.test_full.labels,
                       key={"set": "test", "sha": r.data_sha["test"]}, keep_images=True,
                       index=torch.arange(len(r.test_full)))
    val_v = test_all.subset(r.val_idx, name="val")
    test_v = test_all.subset(r.test_idx, name="test")
    if not keep_images:
        val_v.images = None
    t_views = time.perf_counter() - t_views
    clean = classifier_metrics(test_v.logits, test_v.labels)
    clean_pred = test_v.logits.argmax(1)
    r.info(f"clean accuracy of {r.model_key['spec']} on {cfg.dataset} test ({len(test_v)} images): "
           f"{clean['acc']:.4f}  ECE {clean['ece']:.4f}")
    model_meta = {**r.model_info, "clean_acc": clean["acc"], "clean_ece": clean["ece"]}
    dataset_meta = {"name": parse_spec(cfg.dataset).name, "spec": cfg.dataset,
                    "sha256": r.data_sha, "n_fit": len(fit_v), "n_val": len(val_v),
                    "n_test": len(test_v), "shape": list(r.id_shape),
                    "data_root": str(r.data_root)}

    records: list[dict[str, Any]] = []
    paths: list[Path] = []
    failed: list[dict[str, Any]] = []
    previous: list[dict[str, Any]] = []
    skipped = 0
    fitted: dict[tuple[str, int], tuple[Any, float, Tensor | None, str | None]] = {}

    def get_detector(spec: str, seed: int):
        if (spec, seed) not in fitted:
            try:
                det, fit_s, from_cache = r.fit_detector(spec, seed, fit_v, val_v)
                s_in = _checked_scores(det, test_v)
                s_val = _checked_scores(det, val_v)
                fitted[(spec, seed)] = (det, fit_s, (s_in, s_val), None)
                if from_cache:
                    r.info(f"{det.spec()}: fitted detector loaded from cache")
            except BenchError as exc:
                fitted[(spec, seed)] = (None, 0.0, None, str(exc))
            except Exception as exc:  # a broken detector fails its cells, not the run
                log.debug("detector %s failed", spec, exc_info=True)
                fitted[(spec, seed)] = (None, 0.0, None, f"{type(exc).__name__}: {exc}")
        return fitted[(spec, seed)]

    def cell_record(det_spec: str, det: Any, shift_meta: dict[str, Any], seed: int) -> dict[str, Any]:
        det_meta = (_meta(det, DETECTORS) if det is not None else
                    {"name": parse_spec(det_spec).name, "spec": det_spec, "params": {}, "dist": None})
        cell_id = cache.config_hash({
            "schema_version": SCHEMA_VERSION, "dataset": dataset_meta["sha256"],
            "dataset_spec": cfg.dataset, "model": r.model_key,
            "detector": det_meta["spec"], "detector_params": det_meta["params"],
            "shift": shift_meta["spec"], "shift_params": shift_meta["params"],
            "shift_sha256": shift_meta.get("sha256"), "seed": seed})
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "cell_id": cell_id,
                "status": "ok", "error": None,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": cfg.command, "seed": seed, "dataset": dataset_meta, "model": model_meta,
                "detector": det_meta, "shift": shift_meta, "n_in": None, "n_out": None,
                "metrics": {}, "metrics_ci": {}, "classifier": {}, "plots": {}, "examples": {},
                "timings": {}, "environment": r.env}

    def record_path(rec: dict[str, Any]) -> Path:
        return out_dir / (f"{slug(rec['detector']['spec'], 50)}__{slug(rec['shift']['spec'], 70)}"
                          f"__seed{rec['seed']}__{rec['cell_id'][:12]}.json")

    def already_done(rec: dict[str, Any]) -> bool:
        p = record_path(rec)
        if cfg.force or not p.is_file():
            return False
        try:
            from bench.results import read_record
            old = read_record(p)
        except BenchError:
            return False
        return old.get("cell_id") == rec["cell_id"] and old.get("status") == "ok"

    def keep_previous(rec: dict[str, Any]) -> None:
        from bench.results import read_record
        previous.append(read_record(record_path(rec)))

    def finish(rec: dict[str, Any]) -> None:
        p = record_path(rec)
        write_record(rec, p)
        records.append(rec)
        paths.append(p)
        if rec["status"] == "failed":
            failed.append(rec)
        if on_record is not None:
            on_record(rec, p)

    def score_cells(shift_meta: dict[str, Any], seed: int, s_views: Views,
                    shifted_images: Tensor | None, cls_metrics: dict[str, Any], timings: dict,
                    keep_mask: Tensor | None) -> None:
        nonlocal skipped
        g = torch.Generator().manual_seed(seed)
        for det_spec in r.detector_specs:
            probe = cell_record(det_spec, DETECTORS.create(det_spec, device=str(r.device)),
                                shift_meta, seed)
            if already_done(probe):
                skipped += 1
                keep_previous(probe)
                continue
            det, fit_s, scores, err = get_detector(det_spec, seed)
            rec = cell_record(det_spec, det, shift_meta, seed) if det is not None else probe
            rec["classifier"] = cls_metrics
            rec["timings"] = {**timings, "fit": fit_s}
            if err is not None:
                rec["status"], rec["error"] = "failed", err
                finish(rec)
                continue
            try:
                t = time.perf_counter()
                s_in, s_val = scores
                s_out = _checked_scores(det, s_views)
                if keep_mask is not None:  # successful_only: both sides restricted (METHODS.md §2)
                    s_in, s_out = s_in[keep_mask], s_out[keep_mask]
                if len(s_out) == 0 or len(s_in) == 0:
                    raise BenchError("empty set: no images left to score "
                                     "(successful_only with no successful attack?)")
                si, so, sv = s_in.numpy(), s_out.numpy(), s_val.numpy()
                rec["metrics"] = detector_metrics(si, so, sv)
                rec["metrics_ci"] = {m: list(bootstrap_ci(si, so, m, n_boot=N_BOOT, seed=seed))
                                     for m in ("auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_oodpos")}
                rec["n_in"], rec["n_out"] = int(len(si)), int(len(so))
                fpr, tpr = roc_points(si, so)
                rec["plots"] = {"scores_in": _sample(si, g), "scores_out": _sample(so, g),
                                "roc_fpr": [float(v) for v in fpr], "roc_tpr": [float(v) for v in tpr]}
                ex = {"shift_png": png_grid(shifted_images) if shifted_images is not None else None,
                      "detector_png": None}
                if hasattr(det, "reconstruct") and shifted_images is not None:
                    ex["detector_png"] = png_grid(det.reconstruct(shifted_images[:8]))
                rec["examples"] = ex
                rec["timings"]["score"] = time.perf_counter() - t
                rec["timings"]["total"] = sum(v for v in rec["timings"].values() if v)
            except BenchError as exc:
                rec["status"], rec["error"], rec["metrics"] = "failed", str(exc), {}
            except Exception as exc:
                log.debug("cell failed", exc_info=True)
                rec["status"], rec["error"], rec["metrics"] = ("failed",
                                                               f"{type(exc).__name__}: {exc}", {})
            finish(rec)

    def all_done(shift_meta: dict[str, Any], seed: int) -> bool:
        if cfg.force:
            return False
        probes = [cell_record(d, DETECTORS.create(d, device=str(r.device)), shift_meta, seed)
                  for d in r.detector_specs]
        if not all(already_done(p) for p in probes):
            return False
        for p in probes:
            keep_previous(p)
        return True

    def guarded(meta: dict[str, Any], seed: int, work: Callable[[], None]) -> None:
        """Run one shift's cells; a failure fails its cells (recorded), never the run."""
        try:
            work()
        except BenchError as exc:
            _fail_all(r, meta, seed, str(exc), cell_record, finish)
        except Exception as exc:
            log.debug("%s failed", meta["spec"], exc_info=True)
            _fail_all(r, meta, seed, f"{type(exc).__name__}: {exc}", cell_record, finish)

    def shift_cells(spec: str, meta: dict[str, Any], seed: int) -> None:
        shift, xs, y, shift_s = r.make_shift(spec, seed)
        sv = r.views(xs, name=f"{spec}-seed{seed}", labels=y, key=None,
                     keep_images=keep_images, index=r.test_idx)
        cls = classifier_metrics(sv.logits, y)
        pred = sv.logits.argmax(1)
        cls["attack_success"] = (attack_success(y, clean_pred, pred)
                                 if getattr(shift, "needs_model", False) else None)
        keep = ((clean_pred == y) & (pred != y)) if getattr(shift, "successful_only", False) else None
        score_cells(meta, seed, sv, xs, cls, {"views": t_views, "shift": shift_s}, keep)

    def ood_cells(meta: dict[str, Any], imgs: Tensor, load_s: float, seed: int) -> None:
        ov = r.views(imgs, name=f"ood-{slug(meta['name'], 30)}", labels=None,
                     key={"ood": meta["sha256"]}, keep_images=keep_images)
        cls = {"acc": None, "ece": None, "attack_success": None}
        score_cells(meta, seed, ov, imgs, cls, {"views": t_views, "shift": load_s}, None)

    n_units = len(cfg.seeds) * (len(r.shift_specs) + len(r.ood_specs))
    with progress.task("cells", n_units) as overall:
        for seed in cfg.seeds:
            # corruption and attack shifts of the ID test set
            for spec in r.shift_specs:
                shift = SHIFTS.create(spec, data_root=r.data_root)
                meta = {**_meta(shift, SHIFTS), "group": getattr(shift, "group", "corruption"),
                        "severity": getattr(shift, "severity", None), "proximity": None,
                        "sha256": None}
                if all_done(meta, seed):
                    skipped += len(r.detector_specs)
                else:
                    guarded(meta, seed, lambda: shift_cells(spec, meta, seed))
                overall.advance(1)
            # OOD sets: every image scored, resized to the ID format (METHODS.md §1)
            for spec in r.ood_specs:
                meta, imgs, load_s = r.ood_set(spec, seed, len(test_v))
                if all_done(meta, seed):
                    skipped += len(r.detector_specs)
                else:
                    guarded(meta, seed, lambda: ood_cells(meta, imgs, load_s, seed))
                overall.advance(1)

    return RunSummary(records=records, paths=paths, skipped=skipped, previous=previous,
                      failed=failed,
                      clean={**clean, "n": len(test_v)}, wall_s=time.perf_counter() - r.t0,
                      out_dir=out_dir)


def _u8_sha(images: Tensor) -> str:
    import hashlib

    return hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()


def _sample(values: np.ndarray, g: torch.Generator) -> list[float]:
    if len(values) <= N_PLOT_SCORES:
        return [float(v) for v in values]
    idx = torch.randperm(len(values), generator=g)[:N_PLOT_SCORES].sort().values.numpy()
    return [float(v) for v in values[idx]]


def _checked_scores(det: Any, views: Views) -> Tensor:
    from bench.detectors.base import check_scores

    return check_scores(det.score(views), len(views), det.spec())


def _fail_all(r: Runner, meta: dict[str, Any], seed: int, error: str, cell_record, finish) -> None:
    for d in r.detector_specs:
        try:
            det = DETECTORS.create(d, device=str(r.device))
        except BenchError:
            det = None
        rec = cell_record(d, det, meta, seed)
        rec["status"], rec["error"] = "failed", error
        finish(rec)
