"""One self-contained HTML leaderboard (inline CSS and JS, plots as data URIs, no network).

Interactive parts, with stable hooks for tests and user scripts:

* ``select#metric``: which metric's matrix, ranking and severity plot are shown (elements carrying
  ``data-metric`` are hidden unless it matches; the page works without JS for the default metric);
* ``table.sortable th[data-col]``: click to sort the rows by that column (first click puts the best
  values first, a second click reverses; missing values always sort last). Cells carry their raw
  value in ``data-v``.

Heatmap colours map the absolute value in [0, 1] through matplotlib's RdYlGn (reversed for
lower-is-better metrics) so colours mean the same thing across boards. Plots are drawn with
matplotlib's object API on an Agg canvas (no pyplot global state) and embedded as PNG data URIs:
one small-multiples figure per detector (ROC curve and ID-vs-shift score histogram per shift), one
severity figure for the chosen metric, and the stored example grids (``examples.shift_png`` per
shift and severity, ``examples.detector_png``, e.g. the ``ae`` reconstructions). Output is
deterministic for a given folder of records (no timestamps).
"""

from __future__ import annotations

import base64
import binascii
import html
import io
import math
from typing import Any, Sequence

import numpy as np

from bench.leaderboard.core import (
    FAILURE_HEADER, FAILURE_NOTE, FAILURE_SHOWN, METRIC_LABELS, METRICS, ROBUST_HEADER,
    ROBUST_NOTE, SMALL_SET_LEGEND, Board, Cell, Section, cell_text, direction_text, failure_rows,
    higher_is_better, is_best, pct, robust_rows, scope_label, spread_text,
)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PANEL_IN = (2.4, 1.9)  # inches per small-multiple panel
_DPI = 96

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222;
 background:#fff;max-width:1600px}
h1{font-size:1.5em}
h2{font-size:1.25em;border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right;white-space:nowrap}
.scroll{max-width:100%;overflow-x:auto}
table.matrix th{white-space:normal;max-width:10em;vertical-align:bottom;overflow-wrap:anywhere}
table.matrix td{white-space:normal}table.matrix td:first-child,.ci{white-space:nowrap}
table.ranking th,table.ranking td,table.classifier th{white-space:normal}
table.ranking td:nth-child(-n+2){white-space:nowrap}
table.env td{white-space:normal;overflow-wrap:anywhere}
figure img{max-width:100%;height:auto}
th{background:#f2f2f2}td:first-child,th:first-child,td.l,th.l,table.env td{text-align:left}
table.sortable th[data-col]{cursor:pointer;user-select:none}
table.sortable th.asc::after{content:" \\25B2"}table.sortable th.desc::after{content:" \\25BC"}
td.best{font-weight:bold;outline:2px solid #222;outline-offset:-2px}
.ci{font-size:.8em;opacity:.85}
.controls{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd;
 z-index:1}
[hidden]{display:none!important}
.note{background:#fff6d6;border-left:4px solid #e0b000;padding:.3em .6em;margin:.3em 0}
figure{margin:.5em 0 1em}figcaption{font-size:.85em;color:#555}
.gallery{display:flex;flex-wrap:wrap;gap:1em}.gallery figure{margin:0}
.gallery img{image-rendering:pixelated;width:256px;height:auto;border:1px solid #ccc}
pre{background:#f6f8fa;padding:.6em;overflow-x:auto;font-size:.85em}
.muted{color:#666;font-size:.9em}
table.robust td:nth-child(2),table.robust td:nth-child(10){text-align:left;white-space:normal;overflow-wrap:anywhere;
 max-width:16em}table.robust th:nth-child(2),table.robust th:nth-child(10){text-align:left}
table.robust td.warn{background:#fde2e2}.where{font-size:.8em;color:#555}
"""

JS = """
(function(){
  var sel=document.getElementById('metric');
  function show(){
    var m=sel.value;
    document.querySelectorAll('[data-metric]').forEach(function(el){el.hidden=el.getAttribute('data-metric')!==m;});
  }
  sel.addEventListener('change',show);show();
  function key(cell,type){
    if(type==='text'){return cell.textContent.trim().toLowerCase();}
    var v=cell.getAttribute('data-v');
    return (v===null||v==='')?null:parseFloat(v);
  }
  function sortBy(table,th){
    var idx=Array.prototype.indexOf.call(th.parentNode.children,th);
    var type=th.getAttribute('data-type')||'num';
    var cur=th.getAttribute('data-dir');
    var dir=cur?(cur==='asc'?'desc':'asc'):(th.getAttribute('data-first')||'desc');
    table.querySelectorAll('th[data-col]').forEach(function(h){h.removeAttribute('data-dir');h.classList.remove('asc','desc');});
    th.setAttribute('data-dir',dir);th.classList.add(dir);
    var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){
      var x=key(a.cells[idx],type),y=key(b.cells[idx],type);
      if(x===null&&y===null)return 0;if(x===null)return 1;if(y===null)return -1;
      var c=x<y?-1:(x>y?1:0);return dir==='asc'?c:-c;
    });
    rows.forEach(function(r){body.appendChild(r);});
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    table.querySelectorAll('th[data-col]').forEach(function(th){
      th.addEventListener('click',function(){sortBy(table,th);});
    });
  });
})();
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _v(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _heat(value: float | None, metric: str) -> str:
    """Inline style colouring a value in [0, 1] (green = good whatever the direction)."""
    if value is None:
        return ""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    x = min(max(value, 0.0), 1.0)
    r, g, b, _ = colormaps["RdYlGn"](x if higher_is_better(metric) else 1.0 - x)
    ink = "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "#fff"
    return f' style="background:{to_hex((r, g, b))};color:{ink}"'


def _cell_html(cell: Cell) -> str:
    return cell_text(cell, ci_format='<span class="ci">[{lo}, {hi}]</span>')


def _tooltip(cell: Cell) -> str:
    parts = [f"seed {s}: {v:.4f}" for s, v in zip(cell.seeds, cell.values)]
    parts += [f"failed: {err}" for err in cell.failed]
    return f' title="{_e("; ".join(parts))}"' if parts else ""


def _breakable(label: str) -> str:
    """``label`` escaped, with line-break opportunities (<wbr>) before ``(`` and after ``,``
    and ``_``: a long spec header wraps at its parts (``gaussian_noise`` over ``(severity=3)``)
    instead of widening the matrix past the page."""
    out = _e(label).replace("(", "<wbr>(")
    for ch in (",", "_"):
        out = out.replace(ch, ch + "<wbr>")
    return out


def _th(label: str, col: str, *, first: str = "desc", text: bool = False,
        breakable: bool = False) -> str:
    kind = ' data-type="text"' if text else ""
    shown = _breakable(label) if breakable else _e(label)
    return f'<th data-col="{_e(col)}" data-first="{first}"{kind}>{shown}</th>'


def _matrix(section: Section, idx: int, metric: str, selected: str) -> str:
    first = "desc" if higher_is_better(metric) else "asc"
    head = _th("detector", "detector", first="asc", text=True) + "".join(
        _th(c.label, c.label, first=first, breakable=True) for c in section.columns)
    body = []
    for det in section.detectors:
        tds = [f"<td>{_e(det)}</td>"]
        for col in section.columns:
            cell = section.cell(metric, det, col.label)
            cls = ' class="best"' if is_best(section, metric, det, col.label) else ""
            tds.append(f'<td data-v="{_v(cell.mean)}"{cls}{_heat(cell.mean, metric)}'
                       f"{_tooltip(cell)}>{_cell_html(cell)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    hidden = "" if metric == selected else " hidden"
    return (f'<div data-metric="{metric}"{hidden}><h3>{_e(METRIC_LABELS[metric])} (%), '
            f"{direction_text(metric)}</h3>"
            f'<div class="scroll"><table class="matrix sortable" id="matrix-{idx}-{metric}">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div></div>")


def _ranking(section: Section, idx: int, metric: str, selected: str) -> str:
    first = "desc" if higher_is_better(metric) else "asc"
    scopes = list(section.rankings[metric])
    lookup = {s: {r.detector: r for r in section.rankings[metric][s]} for s in scopes}
    n_cols = {s: lookup[s][next(iter(lookup[s]))].n_total if lookup[s] else 0 for s in scopes}
    head = (_th("rank", "rank", first="asc") + _th("detector", "detector", first="asc", text=True)
            + "".join(_th(f"{scope_label(s)} ({n_cols[s]})", s, first=first) for s in scopes))
    body = []
    for row in section.rankings[metric]["all"]:
        tds = [f'<td data-v="{row.rank}">{row.rank}</td>', f'<td class="l">{_e(row.detector)}</td>']
        for s in scopes:
            r = lookup[s][row.detector]
            text = pct(r.mean) + ("" if s == "all" else f" (#{r.rank})")
            if r.mean is not None and not r.complete:
                text += f" [{r.n_shifts}/{r.n_total}]"
            tds.append(f'<td data-v="{_v(r.mean)}"{_heat(r.mean, metric)}>{_e(text)}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    hidden = "" if metric == selected else " hidden"
    return (f'<div data-metric="{metric}"{hidden}><h3>Ranking by mean {_e(METRIC_LABELS[metric])} '
            f"(%) over shifts, {direction_text(metric)}</h3>"
            '<p class="muted">Each shift weighs the same, seeds are averaged first; (#k) is the '
            "rank within that group of shifts, [k/n] marks a detector missing some shifts.</p>"
            f'<div class="scroll"><table class="ranking sortable" id="ranking-{idx}-{metric}">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div></div>")


def _classifier(section: Section, idx: int) -> str:
    head = (_th("shift", "shift", first="asc", text=True)
            + _th("group", "group", first="asc", text=True)
            + _th("severity", "severity", first="asc") + _th("acc (%)", "acc")
            + _th("ECE (%)", "ece", first="asc") + _th("attack success (%)", "attack_success"))

    def tds(cells: Sequence[Cell]) -> str:
        return "".join(f'<td data-v="{_v(c.mean)}"{_tooltip(c)}>{_cell_html(c)}</td>'
                       for c in cells)

    rows = [f'<tr><td>clean (ID test)</td><td class="l">-</td><td data-v="">-</td>'
            f'{tds([section.clean["acc"], section.clean["ece"]])}<td data-v="">-</td></tr>']
    for col in section.columns:
        c = section.classifier[col.label]
        sev = "" if col.severity is None else str(col.severity)
        rows.append(f'<tr><td>{_e(col.label)}</td><td class="l">{_e(col.group)}</td>'
                    f'<td data-v="{sev}">{sev or "-"}</td>'
                    f'{tds([c["acc"], c["ece"], c["attack_success"]])}</tr>')
    return ('<h3>Classifier on each shifted set</h3><p class="muted">Top-1 accuracy and ECE '
            "(15 bins) of the classifier itself; null for OOD sets (no labels). Attack success: "
            "fraction of correctly classified clean images whose attacked version is "
            "misclassified.</p>"
            f'<div class="scroll"><table class="classifier sortable" id="classifier-{idx}">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def _failure(section: Section, idx: int) -> str:
    if not section.failure:
        return ""
    head = "".join(_th(h, h, first="asc", text=i < 2) if i < 2 or h in ("AURC", "risk@95")
                   else _th(h, h) for i, h in enumerate(FAILURE_HEADER))
    rows = []
    for r, texts in zip(section.failure, failure_rows(section)):
        cells = [r.set[k] for k in FAILURE_SHOWN] + [r.pool["fd_auroc"], r.shift_auroc]
        rows.append(f"<tr><td>{_e(texts[0])}</td><td class=\"l\">{_e(texts[1])}</td>"
                    + "".join(f'<td data-v="{_v(c.mean)}"{_tooltip(c)}>{_cell_html(c)}</td>'
                              for c in cells) + "</tr>")
    return ("<h3>Failure detection</h3>"
            f'<p class="muted">{_e(FAILURE_NOTE)}</p>'
            f'<div class="scroll"><table class="failure sortable" id="failure-{idx}">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def _robust(section: Section, idx: int) -> str:
    if not section.robust:
        return ""
    text_cols = {"detector", "attack aimed at it", "reference", "worst AUROC"}
    head = "".join(_th(h, h, first="asc", text=True) if h in text_cols else _th(h, h)
                   for h in ROBUST_HEADER)
    rows = []
    for r, texts in zip(section.robust, robust_rows(section)):
        cells = [r.auroc, r.detect95, r.undetected]
        ref = [r.auroc_reference, r.undetected_reference, r.auroc_2x]
        warn = (f' title="{_e("; ".join(r.warnings))}" class="warn"' if r.warnings
                else "")
        rows.append(f"<tr><td class=\"l\">{_e(texts[0])}</td><td{warn}>{_e(texts[1])}</td>"
                    + "".join(f'<td data-v="{_v(c.mean)}"{_tooltip(c)}>{_cell_html(c)}</td>'
                              for c in cells)
                    + f"<td>{_e(texts[5])}</td>"
                    + "".join(f'<td data-v="{_v(c.mean)}"{_tooltip(c)}>{_cell_html(c)}</td>'
                              for c in ref)
                    + f"<td>{_worst_html(section, r.detector, texts[9])}</td></tr>")
    return ("<h3>Attacks aimed at the detector</h3>"
            f'<p class="muted">{_e(ROBUST_NOTE)}</p>'
            f'<div class="scroll"><table class="robust sortable" id="robust-{idx}">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def _worst_html(section: Section, detector: str, text: str) -> str:
    """The worst AUROC on a detector's first row: the number, then the column in small print."""
    if not text or detector not in section.worst:
        return ""
    cell, label = section.worst[detector]
    return f'{_cell_html(cell)}<br><span class="where">{_e(label)}</span>'


def _robust_figure(section: Section) -> str | None:
    """One panel per detector: score histograms of one adaptive cell (lowest seed): clean ID
    images, the attacked images and, for an attacked OOD set, the same images unattacked."""
    from matplotlib.figure import Figure

    chosen: dict[str, dict[str, Any]] = {}
    for r in sorted(section.records, key=lambda r: (r["seed"], (r.get("adaptive") or {})
                                                    .get("goal") != "evade")):
        det = r["detector"].get("spec") or r["detector"].get("name")
        if r["status"] == "ok" and isinstance(r.get("adaptive"), dict) and det not in chosen:
            chosen[det] = r
    if not chosen:
        return None
    dets = [d for d in section.detectors if d in chosen]
    nrows, ncols = _grid(len(dets))
    fig = Figure(figsize=(_PANEL_IN[0] * ncols, _PANEL_IN[1] * nrows + 0.5))
    axes = _axes_grid(fig, nrows, ncols)
    for i, det in enumerate(dets):
        r = chosen[det]
        ax = axes[divmod(i, ncols)]
        plots = r.get("plots") or {}
        evade = r["adaptive"].get("goal") == "evade"
        series = [(_floats(plots.get("scores_in")), "tab:blue", "clean ID"),
                  (_floats(plots.get("scores_before")), "tab:gray", "OOD unattacked"),
                  (_floats(plots.get("scores_out")), "tab:red",
                   "ID attacked" if evade else "OOD attacked")]
        series = [t for t in series if len(t[0])]
        if not series:
            continue
        ax.set_axis_on()
        both = np.concatenate([t[0] for t in series])
        lo, hi = float(both.min()), float(both.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 31)
        for scores, colour, name in series:
            dens, _ = np.histogram(scores, bins=edges, density=True)
            ax.stairs(dens, edges, fill=True, alpha=0.45, color=colour, label=name)
        tau = r["adaptive"].get("threshold")
        if isinstance(tau, (int, float)) and lo <= tau <= hi:
            ax.axvline(tau, color="black", lw=0.8, ls="--")
        ax.set_title(_short(f"{det} · {_column_label(section, r)}", 40), fontsize=7)
        ax.set_yticks([])
        ax.tick_params(labelsize=7, length=2, pad=1)
        ax.locator_params(axis="x", nbins=4)
        ax.set_xlabel("score (higher = ID); dashed: 95 % threshold", fontsize=7, labelpad=1)
        ax.legend(fontsize=6, frameon=False, loc="upper left")
    fig.subplots_adjust(bottom=0.25 / nrows, top=1 - 0.12 / nrows)
    return _png_uri(fig)


def _rc_figure(section: Section) -> str | None:
    """One panel per detector: the risk-coverage curve of each ID-side set (lowest seed)."""
    from matplotlib.figure import Figure

    dets = [d for d in section.detectors if d in section.rc_curves]
    dets += [d for d in section.rc_curves if d not in dets]
    if not dets:
        return None
    nrows, ncols = _grid(len(dets))
    fig = Figure(figsize=(_PANEL_IN[0] * ncols, _PANEL_IN[1] * nrows + 0.5))
    axes = _axes_grid(fig, nrows, ncols)
    for i, det in enumerate(dets):
        ax = axes[divmod(i, ncols)]
        ax.set_axis_on()
        for label, cov, risk in section.rc_curves[det]:
            ax.plot(_floats(cov), 100 * _floats(risk), lw=1.4 if label == "clean" else 0.9,
                    color="black" if label == "clean" else None, label=_short(label, 24))
        ax.set_title(_short(det, 30), fontsize=8)
        ax.set(xlim=(0, 1), xticks=[0, 0.5, 1])
        ax.tick_params(labelsize=7, length=2, pad=1)
        ax.set_xlabel("coverage (most confident first)", fontsize=7, labelpad=1)
        if i % ncols == 0:
            ax.set_ylabel("selective risk (%)", fontsize=7, labelpad=1)
        if i == 0:
            ax.legend(fontsize=6, frameon=False, loc="upper left")
    fig.subplots_adjust(bottom=0.22 / nrows, top=1 - 0.12 / nrows)
    return _png_uri(fig)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
def _png_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    ncols = max(1, min(n, max_cols))
    return math.ceil(n / ncols), ncols


def _floats(values: Any) -> np.ndarray:
    if not isinstance(values, (list, tuple)):
        return np.empty(0)
    arr = np.asarray([v for v in values if isinstance(v, (int, float))], dtype=np.float64)
    return arr[np.isfinite(arr)]


def _axes_grid(fig: Any, nrows: int, ncols: int) -> np.ndarray:
    # Fixed margins instead of constrained layout: layout solving doubled the drawing time.
    axes = fig.subplots(nrows, ncols, squeeze=False)
    fig.subplots_adjust(left=0.35 / (_PANEL_IN[0] * ncols) * 1.6, right=0.98, bottom=0.06,
                        top=0.92, wspace=0.3, hspace=0.6)
    for ax in axes.flat:
        ax.set_axis_off()
    return axes


def _detector_figure(section: Section, det: str) -> str | None:
    """Per shift: ROC curves (one per seed) above the ID-vs-shift score histogram (lowest seed)."""
    from matplotlib.figure import Figure

    by_col: dict[str, list[dict[str, Any]]] = {}
    for r in section.records:
        if r["status"] != "ok" or (r["detector"].get("spec") or r["detector"].get("name")) != det:
            continue
        if not isinstance(r.get("plots"), dict):
            continue
        by_col.setdefault(_column_label(section, r), []).append(r)
    cols = [c for c in section.columns if c.label in by_col]
    if not cols:
        return None
    nrows, ncols = _grid(len(cols))
    fig = Figure(figsize=(_PANEL_IN[0] * ncols, _PANEL_IN[1] * 2 * nrows + 0.4))
    axes = _axes_grid(fig, 2 * nrows, ncols)
    for i, col in enumerate(cols):
        r_i, c_i = divmod(i, ncols)
        ax_roc, ax_hist = axes[2 * r_i][c_i], axes[2 * r_i + 1][c_i]
        recs = sorted(by_col[col.label], key=lambda r: r["seed"])
        ax_roc.set_axis_on()
        ax_roc.plot([0, 1], [0, 1], color="#bbb", lw=0.8, ls="--")
        for r in recs:
            fpr, tpr = _floats(r["plots"].get("roc_fpr")), _floats(r["plots"].get("roc_tpr"))
            if len(fpr) and len(fpr) == len(tpr):
                ax_roc.plot(fpr, tpr, lw=1.2)
        auroc = section.cell("auroc", det, col.label)
        ax_roc.set_title(_short(col.label, 30), fontsize=8)
        ax_roc.text(0.97, 0.05, f"AUROC {pct(auroc.mean)}", ha="right", fontsize=8,
                    transform=ax_roc.transAxes)
        ax_roc.set(xlim=(0, 1), ylim=(0, 1.02), xticks=[0, 0.5, 1], yticks=[0, 0.5, 1])
        ax_roc.tick_params(labelsize=7, length=2, pad=1)
        if c_i == 0:
            ax_roc.set_ylabel("TPR (ID kept)", fontsize=7, labelpad=1)
        ax_roc.set_xlabel(f"FPR (shifted kept), {len(recs)} seed(s)", fontsize=7, labelpad=1)
        s_in = _floats(recs[0]["plots"].get("scores_in"))
        s_out = _floats(recs[0]["plots"].get("scores_out"))
        if len(s_in) or len(s_out):
            ax_hist.set_axis_on()
            both = np.concatenate([s_in, s_out])
            lo, hi = float(both.min()), float(both.max())
            edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 31)
            # One step artist per histogram (ax.hist draws a patch per bin: slow).
            for scores, colour, name in ((s_in, "tab:blue", "ID"), (s_out, "tab:red", "shifted")):
                if len(scores):
                    dens, _ = np.histogram(scores, bins=edges, density=True)
                    ax_hist.stairs(dens, edges, fill=True, alpha=0.5, color=colour, label=name)
            ax_hist.set_yticks([])
            ax_hist.tick_params(labelsize=7, length=2, pad=1)
            ax_hist.locator_params(axis="x", nbins=4)
            ax_hist.set_xlabel(f"score, seed {recs[0]['seed']} (higher = ID)", fontsize=7,
                               labelpad=1)
            if i == 0:
                ax_hist.legend(fontsize=7, frameon=False, loc="upper left")
    fig.suptitle(f"{det}: ROC (ID positive) and score histograms (blue ID, red shifted)",
                 fontsize=9)
    return _png_uri(fig)


def _severity_figure(section: Section, metric: str) -> str | None:
    from matplotlib.figure import Figure

    curves = section.severity[metric]
    if not curves:
        return None
    nrows, ncols = _grid(len(curves))
    fig = Figure(figsize=(_PANEL_IN[0] * 1.2 * ncols, _PANEL_IN[1] * 1.2 * nrows + 0.2))
    axes = _axes_grid(fig, nrows, ncols)
    for i, (name, per_det) in enumerate(curves.items()):
        ax = axes.flat[i]
        ax.set_axis_on()
        for det, pts in per_det.items():
            xs = [s for s, c in pts if c.mean is not None]
            ys = [100 * c.mean for _, c in pts if c.mean is not None]
            err = [100 * c.std if c.std is not None else 0.0 for _, c in pts if c.mean is not None]
            if xs:
                ax.errorbar(xs, ys, yerr=err, marker="o", ms=3, lw=1.2, capsize=2, label=det)
        ax.set_title(name, fontsize=8)
        ax.set_xticks(sorted({s for pts in per_det.values() for s, _ in pts}))
        ax.set_xlabel("severity", fontsize=7, labelpad=1)
        ax.set_ylabel(f"{METRIC_LABELS[metric]} (%)", fontsize=7, labelpad=1)
        ax.tick_params(labelsize=7, length=2, pad=1)
        if i == 0:
            ax.legend(fontsize=7, frameon=False)
    return _png_uri(fig)


def _short(text: str, n: int = 34) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _column_label(section: Section, record: dict[str, Any]) -> str:
    spec = str(record["shift"].get("spec") or record["shift"].get("name") or "?")
    sev = record["shift"].get("severity")
    for c in section.columns:
        if c.spec == spec and c.severity == sev:
            return c.label
    return spec


def _png(b64: Any) -> str | None:
    """A stored base64 PNG as a data URI, or None if it is missing or not a PNG."""
    if not isinstance(b64, str) or not b64:
        return None
    if b64.startswith("data:image/png;base64,"):
        b64 = b64.split(",", 1)[1]
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return None
    return "data:image/png;base64," + b64 if raw.startswith(_PNG_MAGIC) else None


def _gallery(section: Section) -> str:
    """Stored example grids: the shifted images per shift and severity, detector images beside.

    Per column the lowest seed's shift grid; per (detector, column) the lowest seed's detector
    grid (e.g. ae reconstructions), each shown once.
    """
    items: list[tuple[str, str]] = []  # (caption, uri)
    bad = 0
    for col in section.columns:
        recs = sorted((r for r in section.records if r["status"] == "ok"
                       and _column_label(section, r) == col.label),
                      key=lambda r: (r["seed"], str(r["detector"].get("spec"))))
        shift_done, dets_done = False, set()
        for r in recs:
            ex = r.get("examples") or {}
            det = str(r["detector"].get("spec") or r["detector"].get("name"))
            for key, caption, done in (
                    ("shift_png", f"{col.label} (seed {r['seed']})", shift_done),
                    ("detector_png", f"{det} on {col.label} (seed {r['seed']})",
                     det in dets_done)):
                if done or not ex.get(key):
                    continue
                uri = _png(ex.get(key))
                if uri is None:
                    bad += 1
                    continue
                items.append((caption, uri))
                if key == "shift_png":
                    shift_done = True
                else:
                    dets_done.add(det)
    if not items and not bad:
        return ""
    figs = "".join(f'<figure><img src="{uri}" alt="{_e(cap)}"><figcaption>{_e(cap)}'
                   "</figcaption></figure>" for cap, uri in items)
    note = (f'<p class="note">{bad} stored example image(s) were not valid base64 PNG and are '
            "left out.</p>" if bad else "")
    return ("<h3>Examples</h3><p class=\"muted\">The first 8 images of each shifted set, and what "
            "detectors that work on pixels make of them (e.g. the ae reconstructions).</p>"
            f'{note}<div class="gallery">{figs}</div>')


def _environment(section: Section) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{'<br>'.join(_e(v) for v in vals)}</td></tr>"
                   for k, vals in section.environment.items())
    rows += f"<tr><th>seeds</th><td>{_e(', '.join(map(str, section.seeds)))}</td></tr>"
    return f'<h3>Environment</h3><div class="scroll"><table class="env">{rows}</table></div>'


def _section(section: Section, idx: int, metric: str) -> str:
    parts = [f'<section class="board" id="section-{idx}"><h2>{_e(section.title)}</h2>',
             f'<p class="muted">dataset {_e(section.dataset)}, model {_e(section.model)}, '
             f"weights sha256 <code>{_e(section.weights_sha256)}</code></p>",
             f'<p class="muted">Values: {_e(spread_text(section))}.</p>']
    if section.has_small:
        parts.append(f'<p class="note small-set">{_e(SMALL_SET_LEGEND)}</p>')
    parts += [f'<p class="note">{_e(n)}</p>' for n in section.notes]
    parts += [_ranking(section, idx, m, metric) for m in METRICS]
    parts += [_matrix(section, idx, m, metric) for m in METRICS]
    parts.append(_classifier(section, idx))
    parts.append(_failure(section, idx))
    parts.append(_robust(section, idx))
    uri = _robust_figure(section)
    if uri:
        parts.append(f'<figure class="robust"><img src="{uri}" alt="clean vs adaptive score '
                     f'histograms"><figcaption>Scores before and after the attack aimed at each '
                     f"detector (one cell per detector, lowest seed; stored subsampled scores)"
                     f"</figcaption></figure>")
    uri = _rc_figure(section)
    if uri:
        parts.append(f'<figure class="rc"><img src="{uri}" alt="risk-coverage curves">'
                     "<figcaption>Risk-coverage curves per detector (lower is better; black: "
                     "the clean test set): selective risk when accepting the most confident "
                     "images first (stored curves, lowest seed)</figcaption></figure>")
    # One severity figure, for the metric asked for (each figure costs ~0.5 s of matplotlib; the
    # matrices already hold every metric at every severity).
    uri = _severity_figure(section, metric)
    if uri:
        parts.append(f'<h3>{_e(METRIC_LABELS[metric])} against severity</h3><figure '
                     f'class="severity"><img src="{uri}" alt="severity curves, {_e(metric)}">'
                     f"<figcaption>{_e(METRIC_LABELS[metric])} (%) against severity, mean ± std "
                     "over seeds (render with --metric to plot another metric)</figcaption>"
                     "</figure>")
    plots = []
    for det in section.detectors:
        uri = _detector_figure(section, det)
        if uri:
            plots.append(f'<figure><img src="{uri}" alt="ROC and histograms, {_e(det)}">'
                         f"<figcaption>{_e(det)}: ROC (ID positive) and score histograms "
                         "(subsampled stored scores)</figcaption></figure>")
    if plots:
        parts.append("<h3>ROC curves and score distributions</h3>" + "".join(plots))
    parts.append(_gallery(section))
    parts.append(_environment(section))
    if section.commands:
        parts.append("<h3>Reproduce</h3><pre><code>"
                     + "\n".join(_e(c) for c in section.commands) + "</code></pre>")
    parts.append("</section>")
    return "".join(parts)


def render(board: Board, metric: str = "auroc") -> str:
    """The whole board as one HTML document (string)."""
    options = "".join(f'<option value="{m}"{" selected" if m == metric else ""}>'
                      f"{_e(METRIC_LABELS[m])}</option>" for m in METRICS)
    sections = "".join(_section(s, i, metric) for i, s in enumerate(board.sections))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>shiftbench leaderboard</title>"
            f"<style>{CSS}</style></head><body><h1>shiftbench leaderboard</h1>"
            f'<p class="muted">{board.n_records} records ({board.n_failed} failed), '
            f"{len(board.sections)} dataset/model group(s). Values in %: mean±std over seeds "
            "(sample std) or mean [95 % bootstrap interval] for a single run; hover a cell for "
            "the per-seed values.</p>"
            f'<div class="controls"><label for="metric">metric </label>'
            f'<select id="metric">{options}</select></div>'
            f"{sections}<script>{JS}</script></body></html>\n")
