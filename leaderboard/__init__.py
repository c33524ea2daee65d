"""shiftbench leaderboards (installed as bench.leaderboard): a pure function of a folder of records.

``render(results_dir, fmt=..., metric=..., out=...)`` loads every record under the folder through
:mod:`bench.results` (failed cells included, so they show as failed), aggregates them with
:func:`bench.leaderboard.core.build` and renders one of the formats below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from bench.errors import BenchError, did_you_mean
from bench.leaderboard.core import METRICS, Board, build
from bench.results import atomic_write_text, check_dir_writable, load_records, record_files

FORMATS: tuple[str, ...] = ("terminal", "md", "csv", "html")

__all__ = ["FORMATS", "METRICS", "Board", "build", "render"]


def _choice(kind: str, value: str, options: tuple[str, ...], flag: str) -> None:
    if value in options:
        return
    hint = did_you_mean(value, options, cutoff=0.6, show=lambda c: f"`{flag} {c}`")
    raise BenchError(f"unknown {kind} {value!r}{hint} (choose one of: {', '.join(options)})")


def render(results_dir: Path | str, *, fmt: str = "terminal", metric: str = "auroc",
           out: Path | None = None, console: Any = None, skip_invalid: bool = False) -> str:
    """Render the leaderboard of ``results_dir`` as ``fmt`` and return the text.

    ``fmt``: ``terminal`` (rich tables; printed to ``console`` when given, plain text returned),
    ``md``, ``csv`` or ``html`` (one self-contained file). ``metric`` picks the matrix shown in the
    terminal, the one listed first in markdown and the one selected in HTML, and ranks detectors
    (the CSV always holds every metric). ``out``: also write the text there, atomically.
    Raises BenchError for an unknown format or metric, an empty folder, unreadable records or
    records of an unsupported schema version. ``skip_invalid=True`` (what `bench leaderboard`
    does) renders the readable records and logs one warning per unreadable or invalid file
    instead; a folder with no readable record is still an error.
    """
    _choice("format", fmt, FORMATS, "--format")
    _choice("metric", metric, METRICS, "--metric")
    if out is not None:  # before the work, not after it
        out = Path(out)
        if out.is_dir():
            ext = {"terminal": "txt"}.get(fmt, fmt)
            raise BenchError(f"--out {out} is a folder; give a file name, e.g. "
                             f"--out {out / f'board.{ext}'}")
        check_dir_writable(out.parent, "leaderboard output folder", "--out")
    results_dir = Path(results_dir)
    records = load_records(results_dir, include_failed=True, skip_invalid=skip_invalid)
    if not records:
        n_files = len(record_files(results_dir))
        if n_files:  # only reachable with skip_invalid: every file was skipped
            raise BenchError(f"no readable results in {results_dir}: all {n_files} record "
                             f"file(s) were skipped as invalid (see the warnings above)")
        raise BenchError(f"no results in {results_dir}; run `bench run --out {results_dir}` first")
    board = build(records)
    renderers: dict[str, Callable[[], str]] = {
        "terminal": lambda: _terminal(board, metric, console),
        "md": lambda: _module("markdown").render(board, metric),
        "csv": lambda: _module("csv_format").render(board, metric),
        "html": lambda: _module("html").render(board, metric),
    }
    text = renderers[fmt]()
    if out is not None:
        atomic_write_text(out, text)
    return text


def _terminal(board: Board, metric: str, console: Any) -> str:
    from bench.leaderboard import terminal

    return terminal.render(board, metric, console=console)


def _module(name: str) -> Any:
    import importlib

    return importlib.import_module(f"bench.leaderboard.{name}")
