"""GitHub-flavoured markdown leaderboard: matrices per metric, rankings, classifier, severity.

Values are percentages with one decimal: ``mean±std`` over seeds, or ``mean [lo, hi]`` (the
record's bootstrap 95 % interval) for a single run. The best value of each column is bold.
"""

from __future__ import annotations

from typing import Sequence

from bench.leaderboard.core import (
    FAILURE_HEADER, FAILURE_NOTE, METRIC_LABELS, METRICS, ROBUST_HEADER, ROBUST_NOTE,
    SMALL_SET_LEGEND, Board, Section, cell_text, direction_text, failure_rows, is_best, pct,
    robust_rows, scope_label, spread_text,
)


def _esc(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str]) -> list[str]:
    out = ["| " + " | ".join(_esc(h) for h in header) + " |",
           "|" + "|".join({"l": ":---", "r": "---:", "c": ":---:"}[a] for a in align) + "|"]
    out += ["| " + " | ".join(_esc(c) for c in row) + " |" for row in rows]
    return out


def matrix_lines(section: Section, metric: str) -> list[str]:
    """The detector x shift table of one metric (detectors as rows, shifts as columns)."""
    header = ["detector"] + [c.label for c in section.columns]
    rows = []
    for det in section.detectors:
        row = [det]
        for col in section.columns:
            text = cell_text(section.cell(metric, det, col.label))
            row.append(f"**{text}**" if is_best(section, metric, det, col.label) else text)
        rows.append(row)
    lines = [f"### {METRIC_LABELS[metric]} (%), {direction_text(metric)}", ""]
    return lines + _table(header, rows, ["l"] + ["r"] * len(section.columns)) + [""]


def ranking_lines(section: Section, metric: str) -> list[str]:
    """Detectors ranked by the mean over all shifts; other scopes show value and rank."""
    scopes = list(section.rankings[metric])
    by_scope = {s: {row.detector: row for row in section.rankings[metric][s]} for s in scopes}
    header = ["rank", "detector"] + [f"{scope_label(s)} ({len(_cols(section, s))})"
                                     for s in scopes]
    rows = []
    for row in section.rankings[metric]["all"]:
        cells = [str(row.rank), row.detector]
        for s in scopes:
            r = by_scope[s][row.detector]
            text = f"{pct(r.mean)} (#{r.rank})" if s != "all" else pct(r.mean)
            if r.mean is not None and not r.complete:
                text += f" [{r.n_shifts}/{r.n_total} shifts]"
            cells.append(text)
        rows.append(cells)
    lines = [f"### Ranking by mean {METRIC_LABELS[metric]} (%) over shifts, "
             f"{direction_text(metric)}", "",
             "Each shift weighs the same; seeds are averaged first. `#k` is the rank within that "
             "group of shifts; the number of shifts is in the header.", ""]
    return lines + _table(header, rows, ["r", "l"] + ["r"] * len(scopes)) + [""]


def _cols(section: Section, scope: str) -> list:
    if scope == "all":
        return section.columns
    if scope.startswith("ood:"):
        return [c for c in section.columns if c.group == "ood" and c.proximity == scope[4:]]
    return [c for c in section.columns if c.group == scope]


def classifier_lines(section: Section) -> list[str]:
    """The classifier under each shift (acc, ECE, attack success), clean first."""
    header = ["shift", "group", "severity", "acc (%)", "ECE (%)", "attack success (%)"]
    rows = [["clean (ID test)", "-", "-", cell_text(section.clean["acc"]),
             cell_text(section.clean["ece"]), "-"]]
    for col in section.columns:
        c = section.classifier[col.label]
        rows.append([col.label, col.group, "-" if col.severity is None else str(col.severity),
                     cell_text(c["acc"]), cell_text(c["ece"]), cell_text(c["attack_success"])])
    lines = ["### Classifier", "",
             "Top-1 accuracy and ECE (15 bins) of the classifier itself on each shifted set; "
             "null for OOD sets (no labels). Attack success: fraction of correctly classified "
             "clean images whose attacked version is misclassified.", ""]
    return lines + _table(header, rows, ["l", "l", "r", "r", "r", "r"]) + [""]


def failure_lines(section: Section) -> list[str]:
    rows = failure_rows(section)
    if not rows:
        return []
    return (["### Failure detection", "", FAILURE_NOTE, ""]
            + _table(list(FAILURE_HEADER), rows, ["l", "l"] + ["r"] * 5) + [""])


def robust_lines(section: Section) -> list[str]:
    rows = robust_rows(section)
    if not rows:
        return []
    return (["### Attacks aimed at the detector", "", ROBUST_NOTE, ""]
            + _table(list(ROBUST_HEADER), rows, ["l", "l", "r", "r", "r", "l", "r", "r", "r", "l"])
            + [""])


def severity_lines(section: Section, metric: str) -> list[str]:
    curves = section.severity[metric]
    if not curves:
        return []
    lines = [f"### {METRIC_LABELS[metric]} (%) against severity", ""]
    for name, per_det in curves.items():
        sevs = [s for s, _ in next(iter(per_det.values()))]
        rows = [[det] + [cell_text(c) for _, c in pts] for det, pts in per_det.items()]
        lines += [f"**{name}**", ""]
        lines += _table(["detector"] + [f"s{s}" for s in sevs], rows, ["l"] + ["r"] * len(sevs))
        lines.append("")
    return lines


def render(board: Board, metric: str = "auroc") -> str:
    """The whole board as markdown; ``metric`` comes first and ranks the detectors."""
    order = [metric] + [m for m in METRICS if m != metric]
    lines = ["# shiftbench leaderboard", "",
             f"{board.n_records} records ({board.n_failed} failed). Values in %: mean±std over "
             "seeds (sample std), or mean [95 % bootstrap interval] for a single run.", ""]
    for section in board.sections:
        lines += [f"## {section.title}", "",
                  f"weights sha256: `{section.weights_sha256}`; seeds: "
                  f"{', '.join(map(str, section.seeds))}", "", f"Values: {spread_text(section)}.",
                  ""]
        notes = ([SMALL_SET_LEGEND] if section.has_small else []) + section.notes
        lines += [f"> note: {n}" for n in notes] + ([""] if notes else [])
        lines += ranking_lines(section, metric)
        for m in order:
            lines += matrix_lines(section, m)
        lines += classifier_lines(section)
        lines += failure_lines(section)
        lines += robust_lines(section)
        lines += severity_lines(section, metric)
        if section.commands:
            lines += ["### Reproduce", "", "```sh", *section.commands, "```", ""]
    return "\n".join(lines).rstrip() + "\n"
