"""A run's report: worklist (with what is new since the previous run), per-cause counts, error report.

Written as JSON and CSV under ``settings.reports_dir/<panel>/<run>.{json,csv}`` and kept in Redis for
the API. The run's status is decided here and only here: ``succeeded`` only when every expected
patient was assessed; ``completed_with_errors`` when some are in the error report; never success while
patients are unaccounted for.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from pathlib import Path

import orjson

from rls_cds.panels.state import TERMINAL, RunState, runs_of

log = logging.getLogger("rls_cds.panels")

CSV_FIELDS = ["patient", "cause", "strength", "new", "summary", "action", "evidence"]  # append only


def empty_tally() -> dict:
    """A unit of work's counts, worklist rows and errors (work.new_result); a run's merged totals."""
    return {
        "assessed": 0,
        "worklist": [],
        "errors": [],
        "cause_patients": {},
        "actionable_patients": {},
        "outside_panel": 0,
        "warnings": 0,
        "unchanged": 0,
    }


def merge_results(results: dict[str, dict]) -> dict:
    out = empty_tally()
    for uid in sorted(results):
        r = results[uid]
        out["assessed"] += r["assessed"]
        out["worklist"].extend(r["worklist"])
        out["errors"].extend(r["errors"])
        out["outside_panel"] += r.get("outside_panel", 0)
        out["warnings"] += r.get("warnings", 0)
        out["unchanged"] += r.get("unchanged", 0)
        for name in ("cause_patients", "actionable_patients"):
            for cause, n in r[name].items():
                out[name][cause] = out[name].get(cause, 0) + n
    out["worklist"].sort(key=lambda row: row["patient"])
    out["errors"].sort(key=lambda row: row["patient"])
    return out


def previous_worklist(state: RunState, panel_id: str) -> tuple[str | None, dict[str, set[str]]]:
    """The most recent earlier finished run of the panel with a report: patient -> actionable causes."""
    tenant = state.meta().get("tenant")
    for rid in runs_of(state.r, panel_id, limit=100):
        if rid == state.run_id:
            continue
        prev = RunState(state.r, rid)
        if prev.meta().get("status") not in TERMINAL or prev.meta().get("status") == "failed":
            continue
        if prev.meta().get("tenant") != tenant:  # local runs of one panel id under different tenants
            continue
        report = prev.report()
        if report is None:
            continue
        return rid, {row["patient"]: {f["cause"] for f in row["findings"]} for row in report["worklist"]}
    return None, {}


def mark_new(worklist: list[dict], previous: dict[str, set[str]]) -> int:
    n = 0
    for row in worklist:
        before = previous.get(row["patient"], set())
        new_causes = sorted({f["cause"] for f in row["findings"]} - before)
        row["new_causes"] = new_causes
        row["new"] = bool(new_causes)
        n += row["new"]
    return n


def decide_status(expected: int | None, merged: dict, run_errors: list[str], bad_lines: int = 0) -> str:
    """A line that could not be read may have held any patient's data: not a full success either."""
    accounted = merged["assessed"] + merged["unchanged"] + len(merged["errors"])
    if run_errors or merged["errors"] or bad_lines:
        return "completed_with_errors"
    if expected is not None and accounted != expected:
        return "completed_with_errors"
    return "succeeded"


def build_report(state: RunState, reports_dir: Path) -> dict:
    meta = state.meta()
    merged = merge_results(state.results())
    stats = state.mapstats()
    parse_errors = [
        {"file": s.get("file"), "line": e["line"], "reason": e["reason"]} for s in stats for e in s["errors"]
    ]
    run_errors = list(meta.get("run_errors") or [])
    bad_lines = sum(s["bad_lines"] for s in stats)
    if bad_lines > len(parse_errors):
        run_errors.append(f"{bad_lines - len(parse_errors)} more unreadable lines not listed")
    expected = meta.get("expected_patients")
    if expected is None and meta.get("strategy") != "ndjson":
        run_errors.append("the panel's patients were never resolved")
    if expected is None and not meta.get("patients_known", True):
        run_errors.append("the Patient file could not be read: the panel's patients are not all known")
    prev_id, previous = previous_worklist(state, meta["panel"])
    new_count = mark_new(merged["worklist"], previous)
    status = decide_status(expected, merged, run_errors, bad_lines)
    accounted = merged["assessed"] + merged["unchanged"] + len(merged["errors"])
    if expected is not None and accounted != expected:
        run_errors.append(f"{expected - accounted} expected patients unaccounted for")
    report = {
        "run": state.run_id,
        "panel": meta["panel"],
        "status": status,
        "started_at": meta.get("created_at"),
        "finished_at": time.time(),
        "evaluated_at": meta.get("now"),
        "since": meta.get("since"),
        "previous_run": prev_id,
        "counts": {
            "patients_assessed": merged["assessed"],
            "patients_in_error": len(merged["errors"]),
            "patients_unchanged": merged["unchanged"],
            "patients_expected": expected,
            "worklist": len(merged["worklist"]),
            "new_since_previous": new_count,
            "resources": sum(s["resources"] for s in stats),
            "resources_kept": sum(s["kept"] for s in stats),
            "bad_lines": bad_lines,
            "outside_panel": merged["outside_panel"],
            # assessed from facts whose patient has no Patient resource in the files (local runs)
            "patients_without_patient_resource": merged["warnings"],
        },
        "patients_per_cause": dict(sorted(merged["cause_patients"].items())),
        "actionable_per_cause": dict(sorted(merged["actionable_patients"].items())),
        "worklist": merged["worklist"],
        "errors": merged["errors"],
        "parse_errors": parse_errors,
        "export_errors": meta.get("export_errors") or [],
        "run_errors": run_errors,
    }
    report["files"] = write_files(report, Path(reports_dir))
    return report


def write_files(report: dict, reports_dir: Path) -> dict:
    """The run's JSON and CSV worklists, readable by the service's user only: they hold patient ids
    and findings (PHI), and the host may have other users."""
    folder = reports_dir / _safe(report["panel"])
    for level in (reports_dir, folder):
        level.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)  # mkdir's mode is masked by the umask, and an older folder may be 0755
    json_path = folder / f"{_safe(report['run'])}.json"
    csv_path = folder / f"{_safe(report['run'])}.csv"
    _write_private(json_path, orjson.dumps(report, option=orjson.OPT_INDENT_2))
    _write_private(csv_path, worklist_csv(report).encode("utf-8"))
    return {"json": str(json_path), "csv": str(csv_path)}


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)  # a file left by an older version may be 0644
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def worklist_csv(report: dict) -> str:
    buf = io.StringIO()
    # Rows in CSV_FIELDS order (DictWriter: +40 % time). RFC 4180 line ends: with '\n' the writer left a
    # bare '\r' from a resource's text unquoted, and spreadsheets split the row there.
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CSV_FIELDS)
    w.writerows(
        (
            _csv_safe(row["patient"]),  # from the resources' subject references: any text
            f["cause"],
            f.get("strength"),
            "yes" if f["cause"] in new else "no",
            _csv_safe(f.get("summary")),
            _csv_safe(f.get("action")),
            _csv_safe(evidence_text(f)),
        )
        for row in report["worklist"]
        for new in (set(row.get("new_causes") or ()),)
        for f in row["findings"]
    )
    return buf.getvalue()


def evidence_text(finding: dict) -> str:
    """'Observation/f1 15 ng/mL 2026-09-15; Condition/c1 2020-01-01': the resources a finding rests on."""
    return "; ".join(
        " ".join(
            str(x) for x in (e.get("resource"), e.get("value"), e.get("unit"), e.get("date")) if x is not None
        )
        for e in finding.get("evidence") or ()
    )


def _csv_safe(text) -> str:
    """No spreadsheet formula injection through a cell that starts with = + - @ (or a tab or carriage
    return before one: some spreadsheets skip them)."""
    s = "" if text is None else str(text)
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
