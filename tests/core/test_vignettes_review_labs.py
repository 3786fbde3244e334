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


# --- a value without a unit on a molar LOINC code ------------------------------------------------


def _unitless(loinc: str, display: str, value, as_string: bool = False) -> dict:
    obs = F.observation(loinc, display, None, None, days=5)
    if as_string:
        obs["valueString"] = str(value)
    else:
        obs["valueQuantity"] = {"value": value}
    return obs


def test_unitless_glucose_on_the_molar_code_is_not_read_as_mg_dl(run):
    # 15074-8 is Glucose [Moles/volume]: a bare 5.2 is 5.2 mmol/L (normal), never 5.2 mg/dL.
    a = run(rls_patient(_unitless("15074-8", "Glucose [Moles/volume] in Blood", 5.2)))
    assert "hypoglycemia" not in causes(a)
    a = run(rls_patient(_unitless("14749-6", "Glucose [Moles/volume] in Serum or Plasma", 5.8, True)))
    assert "hypoglycemia" not in causes(a)


def test_unitless_magnesium_on_the_molar_code_is_not_read_as_mg_dl(run):
    # 2601-3 is Magnesium [Moles/volume]: 0.85 mmol/L is normal (2.07 mg/dL).
    a = run(rls_patient(_unitless("2601-3", "Magnesium [Moles/volume] in Serum or Plasma", 0.85)))
    assert "magnesium_deficiency" not in causes(a)


def test_unitless_value_on_a_mass_code_is_still_read_in_the_canonical_unit(run):
    a = run(rls_patient(_unitless("2345-7", "Glucose [Mass/volume] in Serum or Plasma", 52)))
    assert "52 mg/dL" in finding(a, "hypoglycemia").summary


# --- ICD-10-CM families with legacy or unlisted children ----------------------------------------


def test_legacy_sjogren_m35_0_counts(run):
    # M35.0 was billable until FY2024 ("Sicca syndrome [Sjögren]"); old problem lists still carry it.
    sjogren = F.condition(F.ICD10, "M35.0", "Sicca syndrome [Sjogren]")
    f = finding(run(rls_patient(sjogren)), "sjogren_syndrome")
    assert "M35.0" in f.summary and f.strength == "weak" and not f.actionable


def test_mid_cervical_radiculopathy_unspecified_level_counts(run):
    disc = F.condition(F.ICD10, "M50.120", "Mid-cervical disc disorder, unspecified level")
    assert finding(run(rls_patient(disc)), "spinal_nerve_damage").evidence[0].code == "M50.120"


def test_sjogren_with_neuropathy_keeps_both_findings_under_the_family_row(run):
    a = run(rls_patient(F.condition(F.ICD10, "M3506", "Sjogren syndrome with PNS involvement")))
    assert {"sjogren_syndrome", "peripheral_neuropathy"} <= causes(a)


# --- hypoglycemia level, magnesium flag: the card says why the value counts ----------------------


def test_glucose_below_54_is_named_ada_level_2(run):
    glucose = F.observation("15074-8", "Glucose [Moles/volume] in Blood", 2.5, "mmol/L", days=3)
    f = finding(run(rls_patient(glucose)), "hypoglycemia")
    assert "level 2" in f.reasoning and "level 2" in (f.evidence[0].note or "")


def test_glucose_64_is_ada_level_1(run):
    glucose = F.observation("2345-7", "Glucose [Mass/volume] in Serum or Plasma", 64, "mg/dL", days=3)
    f = finding(run(rls_patient(glucose)), "hypoglycemia")
    assert "level 1" in f.reasoning and "level 2" not in f.reasoning


def test_magnesium_counted_by_the_lab_flag_says_so(run):
    mg = F.observation("19123-9", "Magnesium", 1.8, "mg/dL", days=10, interpretation="L")
    f = finding(run(rls_patient(mg)), "magnesium_deficiency")
    assert "flagged low by the lab (L)" in (f.evidence[0].note or "")


# --- kidney: extrarenal uremia is not kidney disease ---------------------------------------------


def test_extrarenal_uremia_alone_is_informational_not_kidney_disease(run):
    f = finding(run(rls_patient(F.condition(F.ICD10, "R39.2", "Extrarenal uremia"))), "kidney_disease")
    assert f.strength == "informational" and not f.actionable
    assert "Kidney disease coded" not in f.summary and "not kidney disease" in f.summary


def test_extrarenal_uremia_beside_ckd_4_leaves_the_ckd_card(run):
    a = run(
        rls_patient(
            F.condition(F.ICD10, "R39.2", "Extrarenal uremia"), F.condition(F.ICD10, "N18.4", "CKD 4")
        )
    )
    f = finding(a, "kidney_disease")
    assert f.strength == "moderate" and "N18.4" in f.summary
