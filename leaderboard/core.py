"""The leaderboard's data: records in, a :class:`Board` out (no rendering here).

RobustBench's leaderboard is a pure function of a folder of records (load, aggregate, render); so is
ours. :func:`build` groups records by (dataset, model spec, weights sha256), one
:class:`Section` per group, so results of different classifiers or datasets are never averaged
together, and computes:

* per metric a detector x shift matrix of :class:`Cell`; over several seeds a cell is
  ``mean +- std`` (sample std, ``ddof=1``: the seeds are a sample of the runs one could make); for a
  single run it carries the record's own bootstrap 95 % interval (``metrics_ci``) when stored;
* rankings of detectors by the mean of a metric over shifts (every shift weighs the same, seeds are
  averaged first), over all shifts and separately per ``shift.group`` (OOD sets, corruptions,
  attacks, the anomaly mix) and per ``shift.proximity`` of the OOD sets (near / far);
* the classifier's ``acc``, ``ece`` and ``attack_success`` per shift, and its clean ``acc``/``ece``;
* per shift name with several severities, each detector's metric against severity.

Failed records (``status == "failed"``) are kept: their cells say so instead of silently vanishing.
Metric keys, names and direction come from :data:`bench.metrics.METRIC_TABLE`.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from bench.metrics import CLASSIFIER_METRICS, METRIC_TABLE, RANKED, higher_is_better
from bench.results import MIN_SET_SIZE, record_small_set

#: metrics that get a detector x shift matrix (and may be chosen with ``--metric``)
METRICS: tuple[str, ...] = RANKED
#: classifier numbers per shift (METHODS §2)
CLASSIFIER_KEYS: tuple[str, ...] = CLASSIFIER_METRICS
#: column order of shift groups; anything else sorts after them under its own name
GROUP_ORDER: tuple[str, ...] = ("ood", "corruption", "attack", "anomaly mix")
PROXIMITY_ORDER: tuple[str, ...] = ("near", "far")

METRIC_LABELS: dict[str, str] = {m.key: m.title for m in METRIC_TABLE}


def scope_label(scope: str) -> str:
    """Human name of a ranking scope key (``all``, a group, or ``ood:<proximity>``)."""
    if scope == "all":
        return "all shifts"
    if scope == "ood":
        return "OOD"
    if scope.startswith("ood:"):
        return f"{scope[4:]} OOD"
    if scope in ("corruption", "attack"):
        return scope + "s"
    return scope


# --------------------------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One aggregated number: the values of one metric over the seeds of one matrix cell.

    ``mean``/``std`` over seeds (``std`` only with >= 2 values, ``ddof=1``); ``ci`` is the stored
    bootstrap 95 % interval of a single run (None otherwise); ``failed`` holds the error lines of
    seeds whose cell failed. ``values``/``seeds`` are aligned.
    """

    values: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    mean: float | None = None
    std: float | None = None
    ci: tuple[float, float] | None = None
    failed: tuple[str, ...] = ()
    #: some seed's value came from a small set (fewer than MIN_SET_SIZE images on a side)
    small: bool = False

    @property
    def n(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Column:
    """One shift column of a section: a shift spec at one severity."""

    label: str
    spec: str
    name: str
    group: str
    severity: int | None
    proximity: str | None


@dataclass(frozen=True)
class RankRow:
    """A detector's place in a ranking: the mean of its per-shift means over ``n_shifts`` shifts.

    ``n_total`` is the number of shifts in the scope; fewer means the detector lacks some.
    """

    rank: int
    detector: str
    mean: float | None
    n_shifts: int
    n_total: int

    @property
    def complete(self) -> bool:
        return self.n_shifts == self.n_total


@dataclass
class Section:
    """Everything the leaderboard shows for one (dataset, model spec, weights sha256) group."""

    dataset: str
    model: str
    weights_sha256: str | None
    columns: list[Column]
    detectors: list[str]
    #: metric -> (detector, column label) -> Cell
    matrices: dict[str, dict[tuple[str, str], Cell]]
    #: metric -> scope -> rows, best first (scopes: "all", groups, "ood:<proximity>")
    rankings: dict[str, dict[str, list[RankRow]]]
    #: column label -> classifier key -> Cell
    classifier: dict[str, dict[str, Cell]]
    #: "acc" / "ece" on the clean ID test set
    clean: dict[str, Cell]
    #: metric -> shift name -> detector -> [(severity, Cell)] sorted by severity
    severity: dict[str, dict[str, dict[str, list[tuple[int, Cell]]]]]
    environment: dict[str, list[str]]
    commands: list[str]
    seeds: list[int]
    records: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    #: failure detection (correct predictions positive) on the clean test set and each ID-side
    #: shift: :class:`FailureRow` per (column, detector), clean first
    failure: list["FailureRow"] = field(default_factory=list)
    #: detector -> [(column label, coverage, risk)]: risk-coverage curves of the first seed
    rc_curves: dict[str, list[tuple[str, list[float], list[float]]]] = field(default_factory=dict)
    #: attacks aimed at the detector: one :class:`RobustRow` per (detector, adaptive column)
    robust: list["RobustRow"] = field(default_factory=list)
    #: detector -> (lowest mean AUROC over the attack columns it has, that column's label)
    worst: dict[str, tuple[Cell, str]] = field(default_factory=dict)

    @property
    def title(self) -> str:
        sha = (self.weights_sha256 or "no weights hash")[:12]
        return f"{self.dataset} · {self.model} · {sha}"

    def cell(self, metric: str, detector: str, column: str) -> Cell:
        return self.matrices[metric].get((detector, column), Cell())

    @property
    def has_small(self) -> bool:
        """Whether any matrix cell is marked as coming from a small set."""
        return any(c.small for cells in self.matrices.values() for c in cells.values())

    def best(self, metric: str, column: str) -> float | None:
        """Best cell mean of one column (direction-aware); None if the column is empty."""
        means = [c.mean for (d, col), c in self.matrices[metric].items()
                 if col == column and c.mean is not None]
        if not means:
            return None
        return max(means) if higher_is_better(metric) else min(means)


@dataclass(frozen=True)
class FailureRow:
    """One detector on one ID-side set: does its score flag the classifier's errors?

    ``set`` holds FD-AUROC, AURC and risk@95 of the set itself (clean, or all shifted images);
    ``pool`` the same on clean and shifted images together (the deployment view), with
    ``shift_auroc`` the detection AUROC of the same cell (shifted rejected) beside it."""

    column: str
    detector: str
    set: dict[str, Cell]
    pool: dict[str, Cell]
    shift_auroc: Cell


@dataclass(frozen=True)
class RobustRow:
    """One detector under one attack aimed at it (records with an ``adaptive`` block).

    ``goal`` is ``evade`` (ID images misclassified and accepted) or ``raise`` (an OOD set pushed
    toward ID); ``reference`` names what the attack is compared with (the non-adaptive ``pgd``
    with the same budget, or the unattacked set), on the same images."""

    detector: str
    column: str
    goal: str
    auroc: Cell
    detect95: Cell
    undetected: Cell
    reference: str
    auroc_reference: Cell
    undetected_reference: Cell
    auroc_2x: Cell
    warnings: tuple[str, ...]


#: failure-detection numbers the boards show, in order
FAILURE_SHOWN = ("fd_auroc", "aurc", "risk95")
FAILURE_LABELS = {"fd_auroc": "FD-AUROC", "aurc": "AURC", "risk95": "risk@95"}


@dataclass
class Board:
    """A whole leaderboard: one section per (dataset, model, weights) group."""

    sections: list[Section]
    n_records: int
    n_failed: int


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------
def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _ci(record: dict[str, Any], metric: str) -> tuple[float, float] | None:
    pair = (record.get("metrics_ci") or {}).get(metric)
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        return None
    lo, hi = _num(pair[0]), _num(pair[1])
    return None if lo is None or hi is None else (lo, hi)


def aggregate(entries: Sequence[tuple[int, float | None, tuple[float, float] | None]],
              failed: Sequence[str] = (), small: bool = False) -> Cell:
    """A :class:`Cell` from ``(seed, value, ci)`` triples of one cell (nulls are skipped).

    ``small``: some of the values come from a small set (the cell is marked)."""
    kept = sorted((s, v, c) for s, v, c in entries if v is not None)
    values = tuple(v for _, v, _ in kept)
    seeds = tuple(s for s, _, _ in kept)
    if len(values) >= 2:
        arr = np.asarray(values, dtype=np.float64)
        return Cell(values, seeds, float(arr.mean()), float(arr.std(ddof=1)), None, tuple(failed),
                    small)
    if len(values) == 1:
        return Cell(values, seeds, values[0], None, kept[0][2], tuple(failed), small)
    return Cell((), (), None, None, None, tuple(failed), small)


def _column_of(record: dict[str, Any]) -> tuple[str, int | None, str, str, str | None]:
    shift = record["shift"]
    severity = shift.get("severity")
    severity = severity if isinstance(severity, int) and not isinstance(severity, bool) else None
    spec = str(shift.get("spec") or shift.get("name") or "?")
    name = str(shift.get("name") or spec)
    group = str(shift.get("group") or "other")
    proximity = shift.get("proximity")
    return spec, severity, name, group, (str(proximity) if proximity else None)


def _column_sort_key(col: Column) -> tuple:
    g = GROUP_ORDER.index(col.group) if col.group in GROUP_ORDER else len(GROUP_ORDER)
    p = (PROXIMITY_ORDER.index(col.proximity) if col.proximity in PROXIMITY_ORDER
         else len(PROXIMITY_ORDER))
    return (g, col.group, p, col.name, col.severity if col.severity is not None else -1, col.spec)


_LONG_FLOAT = re.compile(r"(?<![\w.])(\d+\.\d{6,})(?![\w.])")


def pretty_spec(text: str) -> str:
    """A spec for display: floats that are whole multiples of 1/255 (pixel budgets) written
    as ``k/255`` (``pgd(eps=0.03137254901960784)`` -> ``pgd(eps=8/255)``). Records keep the
    canonical spec; this changes labels only."""
    def sub(m: re.Match) -> str:
        v = float(m.group(1)) * 255
        return f"{round(v)}/255" if round(v) > 0 and abs(v - round(v)) < 1e-6 else m.group(1)
    return _LONG_FLOAT.sub(sub, text)


def _label(spec: str, severity: int | None) -> str:
    # The severity is part of what a column means; show it unless the spec already says it.
    spec = pretty_spec(spec)
    if severity is None or "severity" in spec:
        return spec
    return f"{spec} (s{severity})"


def _rank(section_cells: dict[tuple[str, str], Cell], detectors: list[str],
          columns: list[Column], metric: str) -> list[RankRow]:
    labels = [c.label for c in columns]
    stats = []
    for det in detectors:
        means = [section_cells[(det, lab)].mean for lab in labels
                 if (det, lab) in section_cells and section_cells[(det, lab)].mean is not None]
        mean = float(np.mean(means)) if means else None
        stats.append((det, mean, len(means)))
    sign = -1.0 if higher_is_better(metric) else 1.0
    # A detector missing some shifts averages over different shifts, so it is not comparable:
    # complete detectors rank first, then incomplete ones, then those with no value at all.
    stats.sort(key=lambda t: (t[1] is None, t[2] < len(labels),
                              sign * t[1] if t[1] is not None else 0.0, t[0]))
    return [RankRow(i + 1, det, mean, n, len(labels)) for i, (det, mean, n) in enumerate(stats)]


def _scopes(columns: list[Column]) -> dict[str, list[Column]]:
    scopes: dict[str, list[Column]] = {"all": list(columns)}
    groups = sorted({c.group for c in columns},
                    key=lambda g: (GROUP_ORDER.index(g) if g in GROUP_ORDER else 99, g))
    for g in groups:
        scopes[g] = [c for c in columns if c.group == g]
        if g == "ood":
            prox = sorted({c.proximity for c in scopes[g] if c.proximity},
                          key=lambda p: (PROXIMITY_ORDER.index(p) if p in PROXIMITY_ORDER else 9,
                                         p))
            for p in prox:
                scopes[f"ood:{p}"] = [c for c in scopes[g] if c.proximity == p]
    return scopes


def _dedupe(records: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    """One record per (detector, shift, severity, seed, split seed): the newest wins, and the
    board says so. Runs with another ``--split-seed`` are further runs of the cell, not copies."""
    newest: dict[tuple, dict[str, Any]] = {}
    for r in records:
        spec, sev, *_ = _column_of(r)
        key = (str(r["detector"].get("spec") or r["detector"].get("name")), spec, sev, r["seed"],
               split_seed(r))
        old = newest.get(key)
        if old is None or str(r.get("created") or "") >= str(old.get("created") or ""):
            newest[key] = r
        if old is not None:
            notes.append(f"duplicate records for detector {key[0]!r}, shift {key[1]!r}, seed "
                         f"{key[3]}: kept the newest ({newest[key].get('created')})")
    return list(newest.values())


def _failure(records: list[dict[str, Any]], detectors: list[str],
             columns: list[Column]) -> tuple[list[FailureRow], dict[str, list]]:
    """Failure-detection rows and risk-coverage curves from the records that carry them."""
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    labels: dict[tuple[str, int | None], str] = {(c.spec, c.severity): c.label for c in columns}
    for r in records:
        if r["status"] == "ok" and isinstance(r.get("failure"), dict):
            spec, sev, *_ = _column_of(r)
            label = "clean" if r["shift"].get("group") == "clean" else labels.get((spec, sev))
            if label is not None:
                det = str(r["detector"].get("spec") or r["detector"].get("name"))
                by_cell[(label, det)].append(r)
    order = ["clean"] + [c.label for c in columns]
    rows, curves = [], {}
    for label in order:
        for det in detectors:
            recs = by_cell.get((label, det))
            if not recs:
                continue

            def cells(block: str) -> dict[str, Cell]:
                return {k: aggregate([(r["seed"], _num((r.get(block) or {}).get(k)), None)
                                      for r in recs]) for k in FAILURE_SHOWN}

            rows.append(FailureRow(label, det, cells("failure"), cells("deployment"),
                                   aggregate([(r["seed"], _num(r["metrics"].get("auroc")), None)
                                              for r in recs])))
            first = min(recs, key=lambda r: r["seed"])
            cov, risk = (first.get("plots") or {}).get("rc_coverage"), \
                (first.get("plots") or {}).get("rc_risk")
            if isinstance(cov, list) and isinstance(risk, list) and len(cov) == len(risk) > 1:
                curves.setdefault(det, []).append((label, cov, risk))
    return rows, curves


def _robust(records: list[dict[str, Any]], detectors: list[str], columns: list[Column],
            matrices: dict[str, dict[tuple[str, str], Cell]]
            ) -> tuple[list[RobustRow], dict[str, tuple[Cell, str]]]:
    """Rows of the robust view and each detector's worst AUROC over the attack columns."""
    labels = {(c.spec, c.severity): c.label for c in columns}
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["status"] == "ok" and isinstance(r.get("adaptive"), dict):
            spec, sev, *_ = _column_of(r)
            det = str(r["detector"].get("spec") or r["detector"].get("name"))
            by_cell[(labels[(spec, sev)], det)].append(r)
    rows = []
    for det in detectors:
        for col in columns:
            recs = by_cell.get((col.label, det))
            if not recs:
                continue

            def block(key: str) -> Cell:
                return aggregate([(r["seed"], _num(r["adaptive"].get(key)), None) for r in recs])

            first = min(recs, key=lambda r: r["seed"])
            rows.append(RobustRow(
                det, col.label, str(first["adaptive"].get("goal")),
                matrices["auroc"].get((det, col.label), Cell()),
                matrices["detect95"].get((det, col.label), Cell()),
                aggregate([(r["seed"], _num(r["metrics"].get("undetected_success")), None)
                           for r in recs]),
                pretty_spec(str(first["adaptive"].get("reference"))), block("auroc_reference"),
                block("undetected_success_reference"), block("auroc_2x_steps"),
                tuple(dict.fromkeys(str(r["adaptive"]["warning"]) for r in recs
                                    if r["adaptive"].get("warning")))))
    worst: dict[str, tuple[Cell, str]] = {}
    if rows:
        attacked = [c.label for c in columns if c.group == "attack"] + \
            [row.column for row in rows if row.goal != "evade"]
        for det in detectors:
            cells = [(matrices["auroc"].get((det, lab), Cell()), lab)
                     for lab in dict.fromkeys(attacked)]
            cells = [(c, lab) for c, lab in cells if c.mean is not None]
            if cells:
                worst[det] = min(cells, key=lambda t: t[0].mean)
    return rows, worst


def split_seed(record: dict[str, Any]) -> int:
    """The record's val/test split seed (0, METHODS.md's, for records made before the option)."""
    s = record["dataset"].get("split_seed")
    return s if isinstance(s, int) and not isinstance(s, bool) else 0


def spread_text(section: "Section") -> str:
    """What a board's ``mean±std`` runs over, for its legend."""
    splits = sorted({split_seed(r) for r in section.records})
    parts = [f"--seeds {', '.join(map(str, section.seeds))} (shifts, generated OOD sets, "
             "detector training)"]
    if len(splits) > 1:
        parts.append(f"--split-seed {', '.join(map(str, splits))} (the val/test split)")
    else:
        parts.append(f"one val/test split (split seed {splits[0] if splits else 0})")
    return ("mean±std over " + "; ".join(parts) + "; one classifier (its weights name the "
            "section); or mean [95 % bootstrap interval] for a single run")


def _section(key: tuple[str, str, str | None], records: list[dict[str, Any]]) -> Section:
    notes: list[str] = []
    records = _dedupe(records, notes)
    # the clean cells hold failure detection only: no column of the detection matrices
    all_records, records = records, [r for r in records if r["shift"].get("group") != "clean"]
    dataset_shas = {json.dumps(r["dataset"].get("sha256"), sort_keys=True) for r in records}
    if len(dataset_shas) > 1:
        notes.append(f"dataset {key[0]!r} appears with {len(dataset_shas)} different file hashes "
                     "in this group; its records are shown together")

    # Columns and detectors.
    col_by_key: dict[tuple[str, int | None], Column] = {}
    for r in records:
        spec, sev, name, group, prox = _column_of(r)
        if (spec, sev) not in col_by_key:
            # OOD sets are named by their display name, not the path in their spec
            label = pretty_spec(name) if group == "ood" else _label(spec, sev)
            col_by_key[(spec, sev)] = Column(label, spec, name, group, sev, prox)
    columns = sorted(col_by_key.values(), key=_column_sort_key)
    counts = Counter(c.label for c in columns)
    if any(n > 1 for n in counts.values()):  # e.g. "x (s3)" spelled both ways: say which is which
        columns = [c if counts[c.label] == 1 else
                   Column(f"{c.label} [{c.spec}@{c.severity}]", c.spec, c.name, c.group,
                          c.severity, c.proximity) for c in columns]
        col_by_key = {(c.spec, c.severity): c for c in columns}
    detectors = sorted({str(r["detector"].get("spec") or r["detector"].get("name"))
                        for r in records})

    # Matrices.
    per_cell: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        spec, sev, *_ = _column_of(r)
        det = str(r["detector"].get("spec") or r["detector"].get("name"))
        per_cell[(det, col_by_key[(spec, sev)].label)].append(r)
    matrices: dict[str, dict[tuple[str, str], Cell]] = {}
    for m in METRICS:
        matrices[m] = {}
        for ck, recs in per_cell.items():
            ok = [r for r in recs if r["status"] == "ok"]
            failed = [str(r.get("error") or "failed") for r in recs if r["status"] != "ok"]
            matrices[m][ck] = aggregate(
                [(r["seed"], _num(r["metrics"].get(m)), _ci(r, m)) for r in ok], failed,
                small=any(record_small_set(r) for r in ok))

    # Rankings, per metric and scope; rows of the matrices follow the all-shift ranking.
    scopes = _scopes(columns)
    rankings = {m: {s: _rank(matrices[m], detectors, cols, m) for s, cols in scopes.items()}
                for m in METRICS}
    detectors = [row.detector for row in rankings["auroc"]["all"]]

    # Classifier per shift: one value per seed (every detector's record of it carries the same).
    classifier: dict[str, dict[str, Cell]] = {}
    for col in columns:
        by_seed: dict[int, dict[str, Any]] = {}
        for r in records:
            if r["status"] == "ok" and _column_of(r)[:2] == (col.spec, col.severity):
                by_seed.setdefault(r["seed"], r)
        classifier[col.label] = {
            k: aggregate([(s, _num((r.get("classifier") or {}).get(k)), _ci(r, k))
                          for s, r in by_seed.items()])
            for k in CLASSIFIER_KEYS}
    clean_by_seed: dict[int, dict[str, Any]] = {}
    for r in records:
        if r["status"] == "ok":
            clean_by_seed.setdefault(r["seed"], r["model"])
    # The clean numbers do not depend on the seed; one value when every seed stored the same.
    clean = {}
    for k in ("acc", "ece"):
        entries = [(s, _num(mdl.get(f"clean_{k}")), None) for s, mdl in clean_by_seed.items()]
        if len({v for _, v, _ in entries}) == 1:
            entries = entries[:1]
        clean[k] = aggregate(entries)

    # Severity curves: shift names seen at two or more severities.
    severity: dict[str, dict[str, dict[str, list[tuple[int, Cell]]]]] = {m: {} for m in METRICS}
    names = sorted({c.name for c in columns})
    for name in names:
        cols = [c for c in columns if c.name == name and c.severity is not None]
        if len({c.severity for c in cols}) < 2:
            continue
        chosen: dict[int, Column] = {}
        for c in cols:
            if c.severity in chosen:
                notes.append(f"severity curve of {name!r}: several specs at severity "
                             f"{c.severity} ({chosen[c.severity].label!r}, {c.label!r}); the "
                             "curve uses the first")
                continue
            chosen[c.severity] = c
        for m in METRICS:
            severity[m][name] = {
                det: [(s, matrices[m].get((det, chosen[s].label), Cell())) for s in sorted(chosen)]
                for det in detectors}

    # Environment and reproduction.
    env: dict[str, list[str]] = {}

    def add(k: str, v: Any) -> None:
        if v is None:
            return
        text = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        env.setdefault(k, [])
        if text not in env[k]:
            env[k].append(text)

    ordered = sorted(records, key=lambda r: str(r.get("created") or ""))
    for r in ordered:
        ds, mdl = r["dataset"], r["model"]
        add("dataset", ds.get("spec") or ds.get("name"))
        add("dataset sha256", ds.get("sha256"))
        for k in ("n_fit", "n_val", "n_test", "shape"):
            add(f"dataset {k}", ds.get(k))
        for k in ("spec", "arch", "weights", "weights_sha256", "norm", "mean", "std"):
            add(f"model {k}", mdl.get(k))
        for k, v in (r.get("environment") or {}).items():
            add(k, v)
    commands: list[str] = []
    for r in ordered:
        cmd = r.get("command")
        if isinstance(cmd, str) and cmd and cmd not in commands:
            commands.append(cmd)
    seeds = sorted({r["seed"] for r in records})

    failure, rc_curves = _failure(all_records, detectors, columns)
    robust, worst = _robust(records, detectors, columns, matrices)
    return Section(dataset=key[0], model=key[1], weights_sha256=key[2], columns=columns,
                   detectors=detectors, matrices=matrices, rankings=rankings,
                   classifier=classifier, clean=clean, severity=severity, environment=env,
                   commands=commands, seeds=seeds, records=ordered, notes=notes,
                   failure=failure, rc_curves=rc_curves, robust=robust, worst=worst)


def build(records: Iterable[dict[str, Any]]) -> Board:
    """Aggregate validated records (``bench.results.load_records``) into a :class:`Board`.

    One section per (dataset name, model spec, weights sha256), in sorted order.
    """
    records = list(records)
    groups: dict[tuple[str, str, str | None], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        key = (str(r["dataset"].get("name")), str(r["model"].get("spec")),
               r["model"].get("weights_sha256"))
        groups[key].append(r)
    sections = [_section(k, groups[k])
                for k in sorted(groups, key=lambda k: (k[0], k[1], k[2] or ""))]
    return Board(sections=sections, n_records=len(records),
                 n_failed=sum(r["status"] != "ok" for r in records))


# --------------------------------------------------------------------------------------------
# Text helpers shared by the renderers
# --------------------------------------------------------------------------------------------
def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal (``0.9342 -> "93.4"``); ``-`` for None."""
    return "-" if value is None else f"{100.0 * value:.1f}"


#: appended to numbers from a small set; :data:`SMALL_SET_LEGEND` explains it
SMALL_SET_MARK = "†"
SMALL_SET_LEGEND = (f"{SMALL_SET_MARK} fewer than {MIN_SET_SIZE} ID or shifted images scored: "
                    "no bootstrap interval, one image moves the value by more than 3 points")


def cell_text(cell: Cell, ci_format: str = "[{lo}, {hi}]") -> str:
    """``mean±std`` (several seeds), ``mean [lo, hi]`` (one run with an interval), in percent.

    ``ci_format`` shapes the interval (the HTML board wraps it in a span). A value from a small
    set gets :data:`SMALL_SET_MARK` right after the number."""
    if cell.mean is None:
        return "failed" if cell.failed else "-"
    mark = SMALL_SET_MARK if cell.small else ""
    if cell.std is not None:
        text = f"{pct(cell.mean)}{mark}±{pct(cell.std)}"
    elif cell.ci is not None:
        text = (f"{pct(cell.mean)}{mark} "
                + ci_format.format(lo=pct(cell.ci[0]), hi=pct(cell.ci[1])))
    else:
        text = pct(cell.mean) + mark
    if cell.failed:
        text += f" ({len(cell.failed)} failed)"
    return text


def is_best(section: Section, metric: str, detector: str, column: str) -> bool:
    """Whether this cell's mean equals the best mean of its column (ties are all best)."""
    c = section.cell(metric, detector, column)
    best = section.best(metric, column)
    return c.mean is not None and best is not None and c.mean == best and len(section.detectors) > 1


FAILURE_HEADER = ("set", "detector", "FD-AUROC", "AURC", "risk@95", "pool FD-AUROC",
                  "shift AUROC")
FAILURE_NOTE = ("Failure detection, correct predictions positive: FD-AUROC of the score for "
                "right vs wrong predictions (higher is better), AURC and the selective risk at "
                "95 % coverage (lower is better), on the set itself; pool: clean and shifted "
                "images together (the deployment view), beside the detection AUROC of the same "
                "cell (shifted rejected). Where the two disagree, a detector rejects images the "
                "classifier gets right, or accepts errors.")


def failure_rows(section: Section) -> list[list[str]]:
    """The failure-detection table as text cells, in :data:`FAILURE_HEADER` order."""
    rows = []
    for r in section.failure:
        rows.append([r.column, r.detector, *[cell_text(r.set[k]) for k in FAILURE_SHOWN],
                     cell_text(r.pool["fd_auroc"]), cell_text(r.shift_auroc)])
    return rows


ROBUST_HEADER = ("detector", "attack aimed at it", "AUROC", "Det95", "Undet95", "reference",
                 "ref AUROC", "ref Undet95", "AUROC 2x steps", "worst AUROC")
ROBUST_NOTE = ("Attacks aimed at the detector (docs/adaptive.md): AUROC and Det95 of the cell, "
               "Undet95 = attacked images misclassified AND accepted at the 95 % val threshold "
               "(lower is better for the detector); reference = the non-adaptive pgd with the "
               "same budget on the same images (or the unattacked OOD set); AUROC 2x steps = the "
               "attack run twice as long (about the same: converged); worst AUROC = the lowest "
               "AUROC of the detector over every attack column it has. ! = the cell's honesty "
               "check failed (see its record's adaptive.warning).")


def robust_rows(section: Section) -> list[list[str]]:
    """The robust view as text cells, in :data:`ROBUST_HEADER` order; the worst-case AUROC on
    each detector's first row."""
    rows, seen = [], set()
    for r in section.robust:
        worst = ""
        if r.detector not in seen and r.detector in section.worst:
            cell, label = section.worst[r.detector]
            worst = f"{cell_text(cell)} ({label})"
        seen.add(r.detector)
        flag = " !" if r.warnings else ""
        rows.append([r.detector, r.column + flag, cell_text(r.auroc), cell_text(r.detect95),
                     cell_text(r.undetected), r.reference, cell_text(r.auroc_reference),
                     cell_text(r.undetected_reference), cell_text(r.auroc_2x), worst])
    return rows


def direction_text(metric: str) -> str:
    return "higher is better" if higher_is_better(metric) else "lower is better"
