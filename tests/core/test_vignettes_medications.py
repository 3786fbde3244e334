"""Vignettes: drug_induced and drug_withdrawal (rls-clinical.md §1, §2.7, §2.8, §5 items 1, 2, 4)."""

from __future__ import annotations

import pytest

from tests.core import fhir as F
from tests.core.conftest import card_causes, causes, finding

SERTRALINE_SCD = ("312941", "sertraline 50 MG Oral Tablet")


def rls_patient(*extra):
    return [F.patient(), F.rls(), F.ferritin(150), F.tsat(30), *extra]


# --- drug_induced: positive ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rxcui", "display", "ingredient"),
    [
        ("312941", "sertraline 50 MG Oral Tablet", "sertraline"),  # SCD
        ("208161", "sertraline 50 MG Oral Tablet [Zoloft]", "sertraline"),  # SBD
        ("197890", "lithium carbonate 300 MG Oral Tablet", "lithium carbonate"),  # not lithium 6448
        ("311668", "metoclopramide 5 MG Oral Tablet", "metoclopramide"),
        ("995218", "hydroxyzine hydrochloride 10 MG Oral Tablet", "hydroxyzine"),
        ("312744", "quetiapine 25 MG Oral Tablet", "quetiapine"),
    ],
)
def test_product_level_codes_are_mapped_to_their_ingredient(run, rxcui, display, ingredient):
    f = finding(run(rls_patient(F.med_request(rxcui, display))), "drug_induced")
    assert ingredient in f.summary.lower()
    assert f.evidence[0].certainty == "code" and f.evidence[0].code == rxcui


def test_active_ssri_on_patient_view_names_bupropion(run):
    cards = run.cards(rls_patient(F.med_request(*SERTRALINE_SCD)))
    card = next(c for c in cards if c["source"]["topic"]["code"] == "drug_induced")
    assert card["indicator"] == "warning"
    assert "sertraline" in card["summary"].lower() and "bupropion" in card["summary"].lower()
    assert "may aggravate" in card["summary"]


def test_draft_ssri_at_order_sign_offers_deleting_the_draft(run):
    draft = F.draft(*SERTRALINE_SCD, rid="draft-1")
    cards = run.cards(rls_patient(), hook="order-sign", drafts=[draft])
    card = next(c for c in cards if c["source"]["topic"]["code"] == "drug_induced")
    action = card["suggestions"][0]["actions"][0]
    assert action == {
        "type": "delete",
        "description": "Remove the draft sertraline order",
        "resourceId": ["MedicationRequest/draft-1"],
    }
    assert "bupropion" in card["suggestions"][0]["label"]
    assert card["overrideReasons"] and card["selectionBehavior"] == "at-most-one"


def _drug_card(cards):
    return next(c for c in cards if c["source"]["topic"]["code"] == "drug_induced")


def _is_drug(card) -> bool:
    return card["source"]["topic"]["code"] == "drug_induced"


def test_draft_renewing_an_active_drug_offers_no_delete_and_says_do_not_stop_abruptly(run):
    active = F.med_request(*SERTRALINE_SCD)
    renewal = F.draft(*SERTRALINE_SCD, rid="draft-renew")
    cards = run.cards(rls_patient(active), hook="order-sign", drafts=[renewal])
    card = _drug_card(cards)
    assert "suggestions" not in card  # deleting a renewal is an abrupt stop of current therapy
    assert "continues that therapy" in card["detail"] and "abruptly" in card["detail"]
    assert "bupropion" in card["summary"]  # the substitute is still named, to plan a switch


@pytest.mark.parametrize(
    ("rxcui", "display"),
    [
        ("866924", "metoprolol tartrate 25 MG Oral Tablet"),  # beta-blocker: never stop abruptly
        ("197890", "lithium carbonate 300 MG Oral Tablet"),  # no simple swap
        ("310671", "haloperidol 1 MG Oral Tablet"),  # typical antipsychotic: review with prescriber
    ],
)
def test_no_delete_suggestion_where_the_reference_names_no_substitute(run, rxcui, display):
    cards = run.cards(rls_patient(), hook="order-sign", drafts=[F.draft(rxcui, display, rid="d1")])
    card = _drug_card(cards)
    assert "suggestions" not in card and "consider" not in card["summary"]
    assert "no simple substitute" in card["detail"]


@pytest.mark.parametrize(
    ("rxcui", "display"),
    [
        ("995624", "meclizine hydrochloride 12.5 MG Oral Tablet"),  # vertigo
        ("198602", "dimenhydrinate 25 MG Oral Tablet"),  # motion sickness
        ("1101446", "doxylamine succinate 25 MG Oral Tablet"),  # sleep aid
        ("966787", "doxepin 3 MG Oral Tablet"),  # hypnotic dose: bupropion is no substitute
    ],
)
def test_class_substitute_is_not_offered_where_it_does_not_treat_the_indication(run, rxcui, display):
    drafts = [F.draft(rxcui, display, rid="d1")]
    card = _drug_card(run.cards(rls_patient(), hook="order-sign", drafts=drafts))
    assert "consider" not in card["summary"] and "suggestions" not in card
    f = finding(run(rls_patient(), drafts=drafts), "drug_induced")
    assert f.data["alternative"] is None
    assert not any(word in f.action for word in ("loratadine", "non-sedating", "bupropion"))


def test_allergy_antihistamine_still_names_the_non_sedating_substitute(run):
    draft = F.draft("995218", "hydroxyzine hydrochloride 10 MG Oral Tablet", rid="d1")
    card = _drug_card(run.cards(rls_patient(), hook="order-sign", drafts=[draft]))
    assert "non-sedating antihistamine" in card["summary"]
    assert card["suggestions"][0]["actions"][0]["type"] == "delete"


def test_provisional_rls_makes_the_drug_card_information_and_says_why(run):
    record = [F.patient(), F.rls(verification="provisional", rid="rls-prov"), F.ferritin(150), F.tsat(30)]
    f = finding(run([*record, F.med_request(*SERTRALINE_SCD)]), "drug_induced")
    assert not f.actionable and "not confirmed" in f.reasoning
    assert f.evidence[-1].resource == "Condition/rls-prov"


def test_provisional_rls_draft_card_offers_no_one_click_removal(run):
    record = [F.patient(), F.rls(verification="provisional"), F.ferritin(150), F.tsat(30)]
    cards = run.cards(record, hook="order-sign", drafts=[F.draft(*SERTRALINE_SCD, rid="d1")])
    card = _drug_card(cards)
    assert card["indicator"] == "info" and "suggestions" not in card


def test_pregnant_patient_drafting_an_antidepressant_gets_no_swap_and_no_removal(run):
    z3a = F.condition(F.ICD10, "Z3A.30", "30 weeks gestation of pregnancy", onset_days=3)
    cards = run.cards(rls_patient(z3a), hook="order-sign", drafts=[F.draft(*SERTRALINE_SCD, rid="d1")])
    card = _drug_card(cards)
    assert "consider" not in card["summary"] and "suggestions" not in card
    assert "obstetric team" in card["detail"]


def test_pregnant_patient_drafting_metoclopramide_gets_no_ondansetron_swap(run):
    # Nausea and vomiting of pregnancy: the antiemetic is the obstetric team's choice (ondansetron, the usual
    # alternative, is itself weighed against first-trimester data).
    z3a = F.condition(F.ICD10, "Z3A.10", "10 weeks gestation of pregnancy", onset_days=3)
    metoclopramide = F.draft("311668", "metoclopramide 5 MG Oral Tablet", rid="d1")
    card = _drug_card(run.cards(rls_patient(z3a), hook="order-sign", drafts=[metoclopramide]))
    assert "ondansetron" not in card["summary"] and "suggestions" not in card
    assert "change of antiemetic with the obstetric team" in card["detail"]
    plain = _drug_card(run.cards(rls_patient(), hook="order-sign", drafts=[metoclopramide]))
    assert "consider ondansetron" in plain["summary"] and plain["suggestions"]


def test_a_titration_drafted_as_two_orders_is_one_card_removing_both(run):
    week1 = F.draft("312940", "sertraline 25 MG Oral Tablet", rid="d1")
    then = F.draft(*SERTRALINE_SCD, rid="d2")
    cards = [c for c in run.cards(rls_patient(), hook="order-sign", drafts=[week1, then]) if _is_drug(c)]
    assert len(cards) == 1 and cards[0]["summary"].startswith("Sertraline orders (2) may aggravate RLS")
    [action] = cards[0]["suggestions"][0]["actions"]
    assert action["resourceId"] == ["MedicationRequest/d1", "MedicationRequest/d2"]
    assert cards[0]["suggestions"][0]["label"].startswith("Remove the sertraline orders")
    # Two different drugs stay two cards, each with its own removal.
    hydroxyzine = F.draft("995218", "hydroxyzine hydrochloride 10 MG Oral Tablet", rid="d3")
    cards = [
        c for c in run.cards(rls_patient(), hook="order-sign", drafts=[then, hydroxyzine]) if _is_drug(c)
    ]
    assert len(cards) == 2


def test_drafts_of_one_drug_are_removed_all_or_not_at_all(run):
    # One of the two sertraline drafts has no id, so no delete action can name it: "Remove the sertraline
    # order" would leave it to be signed. The card still warns; it offers no removal.
    named = F.draft("312940", "sertraline 25 MG Oral Tablet", rid="d1")
    unnamed = F.draft(*SERTRALINE_SCD)
    del unnamed["id"]
    cards = [c for c in run.cards(rls_patient(), hook="order-sign", drafts=[named, unnamed]) if _is_drug(c)]
    assert len(cards) == 1 and cards[0]["summary"].startswith("Sertraline orders (2)")
    assert cards[0]["indicator"] == "warning" and "suggestions" not in cards[0]


def test_a_draft_changing_an_active_order_with_the_same_id_offers_no_removal(run):
    active = F.med_request(*SERTRALINE_SCD, rid="ord-1")
    change = F.draft(*SERTRALINE_SCD, rid="ord-1")  # the EHR's draft of the same order, being changed
    card = _drug_card(run.cards(rls_patient(active), hook="order-sign", drafts=[change]))
    assert "suggestions" not in card and "continues that therapy" in card["detail"]


def test_pregnant_patient_on_an_antidepressant_gets_an_obstetric_caveat(run):
    z3a = F.condition(F.ICD10, "Z3A.32", "32 weeks gestation of pregnancy", onset_days=3)
    f = finding(run(rls_patient(z3a, F.med_request(*SERTRALINE_SCD))), "drug_induced")
    assert "pregnant" in f.reasoning and "obstetric" in f.reasoning
    plain = finding(run(rls_patient(F.med_request(*SERTRALINE_SCD))), "drug_induced")
    assert "obstetric" not in plain.reasoning


def test_multi_ingredient_cold_syrup_is_flagged_for_its_antihistamine(run):
    syrup = F.med_request(
        "1043400",
        "acetaminophen 21.7 MG/ML / dextromethorphan hydrobromide 1 MG/ML / doxylamine succinate 0.417 MG/ML "
        "Oral Solution",
    )
    f = finding(run(rls_patient(syrup)), "drug_induced")
    assert f.data["ingredients"] == ["doxylamine"]


def test_contained_medication_reference(run):
    med = F.medication(
        "m1", [{"system": F.RXNORM, "code": "312941", "display": "sertraline 50 MG Oral Tablet"}]
    )
    order = F.with_reference(F.med_request(None, "sertraline"), med, contained=True)
    f = finding(run(rls_patient(order)), "drug_induced")
    assert f.evidence[0].certainty == "code" and "contained Medication" in f.evidence[0].note


def test_bundled_medication_reference(run):
    med = F.medication(
        "m2", [{"system": F.RXNORM, "code": "349332", "display": "escitalopram 10 MG Oral Tablet"}]
    )
    order = F.with_reference(F.med_request(None, "escitalopram"), med, contained=False)
    f = finding(run(rls_patient(order, med)), "drug_induced")
    assert "escitalopram" in f.summary and "bundle Medication" in f.evidence[0].note


def test_unknown_product_code_matched_through_medication_ingredients(run):
    # An SCD the tables do not list; the Medication carries the ingredient RxCUI (sertraline 36437).
    med = F.medication(
        "m3",
        [{"system": F.RXNORM, "code": "1000000001", "display": "sertraline 150 MG Oral Capsule"}],
        ingredients=[{"system": F.RXNORM, "code": "36437", "display": "sertraline"}],
    )
    order = F.with_reference(F.med_request(None, "x"), med, contained=True)
    f = finding(run(rls_patient(order)), "drug_induced")
    assert f.evidence[0].certainty == "ingredient"


def test_unknown_product_code_matched_by_display_text_with_lower_certainty(run):
    order = F.med_request("1000000002", "Sertraline HCl 150 MG Oral Capsule")
    f = finding(run(rls_patient(order)), "drug_induced")
    assert f.evidence[0].certainty == "text" and f.data["certainty"] == "text"
    assert "lower certainty" in f.reasoning


def test_ndc_only_tylenol_pm_matched_by_brand_text(run):
    codings = [{"system": F.NDC, "code": "50580-506-02", "display": "Tylenol PM Extra Strength"}]
    order = F.med_request(None, "Tylenol PM Extra Strength caplet", codings=codings)
    f = finding(run(rls_patient(order)), "drug_induced")
    assert "diphenhydramine" in f.data["ingredients"] and f.evidence[0].certainty == "text"
    # A PM product is a sleep aid: a non-sedating antihistamine does not replace it, and the card says so.
    assert "as a sleep aid (the PM products), none" in f.action


def test_hydroxyzine_for_anxiety_is_not_offered_an_allergy_pill(run):
    # Hydroxyzine is mostly an anxiolytic (ATC N05BB01): loratadine replaces it for itch only.
    f = finding(
        run(rls_patient(F.med_request("995218", "hydroxyzine hydrochloride 10 MG Oral Tablet"))),
        "drug_induced",
    )
    assert "for itch or allergy" in f.data["alternative"] and "as an anxiolytic" in f.data["alternative"]
    assert f.summary.endswith("consider a non-sedating antihistamine for itch or allergy")


@pytest.mark.parametrize(
    "order",
    [
        F.med_request("1049630", "diphenhydramine hydrochloride 25 MG Oral Tablet"),  # product code
        F.med_request(None, "diphenhydramine hydrochloride 25 mg tablet"),  # the salt's name only (PIN)
        F.med_request(None, "Benadryl Allergy"),  # brand
    ],
)
def test_diphenhydramine_gets_one_alternative_whatever_form_is_named(run, order):
    f = finding(run(rls_patient(order)), "drug_induced")
    assert f.data["alternative"].startswith("a non-sedating antihistamine for allergy")
    assert "as a sleep aid" in f.data["alternative"]


def test_intent_plan_counts(run):
    assert "drug_induced" in causes(run(rls_patient(F.med_request(*SERTRALINE_SCD, intent="plan"))))


def test_on_hold_counts(run):
    assert "drug_induced" in causes(run(rls_patient(F.med_request(*SERTRALINE_SCD, status="on-hold"))))


def test_an_order_on_hold_is_not_called_active(run):
    held = F.med_request("312744", "quetiapine 25 MG Oral Tablet", status="on-hold")
    card = _drug_card(run.cards(rls_patient(held)))
    assert card["summary"].startswith("On-hold quetiapine") and "Active" not in card["summary"]
    active = F.med_request("312744", "quetiapine 25 MG Oral Tablet")
    assert _drug_card(run.cards(rls_patient(held, active)))["summary"].startswith("Active quetiapine")


# --- drug_induced: negative ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rxcui", "display"),
    [
        ("310430", "gabapentin 100 MG Oral Capsule"),
        ("483448", "pregabalin 50 MG Oral Capsule"),
        ("1101339", "gabapentin enacarbil 600 MG Extended Release Oral Tablet [Horizant]"),
        ("993541", "24 HR bupropion hydrochloride 150 MG Extended Release Oral Tablet"),
        ("856377", "trazodone hydrochloride 50 MG Oral Tablet"),
        ("828269", "loratadine 10 MG Oral Capsule"),
        ("310325", "ferrous sulfate 325 MG Oral Tablet"),
        ("314076", "lisinopril 10 MG Oral Tablet"),
    ],
)
def test_rls_treatments_alternatives_and_unrelated_drugs_are_never_flagged(run, rxcui, display):
    a = run(rls_patient(F.med_request(rxcui, display)), drafts=[F.draft(rxcui, display, rid="d")])
    assert "drug_induced" not in causes(a)


def test_gabapentin_by_name_only_is_not_flagged(run):
    order = F.med_request("1000000003", "Gabapentin 600 MG Oral Tablet")
    assert "drug_induced" not in causes(run(rls_patient(order)))


@pytest.mark.parametrize(
    ("status", "intent"),
    [
        ("stopped", "order"),
        ("completed", "order"),
        ("entered-in-error", "order"),
        ("cancelled", "order"),
        ("active", "proposal"),
        ("draft", "order"),
    ],
)
def test_inactive_orders_proposals_and_record_drafts_are_not_exposures(run, status, intent):
    order = F.med_request(*SERTRALINE_SCD, status=status, intent=intent)
    assert "drug_induced" not in causes(run(rls_patient(order)))


# --- drug_induced: edge -------------------------------------------------------------------------


def test_topical_diphenhydramine_is_not_flagged(run):
    gel = F.med_request("1000000004", "diphenhydramine hydrochloride 20 MG/ML Topical Gel [Benadryl]")
    assert "drug_induced" not in causes(run(rls_patient(gel)))
    oral = F.med_request("1049909", "diphenhydramine hydrochloride 25 MG Oral Capsule")
    assert "drug_induced" in causes(run(rls_patient(oral)))


def test_ophthalmic_timolol_is_not_flagged_but_oral_beta_blocker_is_info(run):
    drops = F.med_request("1000000005", "timolol 5 MG/ML Ophthalmic Solution")
    assert "drug_induced" not in causes(run(rls_patient(drops)))
    f = finding(
        run(
            rls_patient(
                F.med_request("866427", "24 HR metoprolol succinate 25 MG Extended Release Oral Tablet")
            )
        ),
        "drug_induced",
    )
    assert not f.actionable and f.strength == "weak"  # beta-blockers: weak, info only
    assert "abruptly" in f.action


def test_prescribing_hooks_judge_drafts_not_active_orders(run):
    active = F.med_request(*SERTRALINE_SCD)
    gaba = F.draft("310430", "gabapentin 100 MG Oral Capsule", rid="d-gaba")
    cards = run.cards(rls_patient(active), hook="order-sign", drafts=[gaba])
    assert "drug_induced" not in card_causes(cards)


def test_two_active_orders_of_the_same_drug_make_one_finding(run):
    a = run(
        rls_patient(
            F.med_request(*SERTRALINE_SCD), F.med_request("208161", "sertraline 50 MG Oral Tablet [Zoloft]")
        )
    )
    f = finding(a, "drug_induced")
    assert len(f.evidence) == 2


def test_sandbox_category_object_is_repaired_and_said_so(run):
    draft = F.draft(*SERTRALINE_SCD, rid="sbx")
    draft["category"] = {"coding": [{"code": "outpatient"}]}
    cards = run.cards(rls_patient(), hook="order-sign", drafts=[draft])
    card = next(c for c in cards if c["source"]["topic"]["code"] == "drug_induced")
    assert "read leniently" in card["detail"].lower()


def test_invalid_draft_is_skipped_with_a_warning_and_siblings_still_judged(run):
    bad = F.draft(*SERTRALINE_SCD, rid="bad")
    bad["authoredOn"] = "yesterday"
    good = F.draft("349332", "escitalopram 10 MG Oral Tablet", rid="good")
    a = run(rls_patient(), drafts=[bad, good])
    judged = [f for f in a.findings if f.cause == "drug_induced" and not f.data.get("invalid")]
    assert [f.data["orders"] for f in judged] == [["MedicationRequest/good"]]
    assert any("MedicationRequest/bad" in w and "validation" in w for w in a.warnings)
    assert not any("yesterday" in w for w in a.warnings)  # no resource values in warnings
    # The invalid draft is not judged, but the clinician deciding it is told it could not be checked.
    [unchecked] = [f for f in a.findings if f.data.get("invalid")]
    assert unchecked.data["orders"] == ["MedicationRequest/bad"] and not unchecked.actionable
    assert "could not be checked" in unchecked.summary and "sertraline" in unchecked.summary.lower()
    cards = run.cards(rls_patient(), hook="order-sign", drafts=[bad])
    [card] = [c for c in cards if "could not be checked" in c["summary"]]
    assert card["indicator"] == "info" and "suggestions" not in card
    assert "Alternative: ." not in card["detail"] and "#" not in unchecked.reasoning


# --- drug_withdrawal ----------------------------------------------------------------------------


def test_recently_stopped_clonazepam_is_a_withdrawal_note(run):
    stopped = F.med_request(
        "197527", "clonazepam 0.5 MG Oral Tablet", status="stopped", authored_days=200, end_days=10
    )
    stopped["medicationCodeableConcept"]["coding"][0]["code"] = "2598"  # ingredient-coded order
    f = finding(run(rls_patient(stopped)), "drug_withdrawal")
    assert "clonazepam" in f.summary.lower() and not f.actionable


def test_stopped_imipramine_is_withdrawal_not_drug_induced(run):
    stopped = F.med_request(
        "835564", "imipramine hydrochloride 25 MG Oral Tablet", status="completed", authored_days=20
    )
    a = run(rls_patient(stopped))
    assert "imipramine" in finding(a, "drug_withdrawal").summary.lower()
    assert "drug_induced" not in causes(a)


def test_withdrawal_outside_30_days_is_silent(run):
    old = F.med_request("2598", "clonazepam", status="stopped", authored_days=300, end_days=90)
    assert "drug_withdrawal" not in causes(run(rls_patient(old)))


def test_active_clonazepam_is_neither_withdrawal_nor_aggravator(run):
    active = F.med_request("2598", "clonazepam")
    stopped = F.med_request("2598", "clonazepam", status="stopped", authored_days=100, end_days=5)
    a = run(rls_patient(active, stopped))
    assert not {"drug_withdrawal", "drug_induced"} & causes(a)


def test_stopped_sertraline_is_not_a_withdrawal_cause(run):
    stopped = F.med_request(*SERTRALINE_SCD, status="stopped", authored_days=20, end_days=3)
    assert not {"drug_withdrawal", "drug_induced"} & causes(run(rls_patient(stopped)))


def test_unknown_product_with_a_topical_route_code_is_not_flagged(run):
    cream = F.med_request("1000000010", "Benadryl Itch Stopping Cream")
    assert "drug_induced" not in causes(run(rls_patient(cream)))  # "Cream": a topical dose form
    order = F.med_request("1000000011", "diphenhydramine hydrochloride 2 %")
    order["dosageInstruction"][0]["route"] = {
        "coding": [{"system": F.SCT, "code": "6064005", "display": "Topical route"}]
    }
    assert "drug_induced" not in causes(run(rls_patient(order)))
    order["dosageInstruction"][0]["route"]["coding"][0].update(code="26643006", display="Oral route")
    assert "drug_induced" in causes(run(rls_patient(order)))


def test_urn_uuid_medication_reference_as_in_synthea_bundles(run):
    mid = "8a1c7b3e-2f4d-4c6a-9e1b-3d5f7a9c1e2b"
    med = F.medication(
        mid, [{"system": F.RXNORM, "code": "312941", "display": "sertraline 50 MG Oral Tablet"}]
    )
    order = F.med_request(None, "sertraline")
    order.pop("medicationCodeableConcept")
    order["medicationReference"] = {"reference": f"urn:uuid:{mid}"}
    f = finding(run(rls_patient(order, med)), "drug_induced")
    assert f.evidence[0].certainty == "code" and "sertraline" in f.summary.lower()


def test_a_combination_with_an_antipsychotic_gets_no_swap_and_no_removal(run):
    # Olanzapine/fluoxetine: bupropion would replace the antidepressant half only.
    symbyax = F.draft(None, "olanzapine 6 MG / fluoxetine 25 MG Oral Capsule", rid="d-sym")
    card = _drug_card(run.cards(rls_patient(), hook="order-sign", drafts=[symbyax]))
    assert "bupropion" not in card["summary"] + card["detail"] and "suggestions" not in card
    assert "no simple substitute" in card["detail"]
    assert "with the prescriber" not in card["detail"]  # at order-sign the reader is the prescriber
    active = F.med_request(None, "olanzapine 6 MG / fluoxetine 25 MG Oral Capsule")
    detail = _drug_card(run.cards(rls_patient(active)))["detail"]
    assert "taper it" in detail and "cross-taper" not in detail  # no alternative to cross-taper to


def test_active_antidepressant_card_says_not_to_stop_it_abruptly(run):
    for order in (F.med_request("312242", "paroxetine 20 MG Oral Tablet"), F.med_request(*SERTRALINE_SCD)):
        card = _drug_card(run.cards(rls_patient(order)))
        assert "Do not stop an antidepressant abruptly" in card["detail"]
    # A new draft is not a treatment to stop: no taper advice there.
    card = _drug_card(
        run.cards(rls_patient(), hook="order-sign", drafts=[F.draft(*SERTRALINE_SCD, rid="d1")])
    )
    assert "abruptly" not in card["detail"]


def test_with_neuropathy_an_snri_or_tca_alternative_treats_the_pain_too(run):
    neuropathy = F.condition(F.ICD10, "E11.42", "Type 2 diabetes mellitus with diabetic polyneuropathy")
    duloxetine = F.med_request("596926", "duloxetine 30 MG Delayed Release Oral Capsule")
    card = _drug_card(run.cards(rls_patient(neuropathy, duloxetine)))
    assert (
        "consider a gabapentinoid" in card["summary"]
        and "or bupropion if it is for depression" in card["detail"]
    )
    assert "taper it (cross-taper if switching to bupropion)" in card["detail"]
    # Already on a gabapentinoid: the tables' alternative stands.
    gabapentin = F.med_request(None, "gabapentin 300 MG Oral Capsule")
    assert (
        "consider bupropion"
        in _drug_card(run.cards(rls_patient(neuropathy, duloxetine, gabapentin)))["summary"]
    )
    # Without neuropathy the tables' alternative stands.
    assert "consider bupropion" in _drug_card(run.cards(rls_patient(duloxetine)))["summary"]
    # An SSRI is not a pain drug: its alternative does not change.
    assert (
        "bupropion"
        in _drug_card(run.cards(rls_patient(neuropathy, F.med_request(*SERTRALINE_SCD))))["summary"]
    )


def test_metoclopramide_alternative_says_ondansetron_is_not_a_prokinetic(run):
    # Metoclopramide is often given for gastroparesis, where ondansetron is no substitute.
    card = _drug_card(run.cards(rls_patient(F.med_request(None, "metoclopramide 10 MG Oral Tablet"))))
    assert "consider ondansetron" in card["summary"] and "not a prokinetic" in card["detail"]


def _with_route(order, code, display):
    order["dosageInstruction"][0]["route"] = {"coding": [{"system": F.SCT, "code": code, "display": display}]}
    return order


def test_an_ingredient_code_names_no_route_so_the_orders_own_route_decides(run):
    # EHRs often code eye drops and creams with the ingredient RxCUI only (timolol 10600, diphenhydramine
    # 3498): the code says nothing about the dose form, so the order's route (SNOMED route code or the
    # product wording) decides, as for an unknown product (rls-clinical.md §1 "Route").
    drops = _with_route(F.draft("10600", "timolol", rid="d-eye"), "54485002", "Ophthalmic route")
    assert "drug_induced" not in causes(run(rls_patient(), drafts=[drops]))
    cream = F.med_request("3498", "diphenhydramine", text="Diphenhydramine 2% cream, apply to rash")
    assert "drug_induced" not in causes(run(rls_patient(cream)))
    # The same ingredient code taken by mouth is still flagged.
    tablets = _with_route(F.med_request("10600", "timolol"), "26643006", "Oral route")
    assert "drug_induced" in causes(run(rls_patient(tablets)))
    assert "drug_induced" in causes(run(rls_patient(F.med_request("3498", "diphenhydramine"))))


@pytest.mark.parametrize(
    ("atc", "display", "flagged"),
    [
        ("D04AA32", "diphenhydramine (topical)", False),
        ("S01ED01", "timolol (ophthalmic)", False),
        ("R06AA02", "diphenhydramine", True),
        ("C07AA06", "timolol", True),
    ],
)
def test_an_atc_code_of_local_use_is_not_flagged(run, atc, display, flagged):
    # European EHRs code orders with ATC: D04 (topical antipruritics) and S01 (ophthalmologicals) name the
    # local use themselves, with no route or dose form in the order (rls-clinical.md §1 "Route").
    order = F.med_request(None, display, codings=[{"system": "http://www.whocc.no/atc", "code": atc}])
    assert ("drug_induced" in causes(run(rls_patient(order)))) is flagged


def test_a_switch_within_the_class_is_a_replacement_not_a_withdrawal(run):
    # rls-clinical.md §2.8: a stopped order counts "with no active replacement". Lorazepam changed to
    # clonazepam, or hydralazine stopped beside a current isosorbide dinitrate, withdraws no sedative or
    # vasodilator effect.
    lorazepam = F.med_request("6470", "lorazepam", status="stopped", authored_days=60, end_days=5)
    clonazepam = F.med_request("2598", "clonazepam", authored_days=5)
    assert "drug_withdrawal" not in causes(run(rls_patient(lorazepam, clonazepam)))
    hydralazine = F.med_request("5470", "hydralazine", status="stopped", authored_days=60, end_days=5)
    isosorbide = F.med_request("6058", "isosorbide dinitrate")
    assert "drug_withdrawal" not in causes(run(rls_patient(hydralazine, isosorbide)))
    # Without a replacement the stop is still a withdrawal note.
    assert "lorazepam" in finding(run(rls_patient(lorazepam)), "drug_withdrawal").summary.lower()


def test_a_stop_without_its_date_is_not_dated_by_the_order_date(run):
    # A completed imipramine order with no end date was written 20 days ago and stopped some time since:
    # "stopped on <order date>" would state a date the record does not give.
    completed = F.med_request(
        "835564", "imipramine hydrochloride 25 MG Oral Tablet", status="completed", authored_days=20
    )
    f = finding(run(rls_patient(completed)), "drug_withdrawal")
    ordered = F.at(20)[:10]
    assert f"stopped on or after {ordered}" in f.summary
    assert f"stopped/completed by {ordered}" not in (f.evidence[0].note or "")
    # Stopped early: the planned end (dispenseRequest.validityPeriod) is still ahead, so the stop fell
    # between the order date (10 days ago, inside the 30-day window) and now.
    early = F.med_request("596", "alprazolam", status="stopped", authored_days=10, end_days=-80)
    f = finding(run(rls_patient(early)), "drug_withdrawal")
    assert "alprazolam" in f.summary.lower() and f"on or after {F.at(10)[:10]}" in f.summary


def test_an_alternative_the_patient_already_takes_is_not_offered_as_a_switch(run):
    # Mirtazapine added to bupropion (augmentation): "consider bupropion" tells the prescriber nothing,
    # and a one-click removal "to switch to bupropion" is no switch at all.
    bupropion = F.med_request("993541", "24 HR bupropion hydrochloride 150 MG Extended Release Oral Tablet")
    draft = F.draft("311725", "mirtazapine 15 MG Oral Tablet", rid="d1")
    card = _drug_card(run.cards(rls_patient(bupropion), hook="order-sign", drafts=[draft]))
    assert "consider bupropion" not in card["summary"] and "already takes bupropion" in card["summary"]
    assert "suggestions" not in card and "no simple substitute" not in card["detail"]
    assert bupropion["id"] in card["detail"]  # the claim shows its evidence
    # The same for a sedating antihistamine beside a current non-sedating one.
    cetirizine = F.med_request("1014676", "cetirizine hydrochloride 5 MG Oral Tablet")
    hydroxyzine = F.draft("995218", "hydroxyzine hydrochloride 10 MG Oral Tablet", rid="d2")
    card = _drug_card(run.cards(rls_patient(cetirizine), hook="order-sign", drafts=[hydroxyzine]))
    assert "consider" not in card["summary"] and "already takes cetirizine" in card["summary"]
    # Drafted together in one session: the substitute is "also being ordered".
    both = [
        F.draft("993541", "24 HR bupropion hydrochloride 150 MG Extended Release Oral Tablet", rid="d3"),
        draft,
    ]
    card = _drug_card(run.cards(rls_patient(), hook="order-sign", drafts=both))
    assert "bupropion also being ordered" in card["summary"]
    # The alternative text names examples of a class: levocetirizine is one of them too.
    levocetirizine = F.med_request(None, "levocetirizine dihydrochloride 5 MG Oral Tablet")
    card = _drug_card(run.cards(rls_patient(levocetirizine), hook="order-sign", drafts=[hydroxyzine]))
    assert "consider" not in card["summary"] and "already takes levocetirizine" in card["summary"]


def test_renewing_an_order_that_just_completed_offers_no_one_click_removal(run):
    # The sertraline prescription ran its course three days ago and the draft renews it: removing the
    # renewal would stop an antidepressant abruptly, as for a draft beside an active order.
    completed = F.med_request(*SERTRALINE_SCD, status="completed", authored_days=95, end_days=3)
    renewal = F.draft(*SERTRALINE_SCD, rid="d-renew")
    card = _drug_card(run.cards(rls_patient(completed), hook="order-sign", drafts=[renewal]))
    assert "suggestions" not in card
    assert "renews" in card["detail"] and "abruptly" in card["detail"]
    assert completed["id"] in card["detail"]  # the completed order the claim rests on is cited
    # Completed with its planned end still ahead (written 60 days ago, supply to last 20 more days):
    # the draft renews it as well.
    planned = F.med_request(*SERTRALINE_SCD, status="completed", authored_days=60, end_days=-20)
    card = _drug_card(run.cards(rls_patient(planned), hook="order-sign", drafts=[renewal]))
    assert "suggestions" not in card and "renews" in card["detail"]
    # A course that ended long ago is no current therapy: a new start may still be removed.
    old = F.med_request(*SERTRALINE_SCD, status="completed", authored_days=400, end_days=300)
    card = _drug_card(run.cards(rls_patient(old), hook="order-sign", drafts=[renewal]))
    assert card["suggestions"][0]["actions"][0]["type"] == "delete"


# --- augmentation: dopaminergic RLS treatment (rls-clinical.md §2.5, §3) -------------------------

PRAMIPEXOLE_SCD = ("859033", "pramipexole dihydrochloride 0.125 MG Oral Tablet")


def _augmentation(cards):
    return [c for c in cards if c["source"]["topic"]["code"] == "augmentation"]


def test_a_dopamine_agonist_drafted_for_rls_is_information_about_augmentation(run):
    cards = run.cards(rls_patient(), hook="order-sign", drafts=[F.draft(*PRAMIPEXOLE_SCD, rid="d1")])
    [card] = _augmentation(cards)
    assert card["indicator"] == "info" and "suggestions" not in card
    assert (
        card["summary"] == "Pramipexole order for RLS: AASM 2024 suggests against standard use (augmentation)"
    )
    assert "Prefer a gabapentinoid" in card["detail"] and "MedicationRequest/d1" in card["detail"]
    assert "drug_induced" not in card_causes(cards)  # a treatment, never an aggravator
    # The draft is what the order hooks are about; patient-view does not show it.
    assert not _augmentation(run.cards(rls_patient(), drafts=[F.draft(*PRAMIPEXOLE_SCD, rid="d1")]))


def test_a_current_dopaminergic_order_is_a_watch_for_augmentation_note_on_patient_view(run):
    levodopa = F.med_request("197444", "carbidopa 25 MG / levodopa 100 MG Oral Tablet")
    [card] = _augmentation(run.cards(rls_patient(levodopa)))
    assert card["indicator"] == "info"
    assert card["summary"].startswith("Carbidopa + levodopa: watch for augmentation of RLS")
    assert "rather than raising the dose" in card["detail"]
    # Not repeated at order-sign for an order that is not being decided.
    assert not _augmentation(run.cards(rls_patient(levodopa), hook="order-sign"))


def test_no_augmentation_note_when_parkinsons_disease_is_coded(run):
    pd = F.condition(
        F.ICD10, "G20.A1", "Parkinson's disease without dyskinesia, without mention of fluctuations"
    )
    ropinirole = F.med_request(*PRAMIPEXOLE_SCD)
    assert "augmentation" not in causes(run(rls_patient(pd, ropinirole)))
    assert "augmentation" in causes(run(rls_patient(ropinirole)))
