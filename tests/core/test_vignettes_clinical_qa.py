"""Clinical QA vignettes: what a clinician reads on the cards (summary wording, one card per
concern, honesty about data that could not be interpreted). Each test is a defect found by reading
cards of generated patients (benchmarks/generate.py) against rls-clinical.md."""

from __future__ import annotations

from tests.core import fhir as F
from tests.core.conftest import finding


def rls_patient(*extra):
    return [F.patient(), F.rls(), F.ferritin(120), F.tsat(30), *extra]


def test_persisting_low_egfr_summary_keeps_the_lower_case_e_of_egfr(run):
    # MDRD eGFR as Synthea sends it (33914-3), 52 then 48 four months apart: CKD G3a.
    a = run(rls_patient(F.egfr(52, days=150, loinc="33914-3"), F.egfr(48, days=20, loinc="33914-3")))
    f = finding(a, "kidney_disease")
    assert f.summary.startswith("eGFR 48 "), f.summary
    assert "CKD G3a" in f.summary


def test_unconfirmed_esrd_is_called_unconfirmed_not_a_stage_below_3(run):
    # A provisional ESRD (SNOMED 46177005) on the problem list: the card must not say
    # "End-stage renal disease (stage not >= 3 ...)", a contradiction in terms.
    a = run(
        rls_patient(F.condition(F.SCT, "46177005", "End-stage renal disease", verification="provisional"))
    )
    f = finding(a, "kidney_disease")
    assert not f.actionable and f.strength == "weak"
    assert "stage not" not in f.summary and "stage" not in f.reasoning, (f.summary, f.reasoning)
    assert "unconfirmed" in f.summary, f.summary


def test_ckd_of_unspecified_stage_says_the_stage_is_not_given(run):
    f = finding(
        run(rls_patient(F.condition(F.ICD10, "N18.9", "Chronic kidney disease, unspecified"))),
        "kidney_disease",
    )
    assert not f.actionable and f.strength == "weak"
    assert "stage not given" in f.summary and "not confirmed" not in f.summary, f.summary
