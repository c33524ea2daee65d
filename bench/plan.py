"""Stage 1 of a run: what ``bench run`` was asked, parsed, expanded and validated once.

:class:`Paths` is resolved at the edge (CLI or Python API) from arguments and environment
variables; nothing below it reads ``$BENCH_HOME``, ``$BENCH_DATA``, ``$BENCH_PLUGINS`` or the
working directory. :func:`make_plan` turns a :class:`RunConfig` into a frozen :class:`Plan`:
every spec parsed and expanded (severities, sweeps) into canonical spec strings, every
component instantiated once to validate its parameters, ``--ood all`` answered by the dataset
classes themselves, and the model defaulted by the dataset class.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._lazy import torch
from bench.errors import BenchError
from bench.results import check_dir_writable
from bench.registry import (DATASETS, DETECTORS, MODELS, SHIFTS, Spec, expand, parse_spec,
                            split_specs)

#: largest seed torch.Generator.manual_seed and numpy accept everywhere we use them
MAX_SEED = 2**32 - 1


@dataclass
class RunConfig:
    """Everything ``bench run`` takes. Lists hold spec strings (``fgsm(eps=4/255)``)."""

    detectors: list[str] = field(default_factory=lambda: ["combined"])
    shifts: list[str] = field(default_factory=lambda: ["fgsm"])
    ood: list[str] = field(default_factory=list)
    #: attacks aimed at the detector applied to every OOD set (``adaptive_pgd(eps=8/255)``)
    ood_attacks: list[str] = field(default_factory=list)
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
    #: caches (trained models, fitted detectors, views); None = $BENCH_HOME or ~/.cache/shiftbench
    home: Path | None = None
    #: seed of a classifier trained on first use (``cnn``); checkpoints ignore it
    model_seed: int = 0
    #: random_state of the val/test split of the ID test set (METHODS.md §1 uses 0)
    split_seed: int = 0
    #: DataLoader worker processes decoding file-based sets (``imagefolder:``)
    workers: int = 2
    #: dtype of the classifier's forward pass for views: fp32, bf16 or fp16 (autocast)
    precision: str = "fp32"


@dataclass(frozen=True)
class Paths:
    """Every location a run reads or writes, absolute, resolved once at the edge."""

    home: Path       # caches: models/, weights/, detectors/, views/
    data_root: Path
    out: Path        # results root; records go to a sub-folder per (dataset, model, weights)
    cwd: Path        # relative paths in specs (npz:rel/path.npz) are taken from here

    @classmethod
    def resolve(cls, *, home: str | os.PathLike | None = None,
                data_root: str | os.PathLike | None = None,
                out: str | os.PathLike = "results") -> "Paths":
        """Arguments first, then ``$BENCH_HOME`` / ``$BENCH_DATA``, then the defaults."""
        env_home = os.environ.get("BENCH_HOME")
        h = Path(home or env_home or Path.home() / ".cache" / "shiftbench").expanduser()
        env_data = os.environ.get("BENCH_DATA")
        d = Path(data_root or env_data or h / "data").expanduser()
        cwd = Path.cwd()
        return cls(home=(cwd / h).resolve(), data_root=(cwd / d).resolve(),
                   out=(cwd / Path(out).expanduser()).resolve(), cwd=cwd)

    def check_writable(self) -> None:
        """BenchError before any work when the results folder or the cache cannot be written."""
        for what, path, option in (("results folder", self.out, "--out"),
                                   ("cache folder (BENCH_HOME)", self.home, "$BENCH_HOME")):
            check_dir_writable(path, what, option)


@dataclass(frozen=True)
class Plan:
    """A validated run: canonical specs, resolved options, plugin files. Immutable, picklable."""

    dataset: str
    dataset_name: str
    model: str
    weights: str | None
    norm: str | None
    download: bool
    device: str
    batch_size: int
    detectors: tuple[str, ...]
    shifts: tuple[str, ...]
    ood: tuple[str, ...]
    ood_attacks: tuple[str, ...]
    seeds: tuple[int, ...]
    model_seed: int
    split_seed: int
    #: the ID dataset's pixel quantisation step (attacks' eps tables count steps)
    pixel_step: float
    ood_jpeg: int | None
    force: bool
    refit: bool
    plugins: tuple[str, ...]
    command: str
    #: union of what the detectors declare they need (adapters declare it per instance)
    needs: frozenset[str]
    workers: int = 2
    precision: str = "fp32"
    #: the ID dataset is read from files batch by batch (``imagefolder:``)
    streams: bool = False

    @property
    def keep_images(self) -> bool:
        return "images" in self.needs


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


def check_seed(value: int, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise BenchError(f"{option} {value!r} out of range: seeds are integers 0..{MAX_SEED}")
    return value


def check_seeds(seeds: list[int]) -> tuple[int, ...]:
    if not seeds:
        raise BenchError("no seeds given: use --seeds 0 (or 0,1,2)")
    for s in seeds:
        check_seed(s, "seed")
    if len(set(seeds)) != len(seeds):
        raise BenchError(f"--seeds lists a seed twice ({','.join(map(str, seeds))})")
    return tuple(seeds)


def make_plan(cfg: RunConfig, paths: Paths, plugins: list[str] | None = None) -> Plan:
    """Parse, expand and validate everything ``cfg`` asks for; no data is loaded.

    ``plugins``: the plugin files to load (the edge adds ``$BENCH_PLUGINS`` to ``--plugin``);
    None = ``cfg.plugins`` alone. They are stored absolute, for workers on other processes."""
    from bench.plugins import load_plugin_files

    plugins = tuple(str((paths.cwd / Path(p).expanduser()).resolve())
                    for p in (cfg.plugins if plugins is None else plugins))
    load_plugin_files(plugins)
    if isinstance(cfg.batch_size, bool) or not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        raise BenchError(f"--batch-size must be an integer >= 1, got {cfg.batch_size!r}")
    seeds = check_seeds(list(cfg.seeds))
    check_seed(cfg.model_seed, "--model-seed")
    check_seed(cfg.split_seed, "--split-seed")
    if isinstance(cfg.workers, bool) or not isinstance(cfg.workers, int) or cfg.workers < 0:
        raise BenchError(f"--workers must be an integer >= 0 (0: decode in this process), got "
                         f"{cfg.workers!r}")
    from bench.views import PRECISIONS

    if cfg.precision not in PRECISIONS:
        raise BenchError(f"--precision must be one of {', '.join(PRECISIONS)}, got "
                         f"{cfg.precision!r}")
    if cfg.ood_jpeg is not None and not 1 <= cfg.ood_jpeg <= 100:
        raise BenchError(f"--ood-jpeg must be a JPEG quality 1..100, got {cfg.ood_jpeg}")

    ds_spec = parse_spec(cfg.dataset)
    ds_cls = DATASETS.get(ds_spec.name)
    if not ds_cls.is_id:
        raise BenchError(f"{cfg.dataset!r} is an OOD set, not an ID dataset with train/test splits")
    DATASETS.create(ds_spec)  # its parameters, validated now
    model = cfg.model or ds_cls.default_model
    if model is None:
        raise BenchError(f"no default model for dataset {cfg.dataset!r}: pass --model")
    MODELS.create(parse_spec(model))  # the name and parameters, validated now
    streams = ds_cls.streams

    # specs first: a typo fails in a second, not after the feature pass
    detectors = _expand(cfg.detectors, DETECTORS, severities=None)
    shifts = _expand(cfg.shifts, SHIFTS, severities=cfg.severities)
    ood = _ood_specs(cfg.ood, paths.data_root, ds_spec.name)
    if not detectors:
        raise BenchError("no detector given: use --detector msp (or all)")
    if not shifts and not ood:
        raise BenchError("nothing to detect: give --attack A and/or --ood O")
    needs: set[str] = set()
    for s in detectors:
        if "seed" in parse_spec(s).params:
            raise BenchError(f"{s}: a detector's seed comes from --seeds, not from its spec")
        det = DETECTORS.create(s, device="cpu")  # validates parameters; the device comes later
        needs |= set(det.needs)
    if streams and "images" in needs:
        which = [s for s in detectors if "images" in DETECTORS.create(s, device="cpu").needs]
        needs_, it = (("needs", "it trains or scores") if len(which) == 1
                      else ("need", "they train or score"))
        raise BenchError(f"{', '.join(which)} {needs_} every image in memory ({it} on "
                         f"pixels); {cfg.dataset} is read from files batch by batch: use "
                         f"detectors on logits and features (msp, energy, mahalanobis, zhou)")
    for s in shifts:
        SHIFTS.create(s, data_root=paths.data_root, pixel_step=ds_cls.pixel_step)
        check_adaptive_spec(s, "--attack")
    ood_attacks = _expand(cfg.ood_attacks, SHIFTS, severities=None)
    for s in ood_attacks:
        check_adaptive_spec(s, "--ood-attack")
        SHIFTS.create(s, data_root=paths.data_root, pixel_step=ds_cls.pixel_step)
    adaptive = [s for s in shifts if SHIFTS.get(parse_spec(s).name).needs_detector] + ood_attacks
    if streams and adaptive:
        raise BenchError(f"{adaptive[0]}: attacks aimed at the detector keep the attacked images "
                         f"in memory; {cfg.dataset} is read from files batch by batch (use an "
                         f"in-memory dataset, or fgsm/pgd)")
    if ood_attacks and not ood:
        raise BenchError("--ood-attack attacks the OOD sets: give them with --ood (e.g. --ood "
                         "mnist)")
    # last: asking torch for a GPU is the first thing that loads it (specs are checked by then)
    device = resolve_device(cfg.device)
    return Plan(dataset=cfg.dataset, dataset_name=ds_spec.name, model=model,
                weights=cfg.weights, norm=cfg.norm, download=cfg.download, device=str(device),
                batch_size=cfg.batch_size, detectors=tuple(detectors), shifts=tuple(shifts),
                ood=tuple(ood), ood_attacks=tuple(ood_attacks), seeds=seeds, model_seed=cfg.model_seed,
                split_seed=cfg.split_seed, pixel_step=ds_cls.pixel_step, ood_jpeg=cfg.ood_jpeg,
                force=cfg.force,
                refit=cfg.refit, plugins=plugins, command=cfg.command, needs=frozenset(needs),
                workers=cfg.workers, precision=cfg.precision, streams=streams)


def check_adaptive_spec(spec: str, option: str) -> None:
    """BenchError unless ``spec`` names a shift aimed at the detector, used where it belongs."""
    cls = SHIFTS.get(parse_spec(spec).name)
    needs = cls.needs_detector
    if option == "--ood-attack" and not needs:
        raise BenchError(f"--ood-attack {spec}: only attacks aimed at the detector perturb OOD "
                         f"sets (e.g. --ood-attack 'adaptive_pgd(eps=8/255)')")
    if option == "--attack" and needs and parse_spec(spec).params.get("side") not in (None, "ood"):
        raise BenchError(f"--attack {spec}: side= applies to --ood-attack (which images of an "
                         f"OOD cell are attacked); drop it here")


def _expand(specs: list[str], registry: Any, severities: list[int] | None) -> list[str]:
    names = parse_list(specs)
    if any(n == "all" for n in names):
        rest = [n for n in names if n != "all"]
        builtin = [n for n in registry.names()
                   if not registry.get(n).takes_arg and not registry.get(n).hidden]
        names = builtin + [n for n in rest if parse_spec(n).name not in builtin]
    out: list[str] = []
    for n in names:
        spec = parse_spec(n)
        registry.get(spec.name)  # unknown names fail here, with suggestions
        for s in expand(spec):
            cls = registry.get(s.name)
            if (severities and "severity" in cls.param_names() and "severity" not in s.params
                    and not set(cls.severity_keys()) & set(s.params)):
                out.extend(str(Spec(s.name, s.arg, {**s.params, "severity": v})) for v in severities)
            else:
                out.append(str(s))
    return list(dict.fromkeys(out))


def _ood_specs(specs: list[str], data_root: Path, id_dataset: str) -> list[str]:
    names = parse_list(specs)
    if "all" in names:
        found = [s for _, cls in DATASETS.items() for s in cls.available(data_root, id_dataset)]
        names = [n for n in names if n != "all"] + found
    for n in names:
        DATASETS.get(parse_spec(n).name)
    return list(dict.fromkeys(names))


__all__ = ["RunConfig", "Paths", "Plan", "make_plan", "resolve_device", "parse_list", "slug",
           "check_seed", "check_seeds", "MAX_SEED"]
