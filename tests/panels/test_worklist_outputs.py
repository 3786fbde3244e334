"""What a reader of the nightly worklist acts on: spreadsheet-safe CSV, unreadable lines named per
patient, counts that say who was assessed without a Patient resource, evidence on every row."""

from __future__ import annotations

import csv
import io

from rls_cds.panels.report import worklist_csv


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
