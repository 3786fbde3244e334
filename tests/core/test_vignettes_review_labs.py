"""Vignettes from the clinical review of the condition- and lab-based causes other than iron
(kidney, diabetes, deficiencies, glucose, the weak associations and the RLS gate)."""

from __future__ import annotations

from tests.core import fhir as F
from tests.core.conftest import causes, finding


def rls_patient(*extra):
    return [F.patient(), F.rls(), F.ferritin(150, days=20), F.tsat(30, days=20), *extra]


def abated(cond: dict, days: float = 300) -> dict:
    """An encounter diagnosis as some EHRs send a resolved one: an abatement date, no clinicalStatus."""
    cond.pop("clinicalStatus", None)
    cond["abatementDateTime"] = F.at(days)
    return cond


# --- abatement without a clinicalStatus ----------------------------------------------------------


def test_abated_lyme_without_status_is_not_current(run):
    # Lyme disease treated and abated a year ago; the EHR sends no clinicalStatus.
    lyme = abated(F.condition(F.ICD10, "A69.20", "Lyme disease, unspecified", onset_days=700))
    assert "lyme_disease" not in causes(run(rls_patient(lyme)))


def test_abated_rls_without_status_does_not_open_the_gate(run):
    old_rls = abated(F.rls(onset_days=900))
    neuropathy = F.condition(F.ICD10, "G62.9", "Polyneuropathy, unspecified")
    a = run([F.patient(), old_rls, neuropathy])
    assert not a.has_rls
    assert run.cards([F.patient(), old_rls, neuropathy]) == []


def test_abatement_period_and_string_count_too(run):
    ckd = F.condition(F.ICD10, "N18.4", "Chronic kidney disease, stage 4 (severe)")
    ckd.pop("clinicalStatus")
    ckd["abatementPeriod"] = {"start": F.at(200), "end": F.at(100)}
    sjogren = F.condition(F.ICD10, "M35.00", "Sjögren syndrome, unspecified")
    sjogren.pop("clinicalStatus")
    sjogren["abatementString"] = "resolved 2024"
    found = causes(run(rls_patient(ckd, sjogren)))
    assert "kidney_disease" not in found and "sjogren_syndrome" not in found


def test_no_status_and_no_abatement_is_still_read_as_active(run):
    lyme = F.condition(F.ICD10, "A69.20", "Lyme disease, unspecified", clinical=None)
    f = finding(run(rls_patient(lyme)), "lyme_disease")
    assert "read as active" in (f.evidence[0].note or "")
