"""Clinical QA vignettes: what a clinician reads on the cards (summary wording, one card per
concern, honesty about data that could not be interpreted). Each test is a defect found by reading
cards of generated patients (benchmarks/generate.py) against rls-clinical.md."""

from __future__ import annotations

from tests.core import fhir as F
from tests.core.conftest import card_causes, finding


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


IDA = ("D50.9", "Iron deficiency anemia, unspecified")


def iron_cards(cards):
    return [c for c in cards if c["source"]["topic"]["code"] in ("iron_deficiency", "iron_studies_missing")]


def test_coded_iron_deficiency_without_labs_is_one_card_that_orders_the_studies(run):
    # RLS + D50.9 on the problem list, no ferritin/TSAT in 12 months: one warning, not two cards
    # that both say "no ferritin or TSAT in 12 months"; that card carries the iron-panel order.
    resources = [F.patient(), F.rls(), F.condition(F.ICD10, *IDA), F.ferritin(40, days=500)]
    cards = iron_cards(run.cards(resources))
    assert len(cards) == 1, [c["summary"] for c in cards]
    card = cards[0]
    assert card["indicator"] == "warning" and "D50.9" in card["summary"]
    orders = [a["resource"] for s in card.get("suggestions", []) for a in s["actions"]]
    assert {r["code"]["coding"][0]["code"] for r in orders} == {"2276-4", "50190-8"}
    assert all(
        r["resourceType"] == "ServiceRequest" and r["subject"]["reference"] == "Patient/p1" for r in orders
    )


def test_unconfirmed_iron_deficiency_still_gets_the_iron_studies_card(run):
    resources = [F.patient(), F.rls(), F.condition(F.ICD10, *IDA, verification="differential")]
    cards = run.cards(resources)
    assert "iron_studies_missing" in card_causes(cards)
    coded = next(c for c in cards if c["source"]["topic"]["code"] == "iron_deficiency")
    assert coded["indicator"] == "info" and "suggestions" not in coded


def test_coded_iron_deficiency_when_labs_could_not_be_read_does_not_claim_there_are_none(run):
    resources = [F.patient(), F.rls(), F.condition(F.ICD10, *IDA)]
    cards = iron_cards(run.cards(resources, missing=frozenset({"Observation"})))
    assert len(cards) == 1
    card = cards[0]
    assert "no ferritin" not in card["summary"].lower(), card["summary"]
    assert "could not be read" in card["summary"], card["summary"]
    assert "suggestions" not in card  # the studies may exist: no order proposed


def test_ferritin_in_an_unrecognised_unit_is_not_called_missing(run):
    # A ferritin 20 days ago whose unit the tables cannot convert (mg/dL): the result exists, so
    # the card must not claim "no ferritin in the last 12 months" nor propose ordering one; it
    # names the value as sent, at info level, and the engine still warns about the unit.
    lab = F.ferritin(3, unit="mg/dL", ucum="mg/dL", days=20, rid="ferr-odd-unit")
    a = run([F.patient(), F.rls(), lab])
    assert any("not recognised" in w for w in a.warnings)
    assert a.fingerprint != run([F.patient(), F.rls()]).fingerprint  # stored outcomes see the change
    cards = iron_cards(run.cards([F.patient(), F.rls(), lab]))
    assert len(cards) == 1
    card = cards[0]
    assert "no ferritin" not in card["summary"].lower(), card["summary"]
    assert "3 mg/dL" in card["summary"] and "unit not recognised" in card["summary"], card["summary"]
    assert card["indicator"] == "info" and "suggestions" not in card
    assert "Observation/ferr-odd-unit" in card["detail"]


def test_old_ferritin_in_an_unrecognised_unit_does_not_count_as_recent(run):
    lab = F.ferritin(3, unit="mg/dL", ucum="mg/dL", days=500)
    cards = run.cards([F.patient(), F.rls(), lab])
    card = next(c for c in cards if c["source"]["topic"]["code"] == "iron_studies_missing")
    assert card["indicator"] == "warning" and card["suggestions"]


def test_low_tsat_with_high_ferritin_does_not_suggest_the_ferritin_meets_the_threshold(run):
    # TSAT 13 % qualifies on its own (AASM 2024); ferritin 215 ng/mL does not. The reasoning must
    # not add "lab-normal ferritin values can still meet this RLS threshold" to this card.
    draw = F.at(90)
    f = finding(
        run(
            [
                F.patient(),
                F.rls(),
                F.ferritin(215, loinc="20567-4", effective=draw),
                F.tsat(13, effective=draw),
            ]
        ),
        "iron_deficiency",
    )
    assert f.actionable and f.summary.startswith("TSAT 13 %")
    assert "TSAT 13 % < 20" in f.reasoning
    assert "lab-normal ferritin" not in f.reasoning.lower(), f.reasoning


def test_lab_normal_ferritin_still_explains_the_rls_threshold(run):
    f = finding(run([F.patient(), F.rls(), F.ferritin(48), F.tsat(28)]), "iron_deficiency")
    assert "lab-normal ferritin" in f.reasoning.lower()


def test_weak_drug_classes_do_not_lean_on_the_aasm_exacerbating_factors(run):
    # Famotidine (H2 blocker) and metoprolol (beta-blocker) are weak, case-report associations
    # (rls-clinical.md §2.7, §6). Citing AASM 2024's "antihistaminergic" exacerbating factors on an
    # H2-blocker card over-claims the evidence; the moderate classes keep that citation.
    famotidine = F.med_request("199047", "famotidine 10 MG Oral Tablet")
    metoprolol = F.med_request("866427", "24 HR metoprolol succinate 25 MG Extended Release Oral Tablet")
    sertraline = F.med_request("312941", "sertraline 50 MG Oral Tablet")
    a = run(rls_patient(famotidine, metoprolol, sertraline))
    by_drug = {f.data["ingredients"][0]: f for f in a.findings if f.cause == "drug_induced"}
    for weak in ("famotidine", "metoprolol"):
        f = by_drug[weak]
        assert f.strength == "weak" and not f.actionable
        assert "AASM" not in f.reasoning and "case reports" in f.reasoning, f.reasoning
    assert "AASM 2024 names antihistaminergic, serotonergic" in by_drug["sertraline"].reasoning


def test_third_trimester_summary_says_rls_usually_resolves_not_that_it_ends(run):
    # Manconi 2004 / seed: RLS in pregnancy *usually* resolves within about 4 weeks of delivery
    # (rls-clinical.md §2.6, §7); the summary must not promise that it ends.
    z3a = F.condition(F.ICD10, "Z3A.32", "32 weeks gestation of pregnancy", onset_days=3)
    f = finding(run(rls_patient(z3a)), "pregnancy")
    assert "32 weeks" in f.summary and "usually resolves after delivery" in f.summary, f.summary


def test_egfr_reported_as_greater_than_59_is_not_reduced(run):
    # LabCorp-style eGFR result ">59 mL/min/1.73" (valueQuantity 59 with comparator ">"): a normal
    # result, not CKD G3a, and no renal-dose warning on a gabapentin draft.
    gt59 = [F.egfr(59, days=250, comparator=">"), F.egfr(59, days=20, comparator=">")]
    a = run(rls_patient(*gt59))
    assert "kidney_disease" not in {f.cause for f in a.findings}, [f.summary for f in a.findings]
    cards = run.cards(
        rls_patient(*gt59), hook="order-sign", drafts=[F.draft("310431", "gabapentin 300 MG Oral Capsule")]
    )
    assert "kidney_disease" not in card_causes(cards)


def test_egfr_reported_as_less_than_15_still_counts(run):
    f = finding(
        run(rls_patient(F.egfr(15, days=200, comparator="<"), F.egfr(15, days=20, comparator="<"))),
        "kidney_disease",
    )
    assert f.data["kind"] == "ckd3plus" and "eGFR <15 " in f.summary and "CKD G5" in f.summary, f.summary


def test_renal_dose_reminder_fires_when_a_gabapentinoid_is_ordered_not_on_every_other_order(run):
    # Dialysis patient on pregabalin for a year (active order). Selecting sertraline must not
    # re-raise "Pregabalin with ESRD/dialysis: check the renal dose" (nothing about pregabalin is
    # being decided; patient-view shows it). Ordering gabapentin does raise it (rls-clinical.md §2.2).
    esrd = F.condition(F.ICD10, "Z99.2", "Dependence on renal dialysis")
    pregabalin = F.med_request("483448", "pregabalin 50 MG Oral Capsule", authored_days=365)
    record = rls_patient(esrd, pregabalin)
    sertraline = F.draft("312941", "sertraline 50 MG Oral Tablet")
    assert "kidney_disease" not in card_causes(run.cards(record, hook="order-select", drafts=[sertraline]))
    pv = run.cards(record)
    renal = next(c for c in pv if c["source"]["topic"]["code"] == "kidney_disease")
    assert renal["indicator"] == "warning" and "Pregabalin" in renal["summary"]
    gabapentin = F.draft("310431", "gabapentin 300 MG Oral Capsule")
    signed = run.cards(record, hook="order-sign", drafts=[gabapentin])
    renal = next(c for c in signed if c["source"]["topic"]["code"] == "kidney_disease")
    assert renal["indicator"] == "warning" and "abapentin" in renal["summary"]


def test_single_low_egfr_card_is_not_headed_chronic_kidney_disease(run):
    # One eGFR of 48: "Reduced eGFR ...: not CKD unless it persists 3 months" (KDIGO). A card headed
    # "Chronic kidney disease" contradicts its own summary.
    cards = run.cards(rls_patient(F.egfr(48, days=10)))
    card = next(c for c in cards if c["source"]["topic"]["code"] == "kidney_disease")
    assert card["summary"].startswith("Reduced eGFR 48")
    assert "Chronic kidney disease" not in card["detail"].split("\n")[0], card["detail"].split("\n")[0]
    assert card["source"]["topic"]["display"] == "Kidney disease"


def test_postpartum_card_is_not_headed_third_trimester(run):
    pp = F.condition(F.ICD10, "Z39.2", "Encounter for routine postpartum follow-up", onset_days=14)
    card = next(c for c in run.cards(rls_patient(pp)) if c["source"]["topic"]["code"] == "pregnancy")
    assert card["summary"].startswith("Postpartum")
    assert "third trimester" not in card["detail"].split("\n")[0], card["detail"].split("\n")[0]


def test_postpartum_note_uses_the_strength_in_the_cause_table(run):
    # causes.yaml grades the postpartum qualifier 'informational' (rls-clinical.md §6 lists only the
    # third trimester, as strong); the card said 'strength of evidence: moderate'.
    pp = F.condition(F.ICD10, "Z39.2", "Encounter for routine postpartum follow-up", onset_days=14)
    f = finding(run(rls_patient(pp)), "pregnancy")
    assert f.strength == run.t.causes["pregnancy"].strength_for("postpartum") == "informational"


def test_long_combination_product_name_does_not_crowd_the_claim_out_of_the_summary(run):
    # Synthea's night-time cold syrup (RxNorm 1043400): the summary was clipped to "Active doxylamine
    # (in Acetaminophen 21.7 MG/ML / ... Oral Solution)…", losing "may aggravate RLS" and the
    # alternative. The product name belongs in the evidence when it does not fit.
    syrup = F.med_request(
        "1043400",
        "Acetaminophen 21.7 MG/ML / Dextromethorphan Hydrobromide 1 MG/ML / doxylamine succinate "
        "0.417 MG/ML Oral Solution",
        rid="cold-syrup",
    )
    f = finding(run(rls_patient(syrup)), "drug_induced")
    assert f.summary.startswith("Active doxylamine") and len(f.summary) < 140
    # Doxylamine (sleep aids, Diclegis) names no substitute (terminology/medications.csv): the claim ends it.
    assert f.summary.endswith("may aggravate RLS"), f.summary
    assert (
        f.evidence[0].resource == "MedicationRequest/cold-syrup" and "Oral Solution" in f.evidence[0].display
    )


def test_another_patients_resources_are_not_read_when_the_patient_is_known(run):
    from rls_cds.core.engine import evaluate

    record = [F.patient(), F.rls(), F.tsat(30), F.ferritin(20, pid="someone-else", rid="fer-other")]
    mixed = evaluate(record, now=F.NOW, terminology=run.t, patient=F.PID)
    assert "iron_deficiency" not in {f.cause for f in mixed.findings}
    assert any("fer-other" in w and "another patient" in w for w in mixed.warnings)
    # The patient as an absolute reference or 'Patient/<id>' names the same patient.
    for form in (f"https://ehr.example/fhir/Patient/{F.PID}", f"Patient/{F.PID}", f" {F.PID} "):
        same = evaluate(record[:3], now=F.NOW, terminology=run.t, patient=form)
        assert same.has_rls and not any("another patient" in w for w in same.warnings), form
    # Any other form is compared as it is: another patient's ferritin is never read as this patient's.
    odd = evaluate(record, now=F.NOW, terminology=run.t, patient="urn:uuid:abc")
    assert not any(f.cause == "iron_deficiency" for f in odd.findings)
    # Without the patient (a caller that grouped the record itself) the resource is read as before.
    alone = evaluate(record, now=F.NOW, terminology=run.t)
    assert finding(alone, "iron_deficiency").evidence[0].resource == "Observation/fer-other"
