"""The detector x shift matrix: plan -> context -> fit -> units on an executor -> records.

1. :func:`bench.plan.make_plan` parses and validates every spec (a typo fails in a second);
2. :func:`bench.context.build_context` loads the ID data and classifier and their views, once;
3. :func:`bench.fit.fit_detectors` fits each detector that has cells to compute, once per seed;
4. :func:`bench.units.run_unit` runs per shifted set (a shift and seed, or an OOD set), mapped
   over an executor (:mod:`bench.executors`: this process, or Ray workers);
5. each unit writes one JSON record per cell; the leaderboard reads only those.

The runner never branches on a component's name: what a component needs is declared on its class.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from bench import progress
from bench.executors import LocalExecutor, RayExecutor
from bench.plan import Paths, RunConfig, make_plan
from bench.results import check_dir_writable

if TYPE_CHECKING:
    from bench.units import Unit, UnitResult

log = logging.getLogger(__name__)

#: seconds between looks at cells another run is computing
WAIT_POLL_S = 0.5


@dataclass
class RunSummary:
    records: list[dict[str, Any]]
    paths: list[Path]
    skipped: int
    #: records of cells that were already done (resume, or computed by a concurrent run)
    previous: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    clean: dict[str, Any]
    wall_s: float
    out_dir: Path
    #: records made by older code (or other inputs) that were recomputed
    outdated: int = 0
    #: units whose shifted-set views came from the cache (no shift, no forward pass)
    shift_views_cached: int = 0
    units: int = 0
    executor: str = "local"
    timings: dict[str, float] = field(default_factory=dict)


def run(cfg: RunConfig, console: Any = None,
        on_record: Callable[[dict[str, Any], Path], None] | None = None,
        executor: LocalExecutor | RayExecutor | None = None,
        paths: Paths | None = None) -> RunSummary:
    """Run every detector on every shift and OOD set for every seed; write one record per cell.

    ``paths`` None resolves them here from ``cfg`` and the environment (the Python API's edge);
    ``executor`` None runs every unit in this process.
    """
    from bench.plugins import plugin_paths

    t0 = time.perf_counter()
    executor = executor or LocalExecutor()
    say = _say(console)
    if paths is None:
        paths = Paths.resolve(home=cfg.home, data_root=cfg.data_root, out=cfg.out)
    plan = make_plan(cfg, paths, plugin_paths(cfg.plugins))
    paths.check_writable()
    # torch and the data stack load only now: a typo above is reported without them
    from bench.fit import fit_detectors
    from bench.units import (attacked_ood_unit, clean_unit, load_ood, ood_unit, plan_cells,
                             run_unit, shift_unit)

    from bench.context import build_context, load_id_data

    data = load_id_data(plan, paths)
    release_freed_memory()
    # OOD sets load now: a missing or empty set is a usage error before any work is done
    oods = {(spec, seed): load_ood(spec, seed, paths, id_shape=data.shape, n_id_test=data.n_test,
                                   download=plan.download, jpeg=plan.ood_jpeg,
                                   preprocess=data.preprocess)
            for seed in plan.seeds for spec in plan.ood}
    release_freed_memory()
    ctx, id_views = build_context(plan, paths, data, say)
    # the ID pixels now live on in ctx (scored test images) and id_views (when a detector
    # needs them); the splits as loaded (CIFAR-10's 50,000 training images) are not needed
    del data
    release_freed_memory()
    check_dir_writable(ctx.out_dir, "results folder", "--out")  # its name needs the model
    units = [clean_unit(seed, plan.detectors) for seed in plan.seeds]
    for seed in plan.seeds:
        for s in plan.shifts:
            unit = shift_unit(s, seed, plan.detectors, paths.data_root, plan.pixel_step)
            # an attack aimed at the detector makes one attacked set per detector
            units += [unit.only((d,)) for d in plan.detectors] if unit.adaptive else [unit]
        units += [ood_unit(oods[(s, seed)], seed, plan.detectors) for s in plan.ood]
        units += [attacked_ood_unit(oods[(s, seed)], a, seed, (d,), paths.data_root,
                                    plan.pixel_step)
                  for s in plan.ood for a in plan.ood_attacks for d in plan.detectors]
    t_plan = time.perf_counter()

    # only units with cells to compute run, and only detectors with such cells are fitted
    previous: list[dict[str, Any]] = []
    pending: list[Unit] = []
    for unit in units:
        cells = plan_cells(ctx, unit, force=plan.force, command=plan.command)
        previous += [c.previous for c in cells if c.state == "done"]
        todo = tuple(c.detector for c in cells if c.state == "todo")
        if todo:
            pending.append(unit.only(todo))
    wanted = list(dict.fromkeys((d, u.seed) for u in pending for d in u.detectors))
    fitted = fit_detectors(wanted, ctx, id_views, home=paths.home, refit=plan.refit, say=say)
    t_fit = time.perf_counter()

    summary = RunSummary(records=[], paths=[], skipped=len(previous), previous=previous,
                         failed=[], clean={**ctx.clean, "n": len(ctx.test_labels)}, wall_s=0.0,
                         out_dir=ctx.out_dir, executor=executor.name)
    shared = {"ctx": ctx, "fitted": fitted, "paths": paths, "force": plan.force,
              "command": plan.command}
    gpus = 1 if str(ctx.device).startswith("cuda") else 0   # per unit, on Ray
    with progress.task(f"units ({executor.name})", len(pending)) as bar:
        todo_units = pending
        while todo_units:
            busy: list[Unit] = []
            for res in executor.map(run_unit, todo_units, shared, plan.plugins, gpus=gpus):
                _collect(summary, res, on_record)
                release_freed_memory()
                if res.busy:
                    busy.append(res.unit.only(tuple(res.busy)))
                else:
                    bar.advance(1)
            if busy:  # cells another run is computing: wait for its records (or a stale claim)
                time.sleep(WAIT_POLL_S)
                shared["force"] = False  # what the other run wrote now is current
            todo_units = busy
    summary.units = len(pending)
    summary.wall_s = time.perf_counter() - t0
    summary.timings = {"plan_context": t_plan - t0, "fit": t_fit - t_plan,
                       "units": time.perf_counter() - t_fit}
    return summary


def release_freed_memory() -> None:
    """Give the heap pages freed by the last stage back to the OS (glibc ``malloc_trim``).

    glibc keeps freed blocks of large temporaries (a set's float copy, decoded batches) in the
    heap, so every later stage starts from the high-water mark: measured on workload W, the
    driver held 1.36 GB before the first unit instead of 0.93 GB, and peaked at 1.92 GB instead
    of 1.78 GB. Other C libraries have no such call; nothing happens there."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _collect(summary: RunSummary, res: UnitResult,
             on_record: Callable[[dict[str, Any], Path], None] | None) -> None:
    for rec, path in res.written:
        summary.records.append(rec)
        summary.paths.append(path)
        if rec["status"] == "failed":
            summary.failed.append(rec)
        if on_record is not None:
            on_record(rec, path)
    summary.previous += res.previous
    summary.skipped += len(res.previous)
    summary.outdated += res.outdated
    summary.shift_views_cached += bool(res.shift_cached)


def _say(console: Any) -> Callable[[str], None]:
    def say(msg: str) -> None:
        if console is not None:
            console.print(msg)
        log.info(msg)
    return say


__all__ = ["RunConfig", "RunSummary", "run", "Paths"]
