"""`bench`: the command line. It parses arguments, calls the library, and prints.

User mistakes (BenchError) print one line ``bench: error: ...`` on stderr and exit 2.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations otherwise calls the network

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from bench.errors import BenchError
from bench.metrics import METRIC_TABLE

app = typer.Typer(
    name="bench",
    help="shiftbench: how well do detectors catch inputs an image classifier should not trust?\n\n"
         "Example: bench run --detector combined --attack fgsm",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]})


def _pipe_width() -> int:
    """Width for stdout that is not a terminal: $COLUMNS when it is a number, else 160."""
    try:
        return max(20, int(os.environ.get("COLUMNS", "160")))
    except ValueError:
        return 160


# piped or captured output gets a wide table instead of rich's 80-column default
out = Console(width=None if sys.stdout.isatty() else _pipe_width())
# messages to a log file or a pipe stay one line each (rich would hard-wrap them at 80 columns)
err = Console(stderr=True, soft_wrap=not sys.stderr.isatty())

#: the columns of `bench run`'s table, in %: detector metrics, then the classifier's
PCT_METRICS = tuple(m.key for m in METRIC_TABLE if m.summary and m.kind == "detector")
CLASSIFIER_COLUMNS = tuple(m.key for m in METRIC_TABLE if m.summary and m.kind == "classifier")
HEADERS = {m.key: m.label for m in METRIC_TABLE}
#: run-table columns left out first when the terminal is narrow (the records keep them)
NARROW_DROP = ("aupr_in", "aupr_out")


def _progress():
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn)

    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                    console=err, transient=True, disable=not err.is_terminal)


def _ints(text: Optional[str], what: str) -> Optional[list[int]]:
    if text is None:
        return None
    parts = [v.strip() for v in text.split(",")]
    if not any(parts):
        raise BenchError(f"{what} is empty")
    try:
        if not all(parts):
            raise ValueError
        return [int(v) for v in parts]
    except ValueError:
        raise BenchError(f"{what} must be comma-separated integers, e.g. 0,1,2 (got {text!r})") from None


#: seeds go to numpy / torch generators, which take unsigned 32-bit seeds everywhere we use them
MAX_SEED = 2**32 - 1


def _seed(seed: int) -> list[int]:
    if not 0 <= seed <= MAX_SEED:
        raise BenchError(f"--seed {seed} is out of range; seeds are integers from 0 to {MAX_SEED}")
    return [seed]


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` -> ``[0, 1, 2]``; BenchError (one line) for anything else.

    Rejected: empty entries (``0,,1``, a trailing comma), non-integers (``1.5``, ``x``),
    negatives, values above 2**32 - 1 (``numpy.random.default_rng`` and the record's seed
    field) and repeated seeds (``0,0`` would run and write the same cells twice).
    """
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise BenchError("--seeds is empty; give comma-separated integers, e.g. --seeds 0,1,2")
    seeds: list[int] = []
    for p in parts:
        if not p:
            raise BenchError(f"--seeds {text!r} has an empty entry; write e.g. --seeds 0,1,2")
        try:
            v = int(p)
        except ValueError:
            raise BenchError(f"--seeds must be comma-separated integers, e.g. 0,1,2 "
                             f"(got {p!r} in {text!r})") from None
        if not 0 <= v <= MAX_SEED:
            raise BenchError(f"--seeds: {p} is out of range; seeds are integers from 0 to "
                             f"{MAX_SEED}")
        if v in seeds:
            raise BenchError(f"--seeds: {v} is given twice; list each seed once, e.g. "
                             f"--seeds 0,1,2")
        seeds.append(v)
    return seeds


@app.command()
def run(
    detector: Annotated[list[str], typer.Option(
        "--detector", "-d", help="Detector spec(s), comma-separated or repeated; 'all' = every "
        "registered detector. Example: --detector msp,energy,'zhou(epochs=20)'")] = ["combined"],
    attack: Annotated[list[str], typer.Option(
        "--attack", "-a", help="Corruption or attack spec(s) applied to the ID test set; 'all' = "
        "every built-in shift except those aimed at a detector. 'adaptive_pgd(...)' attacks each "
        "detector itself: misclassified AND accepted (docs/adaptive.md). Example: --attack "
        "fgsm,'gaussian_noise(severity=1..5)','adaptive_pgd(eps=8/255,n=1000)'")] = ["fgsm"],
    ood: Annotated[list[str], typer.Option(
        "--ood", "-o", help="OOD set spec(s); 'all' = every OOD set found in the data root plus "
        "gaussian/uniform. Example: --ood mnist,npz:DIR/ood/dtd_subset10_resize32.npz")] = [],
    ood_attack: Annotated[list[str], typer.Option(
        "--ood-attack", help="Attack aimed at each detector that pushes every --ood set toward "
        "'in-distribution' (one attacked set per detector, recorded as SET+ATTACK next to the "
        "clean SET); side=both also pushes the ID test images toward 'OOD'. n= attacks a seeded "
        "subset. Example: --ood mnist --ood-attack 'adaptive_pgd(eps=8/255,n=1000)'")] = [],
    dataset: Annotated[str, typer.Option(
        help="ID dataset; imagefolder:ROOT streams ROOT/train and ROOT/val (ImageNet layout) "
             "batch by batch. Example: --dataset cifar10 (default: the embedded scikit-learn "
             "digits)")] = "digits",
    model: Annotated[Optional[str], typer.Option(
        help="Classifier architecture spec (default: cnn for digits, resnet20 for cifar10); "
             "torchvision:NAME(weights=FILE) and timm:NAME(checkpoint=FILE) load library models "
             "with their own preprocessing. Example: --model resnet56 or --model "
             "'torchvision:resnet18(weights=r18.pt)'")] = None,
    weights: Annotated[Optional[str], typer.Option(
        help="Checkpoint file (its sha256 goes into every record) or zoo name. "
             "Example: --weights ../shared/data/weights/akamaster/resnet20-12fca82f.th")] = None,
    norm: Annotated[Optional[str], typer.Option(
        help="Input normalisation: imagenet, cifar10 or none (default: the checkpoint's own). "
             "Example: --norm imagenet")] = None,
    data_root: Annotated[Optional[Path], typer.Option(
        help="Data root (default $BENCH_DATA, else ~/.cache/shiftbench/data). "
             "Example: --data-root /data/cifar")] = None,
    download: Annotated[bool, typer.Option(
        help="Download missing datasets and library weights (needs internet; offline runs "
             "name the file to pass instead). Example: --dataset cifar10 --download")] = False,
    seed: Annotated[int, typer.Option(help="Seed for shifts, synthetic sets and detector training. "
                                           "Example: --seed 1")] = 0,
    seeds: Annotated[Optional[str], typer.Option(
        help="Several seeds, one set of cells each (overrides --seed). Example: --seeds 0,1,2")]
        = None,
    model_seed: Annotated[int, typer.Option(
        help="Seed of a classifier trained on first use (cnn); recorded. Checkpoints ignore it. "
             "Example: --model-seed 1")] = 0,
    split_seed: Annotated[int, typer.Option(
        help="random_state of the val/test split of the ID test set (METHODS.md uses 0); vary it "
             "so that seed variance includes the split. Example: --split-seed 1")] = 0,
    severities: Annotated[Optional[str], typer.Option(
        help="Severities for every shift that has a severity table and none given. "
             "Example: --severities 1,3,5")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda. Example: --device cpu")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass. Example: --batch-size 512")]
        = 256,
    workers: Annotated[int, typer.Option(
        help="DataLoader processes decoding images of file-based sets (imagefolder:); 0 decodes "
             "in this process. Results do not depend on it. Example: --workers 8")] = 2,
    precision: Annotated[str, typer.Option(
        help="dtype of the classifier's forward pass for logits and features: fp32 (IEEE "
             "float32, no TF32 on CUDA), bf16 or fp16 (autocast; attacks and scores stay "
             "float32/float64). Example: --precision bf16")] = "fp32",
    out_dir: Annotated[Path, typer.Option("--out", help="Results folder (one JSON record per cell). "
                                                        "Example: --out results/")] = Path("results"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON lines on stdout "
                                                         "instead of the table. Example: --json > "
                                                         "records.jsonl")] = False,
    force: Annotated[bool, typer.Option(help="Recompute cells whose result file already exists. "
                                             "Example: --force")] = False,
    refit: Annotated[bool, typer.Option(help="Retrain detectors even if a fitted copy is cached. "
                                             "Example: --detector ae --refit")] = False,
    ood_jpeg: Annotated[Optional[int], typer.Option(
        help="JPEG-encode OOD images at this quality (4:2:0), like the JPEG CIFAR-10 copy. "
             "Example: --ood-jpeg 75")] = None,
    plugin: Annotated[list[str], typer.Option(
        help="Python file(s) registering extra shifts/detectors (also $BENCH_PLUGINS). "
             "Example: --plugin my_detector.py")] = [],
    executor: Annotated[str, typer.Option(
        help="Where units of work run: local (this process, one after the other) or ray "
             "(a local Ray instance sized to this machine, or the cluster at --ray-address; "
             "needs pip install 'shiftbench\\[ray]'). Example: --executor ray")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(
        help="Join this running Ray cluster instead of starting a local instance. "
             "Example: --executor ray --ray-address 10.0.0.5:6379")] = None,
    threads_per_worker: Annotated[int, typer.Option(
        help="With --executor ray: CPUs (and torch threads) per unit. "
             "Example: --threads-per-worker 2")] = 1,
) -> None:
    """Score every detector on every shift and OOD set; print a table and write JSON records.

    Example: bench run --detector combined --attack fgsm
    """
    from bench import progress
    from bench.executors import make_executor
    from bench.runner import RunConfig, run as run_matrix

    cfg = RunConfig(
        detectors=list(detector), shifts=list(attack), ood=list(ood),
        ood_attacks=list(ood_attack), dataset=dataset, model=model,
        weights=weights, norm=norm, data_root=data_root, download=download,
        seeds=parse_seeds(seeds) if seeds is not None else _seed(seed),
        severities=_ints(severities, "--severities"),
        model_seed=model_seed, split_seed=split_seed,
        device=device, batch_size=batch_size, out=out_dir, force=force, refit=refit,
        ood_jpeg=ood_jpeg, plugins=list(plugin), workers=workers, precision=precision,
        command="bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    runner = make_executor(executor, address=ray_address, threads=threads_per_worker)
    try:
        with _progress() as prog, progress.use(prog):
            summary = run_matrix(cfg, console=err, executor=runner)
    except KeyboardInterrupt:
        from bench import claims

        claims.release_own(out_dir)   # claims taken just before the interrupt
        raise
    if as_json:
        for rec in summary.previous + summary.records:
            sys.stdout.write(json.dumps(_strip(rec)) + "\n")
    else:
        _print_table(summary)
    err.print(f"{len(summary.paths)} record(s) written to {summary.out_dir}"
              + (f", {summary.skipped} cell(s) already done (use --force to recompute)"
                 if summary.skipped else "")
              + f" in {summary.wall_s:.1f}s")
    if summary.outdated:
        err.print(f"{summary.outdated} cell(s) recomputed: their records were made by older code "
                  f"(or other inputs)")
    if summary.failed:
        err.print(f"[red]{len(summary.failed)} cell(s) failed:[/red]")
        for rec in summary.failed:
            err.print(f"  {rec['detector']['spec']} x {rec['shift']['spec']} "
                      f"(seed {rec['seed']}): {rec['error']}")
        raise typer.Exit(1)


def _strip(rec: dict) -> dict:
    """Records without the bulky plot/example payloads, for --json."""
    return {k: v for k, v in rec.items() if k not in ("plots", "examples")}


def _print_table(summary) -> None:
    """The run's cells as one table that fits the terminal without breaking a name.

    Wide: every column. Narrower: AUPRin/AUPRout (and the seed when there is one) are left
    out. Narrower still: the shift spec may break before its parameters, ``gaussian_noise``
    over ``(severity=3)``. Names and numbers are never cut or folded.
    """
    done = [r for r in summary.previous + summary.records if r["status"] == "ok"]
    clean = [r for r in done if r["shift"]["group"] == "clean"]
    ok = [r for r in done if r["shift"]["group"] != "clean"]
    if clean:
        out.print(_clean_table(clean))
    if not ok:
        return
    t = None
    unlimited = out.options.update(width=100_000)  # measure the natural width, not a clamped one
    for wide, breakable in ((True, False), (False, False), (False, True)):
        t = _run_table(ok, wide=wide, breakable=breakable)
        if Measurement.get(out, unlimited, t).maximum <= out.width:
            break
    out.print(t)


def _run_table(ok: list[dict], *, wide: bool, breakable: bool) -> Table:
    from rich import box

    seeds = {r["seed"] for r in ok}
    show_seed = wide or len(seeds) > 1
    metrics = [m for m in PCT_METRICS if wide or m not in NARROW_DROP]
    t = Table(title="shiftbench results (%)", title_justify="left", box=box.SIMPLE_HEAD,
              pad_edge=False, collapse_padding=True, caption=None if wide else
              "AUPR and the other metrics: --json, the records or bench leaderboard",
              caption_justify="left")
    t.add_column("detector", no_wrap=not breakable)
    t.add_column("shift", no_wrap=not breakable)
    if show_seed:
        t.add_column("seed", justify="right", no_wrap=True)
    for m in metrics:
        t.add_column(HEADERS[m], justify="right", no_wrap=True)
    for head in ("acc", "ECE", "succ"):
        t.add_column(head, justify="right", no_wrap=True)
    # attacks aimed at the detector: the errors that got past it (docs/adaptive.md)
    undet = any(isinstance(r.get("adaptive"), dict) for r in ok)
    if undet:
        t.add_column("undet", justify="right", no_wrap=True)
    from bench.leaderboard.core import pretty_spec

    for r in ok:
        m, c = r["metrics"], r.get("classifier") or {}
        shift = pretty_spec(r["shift"]["name"] if r["shift"]["group"] == "ood"
                            else r["shift"]["spec"])
        det = r["detector"]["spec"]
        if breakable:  # a space before "(" lets rich wrap there, and only there
            shift, det = (x.replace("(", " (", 1) for x in (shift, det))
        t.add_row(det, shift, *([str(r["seed"])] if show_seed else []),
                  *[_pct(m.get(k)) for k in metrics],
                  *[_pct(c.get(k)) for k in ("acc", "ece", "attack_success")],
                  *([_pct(m.get("undetected_success"))] if undet else []))
    return t


def _clean_table(recs: list[dict]) -> Table:
    """Failure detection on the clean test set: does the score flag the classifier's errors?"""
    from rich import box

    t = Table(title="failure detection, clean test set (%)",
              title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    t.add_column("detector", no_wrap=True)
    if len({r["seed"] for r in recs}) > 1:
        t.add_column("seed", justify="right", no_wrap=True)
    for head in ("FD-AUROC", "AURC", "risk@95", "acc"):
        t.add_column(head, justify="right", no_wrap=True)
    for r in recs:
        f = r.get("failure") or {}
        seed = [str(r["seed"])] if len(t.columns) == 6 else []
        t.add_row(r["detector"]["spec"], *seed, _pct(f.get("fd_auroc")), _pct(f.get("aurc")),
                  _pct(f.get("risk95")), _pct(r["model"].get("clean_acc")))
    return t


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


@app.command("list")
def list_components(
    kind: Annotated[Optional[str], typer.Argument(
        help="shifts, detectors, datasets or models (default: all). Example: bench list detectors")]
        = None,
    plugin: Annotated[list[str], typer.Option(help="Python file(s) registering extra components. "
                                                   "Example: --plugin my_detector.py")] = [],
) -> None:
    """List every registered shift, detector, dataset and model with its parameters."""
    from bench.plugins import load_plugins
    from bench.registry import DATASETS, DETECTORS, MODELS, SHIFTS, summary

    load_plugins(list(plugin) or None)
    tables = {"shifts": SHIFTS, "detectors": DETECTORS, "datasets": DATASETS, "models": MODELS}
    if kind is not None and kind not in tables:
        raise BenchError(f"unknown kind {kind!r}: choose shifts, detectors, datasets or models")
    for name, reg in tables.items():
        if kind is not None and name != kind:
            continue
        t = Table(title=name, title_justify="left")
        t.add_column("name", style="bold", no_wrap=True)
        t.add_column("parameters (defaults)")
        if name == "shifts":
            t.add_column("by severity 1..5")
        t.add_column("description")
        t.add_column("from")
        for comp_name, cls in reg.items():
            label = f"{comp_name}:ARG" if getattr(cls, "takes_arg", False) else comp_name
            cells = [label, _param_text(reg, comp_name, cls)]
            if name == "shifts":
                cells.append(_severity_text(cls))
            t.add_row(*cells, summary(cls), reg.dist_of(comp_name) or "built-in")
        out.print(t)
        for problem in reg.problems:
            err.print(f"[yellow]warning:[/yellow] {problem}")


def _value_text(v) -> str:
    """A parameter value for `bench list`: 4/255 rather than 0.01568627450980392."""
    if isinstance(v, float) and not isinstance(v, bool):
        k = v * 255
        if len(repr(v)) > 6 and abs(k - round(k)) < 1e-9 and round(k) != 0:
            return f"{round(k)}/255"
        return f"{v:g}"
    return repr(v)


def _param_text(reg, comp_name: str, cls) -> str:
    """``k=v, ...`` with the defaults a component really uses: a shift created without
    parameters shows its resolved severity and the values that severity sets (not None)."""
    from bench.registry import signature_params

    # what the run supplies (device, data root, seed, pixel step) is not typed by users
    hidden = getattr(cls, "context_params", ("device", "data_root"))
    params = {k: v for k, v in signature_params(cls).items() if k not in hidden}
    if not getattr(cls, "takes_arg", False) and hasattr(cls, "severity_keys"):
        try:
            params = {k: v for k, v in reg.create(comp_name).get_params().items()
                      if k in params}
        except Exception:  # noqa: BLE001 - a plugin's constructor must not break `bench list`
            pass  # a shift that cannot be built without arguments keeps its signature defaults
    elif params.get("severity", 0) is None:
        params["severity"] = 3  # cifar10c:ARG: no severity given means severity 3
    return ", ".join(f"{k}={_value_text(v)}" for k, v in params.items())


def _severity_text(cls) -> str:
    """What severity 1..5 sets, e.g. ``eps: 1/255 2/255 4/255 8/255 16/255``."""
    keys = cls.severity_keys() if hasattr(cls, "severity_keys") else ()
    if keys:
        table = ({cls.severity_param: cls.severities} if cls.severity_param
                 else dict(cls.severity_table))
        return "\n".join(f"{k}: " + " ".join(_value_text(float(v)) for v in table[k])
                         for k in keys)
    if "severity" in _signature_names(cls):
        if getattr(cls, "parts", None):
            return "passed on to its " + ", ".join(cls.parts)
        return "the files' own severity levels"
    return "-"


def _signature_names(cls) -> set[str]:
    from bench.registry import signature_params

    return set(signature_params(cls))


@app.command()
def leaderboard(
    results_dir: Annotated[Path, typer.Argument(help="Folder of result records written by bench run. "
                                                      "Example: results")],
    fmt: Annotated[Optional[str], typer.Option(
        "--format", "-f", help="terminal, md, csv or html (default: from the --out file's "
        "extension, .html/.md/.csv, else terminal). Example: --format html")] = None,
    metric: Annotated[str, typer.Option(help="Metric of the main matrix: auroc, aupr_in, aupr_out, "
                                             "fpr95, fpr95_oodpos, detect95. Example: --metric fpr95")]
        = "auroc",
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write to this file instead of "
                                                                   "stdout. Example: --out board.html")]
        = None,
) -> None:
    """Build a leaderboard from result files only.

    Example: bench leaderboard results --format html --out board.html
    """
    from bench.leaderboard import render

    if fmt is None:  # board.html is an HTML board, not terminal text in a .html file
        suffix = out_file.suffix.lower() if out_file is not None else ""
        fmt = {".html": "html", ".htm": "html", ".md": "md", ".csv": "csv"}.get(suffix,
                                                                                "terminal")
    # one unreadable record must not hide the others: it is skipped with a warning line each
    text = render(results_dir, fmt=fmt, metric=metric, out=out_file, console=out,
                  skip_invalid=True)
    if out_file is not None:
        err.print(f"leaderboard written to {out_file}")
    elif fmt != "terminal" and text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command()
def train(
    model: Annotated[str, typer.Option(help="Architecture spec. Example: --model resnet20")] = "resnet20",
    dataset: Annotated[str, typer.Option(help="ID dataset. Example: --dataset cifar10")] = "cifar10",
    data_root: Annotated[Optional[Path], typer.Option(help="Data root. Example: --data-root DIR")]
        = None,
    epochs: Annotated[int, typer.Option(help="Training epochs. Example: --epochs 30")] = 30,
    batch_size: Annotated[int, typer.Option(help="Batch size. Example: --batch-size 128")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate. Example: --lr 0.1")] = 0.1,
    holdout: Annotated[float, typer.Option(
        help="Fraction of the training split kept out (stratified) and reported. Example: "
             "--holdout 0.05")] = 0.0,
    flip: Annotated[bool, typer.Option(
        help="Random horizontal flips in training (turn off for digits and text). "
             "Example: --no-flip")] = True,
    seed: Annotated[int, typer.Option(help="Seed. Example: --seed 0")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda. Example: --device cuda")] = "auto",
    out_file: Annotated[Path, typer.Option("--out", help="Checkpoint path to write. Example: "
                                                         "--out resnet20-cifar10.pt")]
        = Path("checkpoint.pt"),
) -> None:
    """Train a classifier on an ID dataset's training split (GPU when present).

    Example: bench train --model resnet20 --dataset cifar10 --data-root DIR --out r20.pt
    """
    from bench import progress
    from bench.datasets.base import LoadContext, load_set
    from bench.models.train import train_classifier
    from bench.plan import Paths, resolve_device

    dev = resolve_device(device)
    paths = Paths.resolve(data_root=data_root)
    ctx = LoadContext(data_root=paths.data_root, cwd=paths.cwd)
    _, train_set = load_set(dataset, "train", ctx)
    num_classes = int(train_set.labels.max()) + 1
    with _progress() as prog, progress.use(prog):
        clf, info = train_classifier(model, train_set, num_classes=num_classes, epochs=epochs,
                                     batch_size=batch_size, lr=lr, device=dev, seed=seed,
                                     holdout=holdout, flip=flip)
    from bench.models.train import save_checkpoint

    sha = save_checkpoint(clf, out_file, info=info)
    err.print(f"checkpoint written to {out_file} (sha256 {sha[:12]}); use it with "
              f"--weights {out_file}; "
              f"{json.dumps({k: v for k, v in info.items() if isinstance(v, (int, float, str))})}")


INTERRUPTED = ("bench: interrupted; finished cells are saved, run the same command again to "
               "complete the rest\n")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: BenchError -> one line on stderr, exit 2."""
    logging.basicConfig(level=logging.WARNING, format="bench: %(levelname)s: %(message)s")
    try:
        rc = app(args=argv, prog_name="bench", standalone_mode=False)
        if isinstance(rc, int):  # typer.Exit(n) comes back as a return value here
            if rc == 130:  # typer turns KeyboardInterrupt into Exit(130)
                sys.stderr.write(INTERRUPTED)
            return rc
    except BenchError as exc:
        sys.stderr.write(f"bench: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(INTERRUPTED)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        # typer >= 0.2x vendors click (typer._click) and older typers use click itself: the
        # exceptions are recognised by their interface, not imported from either module
        if callable(getattr(exc, "format_message", None)) and isinstance(
                getattr(exc, "exit_code", None), int):
            sys.stderr.write(f"bench: error: {' '.join(exc.format_message().split())}\n")
            return 2
        if type(exc).__name__ == "Abort":  # click's wrapping of KeyboardInterrupt
            sys.stderr.write(INTERRUPTED)
            return 130
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
