"""Vignettes: kidney disease, neuropathy, diabetes, Parkinson's, pregnancy (rls-clinical.md §2.2-2.6)."""

from __future__ import annotations

import pytest

from tests.core import fhir as F
from tests.core.conftest import card_causes, causes, finding


def rls_patient(*extra):
    return [F.patient(), F.rls(), F.ferritin(150, days=20), F.tsat(30, days=20), *extra]


# --- kidney_disease -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "code", "display"),
    [
        (F.ICD10, "N18.6", "End stage renal disease"),
        (F.ICD10, "Z99.2", "Dependence on renal dialysis"),
        (F.SCT, "46177005", "End-stage renal disease"),
        (F.SCT, "236435004", "End stage renal failure on dialysis"),
    ],
)
def test_esrd_and_dialysis_are_strong(run, system, code, display):
    f = finding(run(rls_patient(F.condition(system, code, display))), "kidney_disease")
    assert f.strength == "strong" and f.data["kind"] == "esrd" and code in f.summary


@pytest.mark.parametrize("code", ["N18.30", "N18.32", "N18.4", "N18.5", "N18.3"])
def test_ckd_stage_3_to_5_is_moderate(run, code):
    f = finding(run(rls_patient(F.condition(F.ICD10, code, "Chronic kidney disease"))), "kidney_disease")
    assert f.strength == "moderate" and f.data["kind"] == "ckd3plus"


def test_persisting_low_egfr_over_90_days_is_ckd(run):
    a = run(rls_patient(F.egfr(52, days=130), F.egfr(44, days=10, unit="mL/min/1.73m2", loinc="33914-3")))
    f = finding(a, "kidney_disease")
    assert f.data["kind"] == "ckd3plus" and "G3b" in f.summary and "44" in f.summary


@pytest.mark.parametrize("code", ["N18.1", "N18.2"])
def test_ckd_stage_1_and_2_do_not_count(run, code):
    assert "kidney_disease" not in causes(run(rls_patient(F.condition(F.ICD10, code, "CKD early stage"))))


def test_normal_egfr_is_silent(run):
    assert "kidney_disease" not in causes(run(rls_patient(F.egfr(88), F.egfr(91, days=200))))


def test_single_low_egfr_is_reduced_egfr_not_ckd(run):
    f = finding(run(rls_patient(F.egfr(52, days=5))), "kidney_disease")
    assert f.data["kind"] == "reduced_egfr" and f.strength == "weak" and not f.actionable
    assert "not CKD" in f.summary


def test_two_low_egfr_only_60_days_apart_are_not_yet_ckd(run):
    f = finding(run(rls_patient(F.egfr(50, days=70), F.egfr(48, days=10))), "kidney_disease")
    assert f.data["kind"] == "reduced_egfr"


def test_a_normal_value_between_two_lows_breaks_persistence(run):
    f = finding(
        run(rls_patient(F.egfr(50, days=200), F.egfr(75, days=100), F.egfr(52, days=5))), "kidney_disease"
    )
    assert f.data["kind"] == "reduced_egfr"


def test_egfr_exactly_60_is_not_reduced(run):
    assert "kidney_disease" not in causes(run(rls_patient(F.egfr(60, days=5), F.egfr(60, days=200))))


def test_gabapentin_draft_with_ckd_asks_for_a_renal_dose_check(run):
    gaba = F.draft("310430", "gabapentin 100 MG Oral Capsule", rid="g1")
    ckd = F.condition(F.ICD10, "N18.4", "Chronic kidney disease, stage 4 (severe)")
    cards = run.cards(rls_patient(ckd), hook="order-sign", drafts=[gaba])
    assert card_causes(cards) == ["kidney_disease"]
    assert cards[0]["indicator"] == "warning" and "renal dose" in cards[0]["summary"].lower()
    # The header's strength is the kidney-RLS link's; the card says the dose check does not depend on it.
    assert "product-label requirement and does not depend on that strength" in cards[0]["detail"]
    # Without the draft, kidney disease is a note and prescribing hooks stay quiet.
    assert run.cards(rls_patient(ckd), hook="order-sign") == []


def test_provisional_ckd_is_weak(run):
    ckd = F.condition(F.ICD10, "N18.4", "Chronic kidney disease", verification="provisional")
    f = finding(run(rls_patient(ckd)), "kidney_disease")
    assert f.strength == "weak" and "not confirmed" in f.evidence[0].note


# --- peripheral_neuropathy ----------------------------------------------------------------------


def test_polyneuropathy_is_a_moderate_note(run):
    f = finding(
        run(rls_patient(F.condition(F.ICD10, "G62.9", "Polyneuropathy, unspecified"))),
        "peripheral_neuropathy",
    )
    assert f.strength == "moderate" and not f.actionable and "G62.9" in f.summary


def test_diabetic_polyneuropathy_yields_neuropathy_and_diabetes(run):
    a = run(rls_patient(F.condition(F.SCT, "368581000119106", "Neuropathy due to type 2 diabetes mellitus")))
    assert {"peripheral_neuropathy", "diabetes"} <= causes(a)


def test_resolved_neuropathy_is_silent(run):
    c = F.condition(F.ICD10, "G62.9", "Polyneuropathy", clinical="resolved")
    assert "peripheral_neuropathy" not in causes(run(rls_patient(c)))


def test_differential_neuropathy_is_weaker_and_says_so(run):
    c = F.condition(F.ICD10, "G60.9", "Hereditary and idiopathic neuropathy", verification="differential")
    f = finding(run(rls_patient(c)), "peripheral_neuropathy")
    assert f.strength == "weak" and "unconfirmed" in f.summary


def test_amyloid_neuropathy_also_counts_as_neuropathy(run):
    a = run(rls_patient(F.condition(F.ICD10, "E85.1", "Neuropathic heredofamilial amyloidosis")))
    assert {"amyloidosis", "peripheral_neuropathy"} <= causes(a)


# --- diabetes -----------------------------------------------------------------------------------


def test_type_2_diabetes_code_family(run):
    f = finding(
        run(rls_patient(F.condition(F.ICD10, "E11.65", "Type 2 diabetes mellitus with hyperglycemia"))),
        "diabetes",
    )
    assert "E11.65" in f.summary


def test_hba1c_at_6_5_is_diabetes_range(run):
    hba1c = F.observation("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", 6.5, "%", days=40)
    f = finding(run(rls_patient(hba1c)), "diabetes")
    assert f.data["hba1c"] == 6.5 and "6.5" in f.summary


def test_hba1c_in_ifcc_units_is_converted(run):
    high = F.observation("4548-4", "HbA1c", 53, "mmol/mol", days=40)  # ~7.0 %
    low = F.observation("4548-4", "HbA1c", 42, "mmol/mol", days=40)  # ~6.0 %
    assert finding(run(rls_patient(high)), "diabetes").data["hba1c"] == pytest.approx(7.0, abs=0.05)
    assert "diabetes" not in causes(run(rls_patient(low)))


@pytest.mark.parametrize(
    ("system", "code", "display"),
    [
        (F.ICD10, "R73.03", "Prediabetes"),
        (F.ICD10, "O24.410", "Gestational diabetes mellitus in pregnancy, diet controlled"),
    ],
)
def test_prediabetes_and_gestational_diabetes_are_not_diabetes(run, system, code, display):
    assert "diabetes" not in causes(run(rls_patient(F.condition(system, code, display))))


def test_prediabetic_hba1c_and_stale_high_hba1c_are_silent(run):
    pre = F.observation("4548-4", "HbA1c", 6.1, "%", days=40)
    stale = F.observation("4548-4", "HbA1c", 8.0, "%", days=500)
    assert "diabetes" not in causes(run(rls_patient(pre, stale)))


# --- parkinsons ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "code"), [(F.ICD10, "G20.A1"), (F.ICD10, "G20"), (F.ICD10, "G20.C"), (F.SCT, "49049000")]
)
def test_parkinsons_new_and_legacy_codes(run, system, code):
    assert "parkinsons" in causes(run(rls_patient(F.condition(system, code, "Parkinson's disease"))))


def test_drug_induced_parkinsonism_is_not_parkinsons(run):
    c = F.condition(F.ICD10, "G21.11", "Neuroleptic induced parkinsonism")
    assert "parkinsons" not in causes(run(rls_patient(c)))


def test_levodopa_for_parkinsons_is_not_an_aggravator(run):
    pd = F.condition(F.ICD10, "G20.A1", "Parkinson's disease")
    levodopa = F.med_request("197444", "carbidopa 25 MG / levodopa 100 MG Oral Tablet")
    a = run(rls_patient(pd, levodopa))
    assert "parkinsons" in causes(a) and "drug_induced" not in causes(a)


# --- pregnancy ----------------------------------------------------------------------------------


def test_weeks_of_gestation_code_recomputed_to_today(run):
    z3a = F.condition(F.ICD10, "Z3A.32", "32 weeks gestation of pregnancy", onset_days=14)
    f = finding(run(rls_patient(z3a)), "pregnancy")
    assert f.strength == "strong" and f.data["gestational_weeks"] == pytest.approx(34, abs=0.1)


def test_a_ferritin_of_this_pregnancy_that_cannot_be_read_is_not_asked_for_again(run):
    z3a = F.condition(F.ICD10, "Z3A.30", "30 weeks gestation of pregnancy", onset_days=7)
    worded = F.ferritin(30, days=5)
    del worded["valueQuantity"]
    worded["valueString"] = "see comment"
    f = finding(run([F.patient(), F.rls(), z3a, worded, F.tsat(30, days=5)]), "pregnancy")
    assert not f.actionable and "none measured" not in f.action


def test_gestational_age_observation_crossing_28_weeks_since_measured(run):
    ga = F.observation("11884-4", "Gestational age Estimated", 26, "wk", days=14)
    f = finding(run(rls_patient(ga)), "pregnancy")
    assert f.data["gestational_weeks"] == pytest.approx(28, abs=0.01) and f.strength == "strong"


def test_gestational_age_in_days(run):
    ga = F.observation("49052-4", "Gestational age in days", 200, "d", days=0)
    f = finding(run(rls_patient(ga)), "pregnancy")
    assert f.data["gestational_weeks"] == pytest.approx(28.6, abs=0.1)


def test_third_trimester_without_ferritin_in_pregnancy_is_actionable(run):
    z3a = F.condition(F.ICD10, "Z3A.30", "30 weeks gestation of pregnancy", onset_days=7)
    # Ferritin 250 days ago: inside 12 months (no iron-studies card) but before this pregnancy began.
    before = [F.patient(), F.rls(), z3a, F.ferritin(60, days=250), F.tsat(25, days=250)]
    f = finding(run(before), "pregnancy")
    assert f.actionable and "check ferritin" in f.action.lower()
    assert not finding(run(rls_patient(z3a)), "pregnancy").actionable  # ferritin 20 days ago
    # No ferritin at all: the iron-studies card asks for it; the pregnancy card does not ask twice.
    a = run([F.patient(), F.rls(), z3a])
    assert "iron_studies_missing" in causes(a) and not finding(a, "pregnancy").actionable


def test_second_trimester_is_a_moderate_note(run):
    ga = F.observation("11884-4", "Gestational age Estimated", 20, "wk", days=0)
    f = finding(run(rls_patient(ga)), "pregnancy")
    assert f.strength == "moderate" and not f.actionable


def test_pregnancy_long_past_is_over(run):
    z3a = F.condition(F.ICD10, "Z3A.32", "32 weeks gestation of pregnancy", onset_days=20 * 7)
    normal = F.condition(F.SCT, "72892002", "Normal pregnancy", onset_days=400)
    assert "pregnancy" not in causes(run(rls_patient(z3a, normal)))


def test_delivery_ends_the_episode(run):
    z3a = F.condition(F.ICD10, "Z3A.38", "38 weeks gestation of pregnancy", onset_days=30)
    post = F.condition(F.ICD10, "Z39.2", "Encounter for routine postpartum follow-up", onset_days=10)
    f = finding(run(rls_patient(z3a, post)), "pregnancy")
    assert "Postpartum" in f.summary and not f.actionable


def test_postpartum_beyond_4_weeks_is_not_pregnancy_related(run):
    post = F.condition(F.SCT, "86569001", "Postpartum state", onset_days=60)
    assert "pregnancy" not in causes(run(rls_patient(post)))


def test_rls_in_pregnancy_code_is_both_rls_and_pregnancy(run):
    both = F.condition(F.SCT, "1052284009", "Restless leg syndrome in pregnancy", onset_days=30)
    a = run([F.patient(), both, F.ferritin(150)])
    assert a.has_rls and "pregnancy" in causes(a)


def test_positive_qualitative_hcg(run):
    hcg = F.coded_observation(
        "2106-3",
        "Choriogonadotropin (pregnancy test) [Presence] in Urine",
        F.SCT,
        "10828004",
        "Positive",
        days=20,
    )
    assert "pregnancy" in causes(run(rls_patient(hcg)))
    neg = F.coded_observation(
        "2106-3",
        "Choriogonadotropin (pregnancy test) [Presence] in Urine",
        F.SCT,
        "260385009",
        "Negative",
        days=20,
    )
    assert "pregnancy" not in causes(run(rls_patient(neg)))


def test_a_pregnancy_dated_long_ago_is_at_least_that_far_along(run):
    # Pregnant on a date with the week unknown: at least the weeks since then today. A positive test 200
    # days ago said "trimester unknown", with no third-trimester card and no ferritin check.
    def hcg(days):
        return F.coded_observation(
            "2106-3",
            "Choriogonadotropin (pregnancy test) [Presence] in Urine",
            F.SCT,
            "10828004",
            "Positive",
            days=days,
        )

    f = finding(run(rls_patient(hcg(200))), "pregnancy")
    assert "at least 28 weeks if ongoing (3rd trimester)" in f.summary
    assert f.data["weeks_at_least"] >= 28 and f.data["gestational_weeks"] is None
    # A single dated record may belong to a pregnancy that ended unrecorded: inform, ask to confirm.
    assert not f.actionable and f.strength == "moderate" and "confirm the pregnancy is ongoing" in f.reasoning
    onset = F.condition(F.SCT, "72892002", "Normal pregnancy", onset_days=230)
    assert "at least 32 weeks" in finding(run(rls_patient(onset)), "pregnancy").summary
    # A known gestational age wins over an older bound (that test may be from an earlier pregnancy).
    ga = F.observation("11884-4", "Gestational age Estimated", 20, "wk", days=5)
    f = finding(run(rls_patient(hcg(250), ga)), "pregnancy")
    assert "~20 weeks" in f.summary and f.data["gestational_weeks"] == pytest.approx(20.7, abs=0.1)
    # Recent: nothing to bound yet.
    assert "trimester unknown" in finding(run(rls_patient(hcg(20))), "pregnancy").summary
    # More than 42 weeks since a positive test: that pregnancy is over.
    assert "pregnancy" not in causes(
        run(rls_patient(F.condition(F.SCT, "72892002", "Normal pregnancy", onset_days=297)))
    )


def test_postpartum_follow_up_visit_is_not_taken_for_the_delivery_and_a_recent_ferritin_counts(run):
    visit = F.condition(F.ICD10, "Z39.2", "Encounter for routine postpartum follow-up", onset_days=5)
    no_recent_ferritin = [F.patient(), F.rls(), F.ferritin(150, days=200), visit]
    f = finding(run(no_recent_ferritin), "pregnancy")
    assert "follow-up visit" in f.summary and "delivery before it" in f.summary
    assert "check ferritin" in f.action
    f = finding(run(rls_patient(visit)), "pregnancy")  # ferritin 20 days ago
    assert "check ferritin" not in f.action
    state = F.condition(F.SCT, "86569001", "Postpartum state", onset_days=5)
    assert "follow-up visit" not in finding(run(rls_patient(state)), "pregnancy").summary


def test_post_term_codes_stay_current_for_a_week_and_undated_records_end_at_a_delivery(run):
    z3a42 = F.condition(F.ICD10, "Z3A.42", "42 weeks gestation of pregnancy", onset_days=3)
    assert "pregnancy" in causes(run(rls_patient(z3a42)))  # was dropped at once as past term
    old42 = F.condition(F.ICD10, "Z3A.42", "42 weeks gestation of pregnancy", onset_days=20)
    assert "pregnancy" not in causes(run(rls_patient(old42)))
    undated = F.condition(F.SCT, "72892002", "Normal pregnancy", onset_days=None)
    visit = F.condition(F.ICD10, "Z39.2", "Encounter for routine postpartum follow-up", onset_days=5)
    f = finding(run(rls_patient(undated, visit)), "pregnancy")
    assert "Postpartum" in f.summary  # not "Pregnancy documented"


def test_renal_dose_card_names_each_order_its_own_drug_and_horizant_on_dialysis(run):
    dialysis = F.condition(F.ICD10, "Z99.2", "Dependence on renal dialysis")
    pregabalin = F.med_request(None, "pregabalin 75 MG Oral Capsule", rid="pgb")
    horizant = F.draft(None, "gabapentin enacarbil 600 MG Extended Release Oral Tablet [Horizant]", rid="ge")
    cards = run.cards(rls_patient(dialysis, pregabalin), hook="order-sign", drafts=[horizant])
    card = next(c for c in cards if c["source"]["topic"]["code"] == "kidney_disease")
    detail = card["detail"]
    assert "gabapentin enacarbil and pregabalin are renally cleared" in detail  # was "... is"
    assert "not recommended on haemodialysis" in detail
    assert "two gabapentinoids; check this is intended" in detail
    # Each order's evidence line names its own drug (both were listed under each order).
    lines = [line for line in detail.splitlines() if "MedicationRequest/" in line]
    assert any("`MedicationRequest/pgb`" in x and "**pregabalin**" in x for x in lines), lines
    assert not any("`MedicationRequest/pgb`" in x and "enacarbil**" in x for x in lines), lines
