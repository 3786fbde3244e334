"""What a reader of the nightly worklist acts on: spreadsheet-safe CSV, unreadable lines named per
patient, counts that say who was assessed without a Patient resource, evidence on every row."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

from rls_cds.core.engine import evaluate
from rls_cds.panels import runs
from rls_cds.panels.html import render_worklist
from rls_cds.panels.report import worklist_csv
from rls_cds.settings import Settings


def _report(patient: str, summary: str = "s", action: str = "a") -> dict:
    finding = {"cause": "iron_deficiency", "strength": "strong", "summary": summary, "action": action}
    return {"worklist": [{"patient": patient, "findings": [finding], "new_causes": []}]}


def test_csv_patient_column_cannot_start_a_formula():
    # The patient id comes from the resource's subject reference ('Patient/=HYPERLINK(...)'): only
    # summary and action were guarded, a spreadsheet opened the patient cell as a live formula.
    for bad in ('=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1+1"):
        rows = list(csv.DictReader(io.StringIO(worklist_csv(_report(bad, summary=bad, action=bad)))))
        assert rows[0]["patient"] == "'" + bad
        assert rows[0]["summary"] == "'" + bad and rows[0]["action"] == "'" + bad
    rows = list(csv.DictReader(io.StringIO(worklist_csv(_report("p-1")))))
    assert rows[0]["patient"] == "p-1"  # ordinary ids unchanged


def test_csv_cell_with_a_carriage_return_stays_one_cell():
    # Summaries quote resource displays; csv with lineterminator '\n' left a bare '\r' unquoted, and
    # spreadsheets (and csv readers) split the row there: the columns after it shifted.
    text = worklist_csv(_report("p-1", summary="Ferritin\r(2026-09-15)", action="=x\ry"))
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == 1
    assert rows[0]["summary"] == "Ferritin\r(2026-09-15)" and rows[0]["action"] == "'=x\ry"
    assert text.count('"') == 4  # both cells quoted


def _write(directory: Path, files: dict[str, list[dict | bytes]]) -> Path:
    directory.mkdir()
    for name, lines in files.items():
        raw = [x if isinstance(x, bytes) else json.dumps(x).encode() for x in lines]
        (directory / name).write_bytes(b"".join(line + b"\n" for line in raw))
    return directory


def _rls(rid: str, pid: str) -> dict:
    return {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "G25.81"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": "2020-01-01",
    }


def _ferritin(rid: str, pid: str, value) -> dict:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2276-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-09-15T10:00:00Z",
        "valueQuantity": {
            "value": value,
            "unit": "ng/mL",
            "system": "http://unitsofmeasure.org",
            "code": "ng/mL",
        },
    }


CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _run(tmp_path, panel_redis, terminology, directory: Path, panel: str, workers: int = 1) -> dict:
    import redis

    settings = Settings(reports_dir=tmp_path / "reports")
    client = redis.Redis.from_url(panel_redis.url)
    state = runs.create_local_run(client, sorted(directory.glob("*.ndjson")), panel, workers, settings, NOW)
    ctx = runs.Context(settings=settings, redis=client, terminology=terminology)
    for cid in state.ids("map"):
        runs.run_map(state, cid, ctx)
    for uid in state.ids("reduce"):
        runs.run_reduce(state, uid, ctx)
    return runs.finalize(state, settings.reports_dir)


def test_a_patient_with_an_unreadable_line_is_in_the_error_report_not_on_the_worklist(
    tmp_path, panel_redis, terminology
):
    # The ferritin line could not be decoded (value "twelve"): the patient was assessed without it and
    # listed "no ferritin in 12 months: order iron studies"; the core, given the same resources, says
    # the ferritin is not valid FHIR and to judge by hand. The parse error named only file and line.
    export = _write(
        tmp_path / "unreadable",
        {
            "Patient.ndjson": [{"resourceType": "Patient", "id": p} for p in ("ok", "bad", "only-bad")],
            "Condition.ndjson": [_rls("c1", "ok"), _rls("c2", "bad")],
            "Observation.ndjson": [
                _ferritin("f1", "ok", 200),
                _ferritin("f2", "bad", "twelve"),
                _ferritin("f3", "ghost", "twelve"),  # a patient known only by the unreadable line
            ],
        },
    )
    report = _run(tmp_path, panel_redis, terminology, export, "unreadable")
    assert [e["line"] for e in report["parse_errors"]] == [2, 3]
    assert "bad" not in {r["patient"] for r in report["worklist"]}
    errors = {e["patient"]: e["reason"] for e in report["errors"]}
    assert set(errors) == {"bad", "ghost"}
    assert "Observation/f2" in errors["bad"] and "Observation.ndjson" in errors["bad"]
    assert report["counts"]["patients_assessed"] == 2  # ok, only-bad
    core = evaluate(
        [{"resourceType": "Patient", "id": "bad"}, _rls("c2", "bad"), _ferritin("f2", "bad", "twelve")],
        now=NOW,
        terminology=terminology,
    )
    assert not [f for f in core.findings if f.actionable]  # what the worklist said was not what the core says


def test_counts_and_console_say_who_was_assessed_without_a_patient_resource_and_what_was_unreadable(
    tmp_path, panel_redis, terminology
):
    # Facts for 'ghost' (no Patient line) were assessed and listed like anyone else; the count of such
    # patients was kept per unit and dropped from the report. The console said "completed_with_errors;
    # 0 in the error report" for a run whose only problem was an unreadable line, with no hint of it.
    from rls_cds.commands.panel import _summary

    export = _write(
        tmp_path / "ghosts",
        {
            "Patient.ndjson": [
                {"resourceType": "Patient", "id": "p1"},
                b'{"resourceType": "Patient", "id": ',
            ],
            "Condition.ndjson": [_rls("c1", "p1"), _rls("c2", "ghost")],
            "Observation.ndjson": [_ferritin("f1", "ghost", 9)],
        },
    )
    report = _run(tmp_path, panel_redis, terminology, export, "no-patient-line")
    assert report["counts"]["patients_assessed"] == 2
    assert report["counts"]["patients_without_patient_resource"] == 1
    line = _summary(report)
    assert "1 unreadable line" in line and "1 patients assessed without a Patient resource" in line
    assert "ghost" not in line  # the console names no patient


def test_every_worklist_row_names_its_evidence_resources_values_and_dates(tmp_path, panel_redis, terminology):
    # Rows carried cause, strength, summary and action only: the reader could not tell which
    # Observation or Condition to open (the core's findings name them in their evidence).
    export = _write(
        tmp_path / "evidence",
        {
            "Patient.ndjson": [{"resourceType": "Patient", "id": "p1"}],
            "Condition.ndjson": [_rls("c1", "p1")],
            "Observation.ndjson": [_ferritin("f1", "p1", 15)],
        },
    )
    report = _run(tmp_path, panel_redis, terminology, export, "evidence")
    (finding,) = [f for row in report["worklist"] for f in row["findings"] if f["cause"] == "iron_deficiency"]
    assert {"resource": "Observation/f1", "value": 15.0, "unit": "ng/mL", "date": "2026-09-15"}.items() <= (
        finding["evidence"][0].items()
    )
    rows = list(csv.DictReader(io.StringIO(Path(report["files"]["csv"]).read_text(), newline="")))
    assert list(rows[0])[:6] == ["patient", "cause", "strength", "new", "summary", "action"]  # stable
    (iron,) = [r for r in rows if r["cause"] == "iron_deficiency"]
    assert (
        "Observation/f1" in iron["evidence"] and "15" in iron["evidence"] and "2026-09-15" in iron["evidence"]
    )
    page = render_worklist(report)
    assert "Observation/f1" in page
