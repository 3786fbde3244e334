"""Vignettes: magnesium, B12, hypoglycemia, the weak associations, lifestyle and the informational
causes (rls-clinical.md §2.9-2.12)."""

from __future__ import annotations

import pytest

from tests.core import fhir as F
from tests.core.conftest import causes, finding


def rls_patient(*extra):
    return [F.patient(), F.rls(), F.ferritin(150, days=20), F.tsat(30, days=20), *extra]


def mg(value, unit="mg/dL", **kw):
    loinc = "19123-9" if unit.startswith("mg") else "2601-3"
    return F.observation(loinc, "Magnesium [Mass/volume] in Serum or Plasma", value, unit, **kw)


def b12(value, unit="pg/mL", **kw):
    return F.observation(
        "2132-9", "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma", value, unit, **kw
    )


def glucose(value, unit="mg/dL", days=5):
    loinc = "2345-7" if unit == "mg/dL" else "15074-8"
    return F.observation(loinc, "Glucose", value, unit, days=days)


# --- magnesium_deficiency -----------------------------------------------------------------------


def test_low_magnesium_mg_dl(run):
    f = finding(run(rls_patient(mg(1.5))), "magnesium_deficiency")
    assert "1.5 mg/dL" in f.summary and f.strength == "weak" and not f.actionable


def test_low_magnesium_in_mmol_l_is_converted(run):
    f = finding(run(rls_patient(mg(0.6, "mmol/L"))), "magnesium_deficiency")  # 1.46 mg/dL
    assert f.data["value"] == pytest.approx(1.458, abs=0.01)


def test_normal_magnesium_and_exact_threshold_are_silent(run):
    assert "magnesium_deficiency" not in causes(run(rls_patient(mg(0.75, "mmol/L"))))  # 1.82 mg/dL
    assert "magnesium_deficiency" not in causes(run(rls_patient(mg(1.7))))  # < 1.7 is low, 1.7 is not


def test_hypomagnesemia_diagnosis(run):
    assert "magnesium_deficiency" in causes(
        run(rls_patient(F.condition(F.ICD10, "E83.42", "Hypomagnesemia")))
    )


# --- b12_deficiency -----------------------------------------------------------------------------


def test_low_b12_pg_ml_and_pmol_l(run):
    assert finding(run(rls_patient(b12(150))), "b12_deficiency").data["value"] == 150
    f = finding(run(rls_patient(b12(110, "pmol/L"))), "b12_deficiency")  # ~149 pg/mL
    assert f.data["value"] == pytest.approx(149, abs=1)


def test_normal_b12_is_silent_and_exactly_200_is_borderline_not_deficient(run):
    assert "b12_deficiency" not in causes(run(rls_patient(b12(420))))
    f = finding(run(rls_patient(b12(200))), "b12_deficiency")
    assert f.data["value"] is None and "borderline" in f.summary


def test_borderline_b12_with_high_mma_is_possible_deficiency(run):
    mma = F.observation("13964-2", "Methylmalonate [Moles/volume] in Serum or Plasma", 520, "nmol/L")
    f = finding(run(rls_patient(b12(250), mma)), "b12_deficiency")
    assert "MMA" in f.summary


def _mma(value):
    return F.observation("13964-2", "Methylmalonate [Moles/volume] in Serum or Plasma", value, "nmol/L")


def test_low_b12_beside_a_normal_mma_is_information_naming_the_mma(run):
    # "Low vitamin B12 may worsen RLS... replete" beside a normal MMA, which was not even shown.
    f = finding(run(rls_patient(b12(190), _mma(150))), "b12_deficiency")
    assert not f.actionable and "MMA 150 nmol/L normal: deficiency not confirmed" in f.summary
    assert any(e.value == 150 for e in f.evidence)
    assert "not confirmed" not in finding(run(rls_patient(b12(190))), "b12_deficiency").summary  # no MMA


def test_mma_bounds_unrelated_draws_and_coded_deficiency(run):
    def mma(value, comparator=None, days=30):
        return F.observation(
            "13964-2",
            "Methylmalonate [Moles/volume] in Serum or Plasma",
            value,
            "nmol/L",
            comparator=comparator,
            days=days,
        )

    # '>400' is raised, never "normal": the low-B12 card keeps its claim and shows the MMA.
    f = finding(run(rls_patient(b12(150), mma(400, ">"))), "b12_deficiency")
    assert "not confirmed" not in f.summary and any(e.value == ">400" for e in f.evidence)
    assert (
        "possible B12 deficiency"
        in finding(run(rls_patient(b12(250), mma(400, ">"))), "b12_deficiency").summary
    )
    # A coded B12 deficiency (pernicious anaemia) is not second-guessed by a normal MMA.
    pa = F.condition(F.ICD10, "D51.0", "Vitamin B12 deficiency anemia due to intrinsic factor deficiency")
    assert "not confirmed" not in finding(run(rls_patient(b12(190), mma(150), pa)), "b12_deficiency").summary
    # An MMA drawn ten months before the B12 is not "beside" it.
    f = finding(run(rls_patient(b12(190, days=5), mma(150, days=300))), "b12_deficiency")
    assert "not confirmed" not in f.summary
    # An MMA drawn long after a low B12 (perhaps after replacement) does not undo it, and a high MMA
    # from ten months before a borderline B12 does not confirm it (the card asks for an MMA instead).
    f = finding(run(rls_patient(b12(150, days=300), mma(150, days=10))), "b12_deficiency")
    assert "not confirmed" not in f.summary
    f = finding(run(rls_patient(b12(250, days=5), mma(600, days=295))), "b12_deficiency")
    assert "check methylmalonic acid" in f.summary
    # An MMA that cannot be read is not a raised one.
    unread = F.observation("13964-2", "Methylmalonate [Moles/volume] in Serum or Plasma", 0.6, "mg/dL")
    f = finding(run(rls_patient(b12(250), unread, F.egfr(40, days=20))), "b12_deficiency")
    assert "also raised by reduced kidney function" not in f.reasoning


def test_a_high_mma_in_reduced_kidney_function_names_it(run):
    ckd = F.condition(F.ICD10, "N18.32", "Chronic kidney disease, stage 3b")
    f = finding(run(rls_patient(b12(260), _mma(550), ckd)), "b12_deficiency")
    assert "MMA is also raised by reduced kidney function, which this patient has" in f.reasoning
    assert "N18.32" in f.reasoning
    f = finding(run(rls_patient(b12(260), _mma(550), F.egfr(35, days=20))), "b12_deficiency")
    assert "eGFR 35" in f.reasoning
    assert "kidney function" not in finding(run(rls_patient(b12(260), _mma(550))), "b12_deficiency").reasoning
    # ">59" (LabCorp style) is a normal eGFR, as the kidney rule reads it, not "eGFR 59".
    normal = F.egfr(59, days=20, comparator=">")
    assert (
        "kidney function"
        not in finding(run(rls_patient(b12(260), _mma(550), normal)), "b12_deficiency").reasoning
    )


def test_borderline_b12_without_mma_asks_for_mma_and_a_normal_mma_settles_it(run):
    # rls-clinical.md §2.9: 200-300 pg/mL is borderline: check MMA.
    f = finding(run(rls_patient(b12(150, "pmol/L"))), "b12_deficiency")  # ~203 pg/mL
    assert "check methylmalonic acid" in f.summary and "methylmalonic" in f.action and not f.actionable
    normal = F.observation("13964-2", "Methylmalonate [Moles/volume] in Serum or Plasma", 250, "nmol/L")
    assert "b12_deficiency" not in causes(run(rls_patient(b12(250), normal)))
    pending = F.observation(
        "13964-2", "Methylmalonate [Moles/volume] in Serum or Plasma", 600, "nmol/L", status="preliminary"
    )
    assert "b12_deficiency" not in causes(run(rls_patient(b12(250), pending)))  # under way: not missing
    unreadable = F.observation(
        "13964-2", "Methylmalonate [Moles/volume] in Serum or Plasma", 0.07, "mg/L", rid="mma-u"
    )
    f = finding(run(rls_patient(b12(250), unreadable)), "b12_deficiency")
    assert "MMA result: unit not recognised" in f.summary and f.evidence[-1].resource == "Observation/mma-u"


def test_pernicious_anemia_diagnosis(run):
    assert "b12_deficiency" in causes(run(rls_patient(F.condition(F.SCT, "84027009", "Pernicious anemia"))))


# --- hypoglycemia -------------------------------------------------------------------------------


def test_low_glucose_in_mmol_l_within_30_days(run):
    f = finding(run(rls_patient(glucose(3.2, "mmol/L"))), "hypoglycemia")  # 57.6 mg/dL
    assert f.data["value"] == pytest.approx(57.6)


def test_old_low_glucose_and_exactly_70_are_silent(run):
    assert "hypoglycemia" not in causes(run(rls_patient(glucose(60, days=40))))
    assert "hypoglycemia" not in causes(run(rls_patient(glucose(70))))
    assert "hypoglycemia" in causes(run(rls_patient(glucose(69))))


def test_any_low_glucose_in_the_window_counts(run):
    a = run(rls_patient(glucose(62, days=20), glucose(110, days=2)))
    assert finding(a, "hypoglycemia").data["value"] == 62


def test_hypoglycemia_diagnosis(run):
    c = F.condition(F.ICD10, "E11.649", "Type 2 diabetes mellitus with hypoglycemia without coma")
    assert {"hypoglycemia", "diabetes"} <= causes(run(rls_patient(c)))


# --- weak associations: amyloidosis, Lyme, spinal, RA, Sjogren ----------------------------------


@pytest.mark.parametrize(
    ("cause", "system", "code", "display"),
    [
        ("amyloidosis", F.ICD10, "E85.81", "Light chain (AL) amyloidosis"),
        ("lyme_disease", F.ICD10, "A69.20", "Lyme disease, unspecified"),
        ("lyme_disease", F.SCT, "23502006", "Lyme disease"),
        ("spinal_nerve_damage", F.ICD10, "M54.16", "Radiculopathy, lumbar region"),
        ("spinal_nerve_damage", F.ICD10, "M96.1", "Postlaminectomy syndrome, not elsewhere classified"),
        ("spinal_nerve_damage", F.SCT, "90584004", "Spinal cord injury"),
        ("rheumatoid_arthritis", F.ICD10, "M06.9", "Rheumatoid arthritis, unspecified"),
        (
            "rheumatoid_arthritis",
            F.ICD10,
            "M05.79",
            "Rheumatoid arthritis with rheumatoid factor of multiple sites",
        ),
        ("sjogren_syndrome", F.ICD10, "M35.00", "Sjogren syndrome, unspecified"),
        ("sjogren_syndrome", F.ICD10, "M35.0A", "Sjogren syndrome with glomerular disease"),
    ],
)
def test_weak_associations_are_info_notes(run, cause, system, code, display):
    f = finding(run(rls_patient(F.condition(system, code, display))), cause)
    assert not f.actionable and f.strength == "weak" and code in f.summary
    cards = run.cards(rls_patient(F.condition(system, code, display)))
    card = next(c for c in cards if c["source"]["topic"]["code"] == cause)
    assert card["indicator"] == "info"


@pytest.mark.parametrize(
    ("cause", "condition"),
    [
        ("rheumatoid_arthritis", F.condition(F.ICD10, "M06.4", "Inflammatory polyarthropathy")),
        ("spinal_nerve_damage", F.condition(F.ICD10, "M54.50", "Low back pain, unspecified")),
        ("lyme_disease", F.condition(F.ICD10, "A69.20", "Lyme disease", verification="entered-in-error")),
        ("amyloidosis", F.condition(F.ICD10, "E85.9", "Amyloidosis", clinical="inactive")),
        ("sjogren_syndrome", F.condition(F.ICD10, "M35.00", "Sjogren syndrome", verification="refuted")),
    ],
)
def test_weak_association_negatives(run, cause, condition):
    assert cause not in causes(run(rls_patient(condition)))


def test_sjogren_with_neuropathy_counts_for_both(run):
    c = F.condition(F.ICD10, "M35.06", "Sjogren syndrome with peripheral nervous system involvement")
    assert {"sjogren_syndrome", "peripheral_neuropathy"} <= causes(run(rls_patient(c)))


def test_condition_without_clinical_status_is_read_as_active_and_flagged(run):
    c = F.condition(F.ICD10, "A69.20", "Lyme disease", clinical=None)
    f = finding(run(rls_patient(c)), "lyme_disease")
    assert "no clinicalStatus" in f.evidence[0].note


# --- lifestyle ----------------------------------------------------------------------------------


def test_nicotine_dependence_code(run):
    f = finding(
        run(rls_patient(F.condition(F.ICD10, "F17.210", "Nicotine dependence, cigarettes"))), "lifestyle"
    )
    assert "Tobacco" in f.summary and f.data["factors"] == ["tobacco"]


def test_smoking_status_observation_current_smoker(run):
    obs = F.coded_observation(
        "72166-2", "Tobacco smoking status", F.SCT, "449868002", "Current every day smoker"
    )
    assert "lifestyle" in causes(run(rls_patient(obs)))


def test_former_smoker_and_history_codes_are_not_current_use(run):
    remission = F.condition(F.ICD10, "F17.211", "Nicotine dependence, cigarettes, in remission")
    history = F.condition(F.ICD10, "Z87.891", "Personal history of nicotine dependence")
    former = F.coded_observation("72166-2", "Tobacco smoking status", F.SCT, "8517006", "Former smoker")
    assert "lifestyle" not in causes(run(rls_patient(remission, history, former)))


def test_newer_former_smoker_status_overrides_older_current(run):
    old = F.coded_observation(
        "72166-2", "Tobacco smoking status", F.SCT, "449868002", "Current every day smoker", days=300
    )
    new = F.coded_observation("72166-2", "Tobacco smoking status", F.SCT, "8517006", "Former smoker", days=10)
    assert "lifestyle" not in causes(run(rls_patient(old, new)))


def test_a_current_smoker_status_older_than_the_window_is_not_current_use(run):
    # The smoking_status look-back (365 days in causes.yaml) was never applied.
    def status(days):
        return F.coded_observation(
            "72166-2", "Tobacco smoking status", F.SCT, "449868002", "Current every day smoker", days=days
        )

    assert "lifestyle" in causes(run(rls_patient(status(300))))
    assert "lifestyle" not in causes(run(rls_patient(status(500))))


def test_a_newer_former_smoker_status_supersedes_an_older_tobacco_diagnosis(run):
    old = F.condition(F.SCT, "449868002", "Current every day smoker", onset_days=1700)
    former = F.coded_observation(
        "72166-2", "Tobacco smoking status", F.SCT, "8517006", "Former smoker", days=30
    )
    assert "lifestyle" not in causes(run(rls_patient(old, former)))
    assert "lifestyle" in causes(run(rls_patient(old)))  # no newer status: the diagnosis stands


def test_only_a_recent_former_or_never_status_supersedes_a_tobacco_diagnosis(run):
    dx = F.condition(F.ICD10, "F17.210", "Nicotine dependence, cigarettes, uncomplicated", onset_days=1100)

    def status(code, display, days):
        return F.coded_observation("72166-2", "Tobacco smoking status", F.SCT, code, display, days=days)

    assert "lifestyle" in causes(run(rls_patient(dx, status("449868002", "Current every day smoker", 700))))
    assert "lifestyle" in causes(run(rls_patient(dx, status("266927001", "Unknown if ever smoked", 30))))
    assert "lifestyle" not in causes(run(rls_patient(dx, status("266919005", "Never smoked tobacco", 30))))


@pytest.mark.parametrize(("gender", "cut_off"), [("female", 3), ("male", 4), ("unknown", 4), (None, 4)])
def test_audit_c_cut_off_is_3_for_women_and_4_otherwise(run, gender, cut_off):
    person = F.patient(gender=gender)
    if gender is None:
        del person["gender"]
    at = F.observation("75626-2", "Total score [AUDIT-C]", cut_off, "{score}")
    below = F.observation("75626-2", "Total score [AUDIT-C]", cut_off - 1, "{score}")
    rest = [F.rls(), F.ferritin(150, days=20), F.tsat(30, days=20)]
    f = finding(run([person, *rest, at]), "lifestyle")
    assert f.data["factors"] == ["alcohol"]
    assert f"AUDIT-C at or above {cut_off}" in f.evidence[0].note
    assert ("cut-off for women" in f.evidence[0].note) == (gender == "female")
    assert "lifestyle" not in causes(run([person, *rest, below]))


def test_alcohol_and_tobacco_in_one_note(run):
    a = run(
        rls_patient(
            F.condition(F.ICD10, "F10.20", "Alcohol dependence"), F.condition(F.ICD10, "Z72.0", "Tobacco use")
        )
    )
    assert finding(a, "lifestyle").data["factors"] == ["alcohol", "tobacco"]


# --- hereditary, stress, surgery (informational) ------------------------------------------------


def test_family_history_is_informational(run):
    f = finding(
        run(
            rls_patient(
                F.condition(
                    F.ICD10, "Z82.0", "Family history of epilepsy and other diseases of the nervous system"
                )
            )
        ),
        "hereditary",
    )
    assert f.strength == "informational" and not f.actionable


def test_stress_codes(run):
    assert "stress" in causes(run(rls_patient(F.condition(F.SCT, "73595000", "Stress"))))
    assert "stress" not in causes(
        run(rls_patient(F.condition(F.ICD10, "Z73.3", "Stress", clinical="resolved")))
    )


def _procedure(days: int, status: str = "completed") -> dict:
    return {
        "resourceType": "Procedure",
        "id": f"proc-{days}-{status}",
        "status": status,
        "category": {"coding": [{"system": F.SCT, "code": "387713003", "display": "Surgical procedure"}]},
        "code": {"coding": [{"system": F.SCT, "code": "80146002", "display": "Appendectomy"}]},
        "subject": {"reference": "Patient/p1"},
        "performedDateTime": F.at(days),
    }


def test_surgery_from_recent_completed_surgical_procedures(run, terminology):
    assert terminology.causes["surgery"].lookback_days["procedure"] == 90
    f = finding(run(rls_patient(_procedure(20))), "surgery")
    assert "Appendectomy" in f.summary and f.strength == "informational" and not f.actionable
    # Outside the 90-day window, at its edge, and not done.
    assert "surgery" not in causes(run(rls_patient(_procedure(200))))
    assert "surgery" not in causes(run(rls_patient(_procedure(91))))
    assert "surgery" not in causes(run(rls_patient(_procedure(20, "not-done"))))


def test_family_history_negatives_and_prescribing_silence(run):
    refuted = F.condition(
        F.ICD10, "Z82.0", "Family history of nervous system disease", verification="refuted"
    )
    cancer = F.condition(F.ICD10, "Z80.0", "Family history of malignant neoplasm of digestive organs")
    assert "hereditary" not in causes(run(rls_patient(refuted, cancer)))
    fam = F.condition(F.ICD10, "Z82.0", "Family history of nervous system disease")
    assert "hereditary" in causes(run(rls_patient(fam)))
    # Informational: shown on patient-view as info, never at prescribing.
    drafts = [F.draft("310430", "gabapentin 100 MG Oral Capsule", rid="g")]
    assert "hereditary" not in [
        c["source"]["topic"]["code"] for c in run.cards(rls_patient(fam), "order-sign", drafts)
    ]


def test_acute_stress_reaction_icd_code_is_stress(run):
    f = finding(run(rls_patient(F.condition(F.ICD10, "F43.0", "Acute stress reaction"))), "stress")
    assert f.strength == "informational" and "F43.0" in f.summary


def test_provisional_rheumatoid_arthritis_is_not_actionable(run):
    c = F.condition(F.ICD10, "M06.9", "Rheumatoid arthritis, unspecified", verification="provisional")
    f = finding(run(rls_patient(c)), "rheumatoid_arthritis")
    assert not f.actionable and "unconfirmed" in f.summary
