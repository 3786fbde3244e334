"""Server-rendered HTML worklist of one run (no front-end build): filters, per-cause counts, a small
SVG chart of worklist sizes over the panel's recent runs. Every value is HTML-escaped."""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from rls_cds.panels.report import evidence_text

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;
vertical-align:top}th{background:#f3f3f3}.new{font-weight:bold;color:#b00}.muted{color:#777}
nav a{margin-right:.7rem}form{margin:.5rem 0}
"""


def _e(value) -> str:
    return escape("" if value is None else str(value), quote=True)


def chart_svg(history: list[tuple[str, int]]) -> str:
    """Bars of worklist size per run, oldest first (at most 20 runs)."""
    history = history[-20:]
    if not history:
        return ""
    top = max(n for _, n in history) or 1
    width, height, bar = 24 * len(history) + 10, 110, 18
    parts = [f'<svg id="history" role="img" aria-label="worklist size over recent runs" '
             f'width="{width}" height="{height + 20}" xmlns="http://www.w3.org/2000/svg">']  # fmt: skip
    for i, (run, n) in enumerate(history):
        h = round(height * n / top)
        x = 5 + 24 * i
        parts.append(
            f'<rect x="{x}" y="{height - h}" width="{bar}" height="{h}" fill="#4a78c2">'
            f"<title>{_e(run)}: {n}</title></rect>"
            f'<text x="{x + bar / 2}" y="{height + 14}" font-size="10" text-anchor="middle">{n}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_worklist(
    report: dict,
    cause: str | None = None,
    only_new: bool = False,
    history: list[tuple[str, int]] | None = None,
    csv_url: str = "",
) -> str:
    rows = report.get("worklist") or []
    if cause:
        rows = [r for r in rows if any(f.get("cause") == cause for f in r["findings"])]
    if only_new:
        rows = [r for r in rows if r.get("new")]
    counts = report.get("counts") or {}
    per_cause = report.get("actionable_per_cause") or {}
    title = f"Panel {report.get('panel')} — run {report.get('run')}"
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p id='status'>Status: <strong>{_e(report.get('status'))}</strong>. "
        f"{_e(counts.get('patients_assessed'))} patients assessed, "
        f"{_e(counts.get('patients_in_error'))} in the error report, "
        f"{_e(counts.get('worklist'))} on the worklist "
        f"({_e(counts.get('new_since_previous'))} new since the previous run).</p>",
        "<h2>Actionable findings per cause</h2><table id='causes'><tr><th>cause</th><th>patients</th></tr>",
    ]
    for c, n in sorted(per_cause.items()):
        link = "?" + urlencode({"cause": c})
        out.append(f"<tr><td><a href='{_e(link)}'>{_e(c)}</a></td><td>{_e(n)}</td></tr>")
    out.append("</table>")
    if history:
        out.append("<h2>Worklist size over recent runs</h2>" + chart_svg(history))
    out.append(
        "<h2>Worklist</h2><form method='get'><label>Cause <select name='cause'><option value=''>all</option>"
    )
    for c in sorted(per_cause):
        sel = " selected" if c == cause else ""
        out.append(f"<option value='{_e(c)}'{sel}>{_e(c)}</option>")
    checked = " checked" if only_new else ""
    out.append(
        f"</select></label> <label><input type='checkbox' name='new' value='1'{checked}> new since last run"
        "</label> <button type='submit'>Filter</button></form>"
    )
    if csv_url:
        out.append(f"<p><a id='csv' href='{_e(csv_url)}'>Download CSV</a></p>")
    out.append(
        "<table id='worklist'><tr><th>patient</th><th>cause</th><th>strength</th><th>summary</th>"
        "<th>action</th><th>evidence</th><th>new</th></tr>"
    )
    for row in rows:
        new = set(row.get("new_causes") or ())
        for f in row["findings"]:
            if cause and f.get("cause") != cause:
                continue
            is_new = f.get("cause") in new
            out.append(
                f"<tr class='finding' data-patient='{_e(row['patient'])}' data-cause='{_e(f.get('cause'))}'>"
                f"<td>{_e(row['patient'])}</td><td>{_e(f.get('cause'))}</td><td>{_e(f.get('strength'))}</td>"
                f"<td>{_e(f.get('summary'))}</td><td>{_e(f.get('action'))}</td><td>{_e(evidence_text(f))}</td>"
                f"<td class='{'new' if is_new else 'muted'}'>{'new' if is_new else ''}</td></tr>"
            )
    out.append("</table>")
    errors = report.get("errors") or []
    if errors:
        out.append(
            f"<h2>Error report ({len(errors)})</h2>"
            "<table id='errors'><tr><th>patient</th><th>reason</th></tr>"
        )
        for e in errors[:1000]:
            out.append(f"<tr><td>{_e(e['patient'])}</td><td>{_e(e['reason'])}</td></tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "".join(out)
