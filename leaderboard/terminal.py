"""Terminal leaderboard: rich tables for one metric (matrix, ranking, classifier, severity)."""

from __future__ import annotations

import io

from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from bench.leaderboard.core import (
    FAILURE_HEADER, FAILURE_NOTE, METRIC_LABELS, ROBUST_HEADER, ROBUST_NOTE, SMALL_SET_LEGEND,
    Board, Section, cell_text, direction_text, failure_rows, is_best, pct, robust_rows,
    scope_label, spread_text,
)


def _fits(table: Table, width: int | None) -> bool:
    """Whether ``table`` at its natural width fits ``width`` columns (None: no limit)."""
    if width is None:
        return True
    console = Console(width=width, file=io.StringIO())
    return Measurement.get(console, console.options.update(width=100_000), table).maximum <= width


def _matrix(section: Section, metric: str, width: int | None = None) -> Table:
    """Detectors x shifts; when that is wider than ``width``, shifts x detectors, so the shift
    labels (``gaussian_noise(severity=3)``) stay whole instead of being cut to fit."""
    def text(det: str, label: str, ci_format: str = "[{lo}, {hi}]") -> Text:
        return Text(cell_text(section.cell(metric, det, label), ci_format),
                    style="bold green" if is_best(section, metric, det, label) else "")

    title = f"{METRIC_LABELS[metric]} (%), {direction_text(metric)}"
    t = Table(title=title, title_justify="left")
    t.add_column("detector", style="bold", no_wrap=True)
    for col in section.columns:
        t.add_column(col.label, justify="right", no_wrap=True)
    for det in section.detectors:
        t.add_row(det, *[text(det, col.label) for col in section.columns])
    if _fits(t, width):
        return t
    for ci_format, wrap in (("[{lo}, {hi}]", False), ("[{lo},{hi}]", True)):
        # very narrow: a cell breaks between the value and its interval, "95.9" over "[95.0,96.7]"
        t = Table(title=title, title_justify="left")
        t.add_column("shift", no_wrap=True)
        for det in section.detectors:
            t.add_column(det, justify="right", header_style="bold", no_wrap=not wrap,
                         min_width=len(det))
        for col in section.columns:
            t.add_row(col.label, *[text(det, col.label, ci_format) for det in section.detectors])
        if _fits(t, width):
            break
    return t


def _ranking(section: Section, metric: str, width: int | None = None) -> Table:
    """Detectors (by overall rank) x scopes; when that is wider than ``width``, scopes x
    detectors, so detector names and scope headers stay whole."""
    scopes = list(section.rankings[metric])
    title = f"Ranking: mean {METRIC_LABELS[metric]} (%) over shifts"
    lookup = {s: {r.detector: r for r in section.rankings[metric][s]} for s in scopes}
    order = [row.detector for row in section.rankings[metric]["all"]]

    def text(s: str, det: str) -> str:
        r = lookup[s][det]
        out = pct(r.mean) + ("" if s == "all" else f" #{r.rank}")
        if r.mean is not None and not r.complete:
            out += f" ({r.n_shifts}/{r.n_total})"
        return out

    t = Table(title=title, title_justify="left")
    t.add_column("rank", justify="right", no_wrap=True)
    t.add_column("detector", style="bold", no_wrap=True)
    for s in scopes:
        t.add_column(scope_label(s), justify="right", no_wrap=True)
    for rank, det in enumerate(order, 1):
        t.add_row(str(rank), det, *[text(s, det) for s in scopes])
    if _fits(t, width):
        return t
    t = Table(title=title, title_justify="left")
    t.add_column("shifts", no_wrap=True)
    for det in order:
        t.add_column(det, justify="right", header_style="bold", min_width=len(det))
    for s in scopes:
        t.add_row(scope_label(s), *[text(s, det) for det in order])
    return t


def _classifier(section: Section) -> Table:
    t = Table(title="Classifier on each shifted set (%)", title_justify="left")
    for name, just in (("shift", "left"), ("group", "left"), ("acc", "right"), ("ECE", "right"),
                       ("attack success", "right")):
        t.add_column(name, justify=just, no_wrap=name == "shift")  # type: ignore[arg-type]
    t.add_row("clean (ID test)", "-", cell_text(section.clean["acc"]),
              cell_text(section.clean["ece"]), "-")
    for col in section.columns:
        c = section.classifier[col.label]
        t.add_row(col.label, col.group, cell_text(c["acc"]), cell_text(c["ece"]),
                  cell_text(c["attack_success"]))
    return t


def _text_table(heads: tuple[str, ...], body: list[list[str]], title: str | None,
                left: tuple[str, ...]) -> Table:
    """A table of text cells: the ``left`` columns left-aligned, the numbers right-aligned,
    nothing wrapped."""
    t = Table(title=title, title_justify="left")
    for head in heads:
        t.add_column(head, justify="left" if head in left else "right", no_wrap=True)
    for row in body:
        t.add_row(*row)
    return t


def _failure(section: Section, width: int | None = None) -> list[RenderableType]:
    """One table of every (set, detector); when wider than ``width``, one table per set, so
    labels and numbers stay whole."""
    rows = failure_rows(section)
    if not rows:
        return []
    title = "Failure detection (%): does the score flag the classifier's errors?"
    left = FAILURE_HEADER[:2]
    whole = _text_table(FAILURE_HEADER, rows, title, left)
    if _fits(whole, width):
        return [whole, Text(FAILURE_NOTE, style="dim")]
    out: list[RenderableType] = [Text(title, style="italic")]
    for label in dict.fromkeys(r[0] for r in rows):
        out.append(_text_table(FAILURE_HEADER[1:], [r[1:] for r in rows if r[0] == label],
                               label, left))
    return out + [Text(FAILURE_NOTE, style="dim")]


def _robust(section: Section, width: int | None = None) -> list[RenderableType]:
    """The robust view; when wider than ``width``, one table per detector."""
    rows = robust_rows(section)
    if not rows:
        return []
    title = "Attacks aimed at the detector (%)"
    whole = _text_table(ROBUST_HEADER, rows, title,
                        ("detector", "attack aimed at it", "reference", "worst AUROC"))
    if _fits(whole, width):
        return [whole, Text(ROBUST_NOTE, style="dim")]
    # narrow terminals: one small table per (detector, attack), adaptive beside its reference
    out: list[RenderableType] = [Text(title, style="italic")]
    for row, r in zip(rows, section.robust):
        t = _text_table(("", "adaptive", "reference"),
                        [["AUROC", row[2], row[6]], ["Undet95", row[4], row[7]],
                         ["Det95", row[3], ""], ["AUROC 2x steps", row[8], ""]],
                        f"{r.detector} · {row[1]}", ("",))
        out += [t, Text(f"reference: {r.reference}", style="dim")]
        if row[9]:
            out.append(Text(f"worst AUROC of {r.detector}: {row[9]}"))
    return out + [Text(ROBUST_NOTE, style="dim")]


def _severity(section: Section, metric: str) -> list[Table]:
    tables = []
    for name, per_det in section.severity[metric].items():
        sevs = [s for s, _ in next(iter(per_det.values()))]
        t = Table(title=f"{name}: {METRIC_LABELS[metric]} (%) by severity", title_justify="left")
        t.add_column("detector", style="bold")
        for s in sevs:
            t.add_column(f"s{s}", justify="right")
        for det, pts in per_det.items():
            t.add_row(det, *[cell_text(c) for _, c in pts])
        tables.append(t)
    return tables


def renderables(board: Board, metric: str = "auroc",
                width: int | None = None) -> list[RenderableType]:
    """The rich objects of the board, section by section; ``width``: the terminal's columns
    (a matrix too wide for it is shown with shifts as rows)."""
    out: list[RenderableType] = []
    for section in board.sections:
        parts: list[RenderableType] = [
            Text(section.title, style="bold underline"),
            Text(spread_text(section), style="dim"),
            Text(f"seeds {', '.join(map(str, section.seeds))}; values: mean±std over seeds or "
                 "mean [95 % bootstrap interval]", style="dim"),
            _ranking(section, metric, width), _matrix(section, metric, width),
            _classifier(section),
            *_failure(section, width),
            *_robust(section, width),
            *_severity(section, metric),
        ]
        if section.has_small:
            parts.append(Text(SMALL_SET_LEGEND, style="yellow"))
        parts += [Text(f"note: {n}", style="yellow") for n in section.notes]
        out.append(Group(*parts, Text("")))
    return out


def render(board: Board, metric: str = "auroc", console: Console | None = None,
           width: int | None = None) -> str:
    """Print the board to ``console`` (when given) and return it as plain text."""
    width = width or (console.width if console is not None else 160)
    items = renderables(board, metric, width)
    if console is not None:
        for item in items:
            console.print(item)
    buf = io.StringIO()
    plain = Console(file=buf, width=width, color_system=None, force_terminal=False,
                    no_color=True, highlight=False, soft_wrap=False)
    for item in items:
        plain.print(item)
    return buf.getvalue()
