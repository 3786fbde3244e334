"""Vignettes: iron_deficiency and iron_studies_missing (rls-clinical.md §2.1 and §5 item 3)."""

from __future__ import annotations

import pytest

from tests.core import fhir as F
from tests.core.conftest import causes, finding
from tests.core.fhir import NOW


def rls_patient(*extra):
    return [F.patient(), F.rls(), *extra]


# --- iron_deficiency: positive ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "ucum"), [("ng/mL", "ng/mL"), ("µg/L", "ug/L"), ("ug/L", "ug/L"), ("ng/ml", None)]
)
def test_low_ferritin_in_any_unit_spelling_is_iron_deficiency(run, unit, ucum):
    a = run(rls_patient(F.ferritin(38, unit=unit, ucum=ucum, days=20)))
    f = finding(a, "iron_deficiency")
    assert f.actionable and f.strength == "strong"
    assert "38" in f.summary and "ng/mL" in f.summary
    assert f.evidence[0].value == 38 and f.evidence[0].unit == "ng/mL"
    assert f.data["band"] == "oral_or_iv"


def test_ferritin_exactly_75_is_inside_the_threshold(run):
    f = finding(run(rls_patient(F.ferritin(75), F.tsat(30))), "iron_deficiency")
    assert f.actionable and f.data["band"] == "oral_or_iv"


def test_mayo_immunoassay_ferritin_code_is_accepted(run):
    f = finding(run(rls_patient(F.ferritin(40, loinc="20567-4"))), "iron_deficiency")
    assert f.evidence[0].code == "20567-4"


def test_low_tsat_alone_qualifies_even_with_normal_ferritin(run):
    f = finding(run(rls_patient(F.ferritin(150), F.tsat(14))), "iron_deficiency")
    assert f.actionable and "TSAT 14" in f.summary
    assert "acute-phase" in f.reasoning  # above the RLS bands: say what else the pair can mean
    within = finding(run(rls_patient(F.ferritin(90), F.tsat(14))), "iron_deficiency")
    assert "acute-phase" not in within.reasoning


def test_low_tsat_beside_a_very_high_ferritin_names_inflammation(run):
    f = finding(run(rls_patient(F.ferritin(2000, comparator=">"), F.tsat(5))), "iron_deficiency")
    assert "Ferritin >2000 ng/mL is above the RLS iron bands" in f.reasoning and "inflammation" in f.reasoning


def test_tsat_computed_from_iron_and_tibc_of_the_same_draw(run):
    when = F.at(15)
    a = run(rls_patient(F.ferritin(150, days=15), F.iron(40, effective=when), F.tibc(400, effective=when)))
    f = finding(a, "iron_deficiency")
    assert f.data["tsat"] == pytest.approx(10.0)
    assert any("computed" in (e.note or "") for e in f.evidence)


def test_tsat_computed_from_si_units(run):
    when = F.at(15)
    # 7.2 µmol/L iron ~ 40 µg/dL; 71.6 µmol/L TIBC ~ 400 µg/dL: TSAT ~ 10 % whichever unit is used
    a = run(
        rls_patient(
            F.ferritin(150), F.iron(7.2, "umol/L", effective=when), F.tibc(71.6, "umol/L", effective=when)
        )
    )
    assert finding(a, "iron_deficiency").data["tsat"] == pytest.approx(10.06, abs=0.1)


def test_tibc_above_the_assay_range_makes_the_computed_tsat_an_upper_bound(run):
    # Iron 30 ug/dL, TIBC reported as '>450': TSAT is below 6.7 %. That still shows a low TSAT, and
    # the card says "<6.7", never an exact value nobody measured.
    when = F.at(10)
    a = run(
        rls_patient(F.ferritin(150), F.iron(30, effective=when), F.tibc(450, effective=when, comparator=">"))
    )
    f = finding(a, "iron_deficiency")
    assert f.actionable and "TSAT <6.7 %" in f.summary
    assert any("TSAT <6.7 % computed" in (e.note or "") for e in f.evidence)


def test_a_computed_tsat_bounded_from_above_never_says_iron_is_not_indicated(run):
    # Iron 500, TIBC '>1000': TSAT < 50 %, which may well be under the 45 % ceiling. Before, it was
    # read as exactly 50 % and a ferritin of 30 got "iron not indicated".
    when = F.at(10)
    a = run(
        rls_patient(F.ferritin(30), F.iron(500, effective=when), F.tibc(1000, effective=when, comparator=">"))
    )
    f = finding(a, "iron_deficiency")
    assert "iron not indicated" not in f.summary and f.data["band"] == "oral_or_iv"
    assert "TSAT is known only as <50 %: confirm it is < 45 %" in f.reasoning


def test_a_tsat_bounded_from_below_never_shows_a_low_tsat(run):
    # Iron '>10' or TIBC '<100' only bound the TSAT from below: 2.5 % is not "TSAT < 20 %".
    when = F.at(10)
    for iron, tibc in (
        (F.iron(10, effective=when, comparator=">"), F.tibc(400, effective=when)),
        (F.iron(5, effective=when), F.tibc(100, effective=when, comparator="<")),
    ):
        assert "iron_deficiency" not in causes(run(rls_patient(F.ferritin(150), iron, tibc)))
    assert "iron_deficiency" not in causes(run(rls_patient(F.ferritin(150), F.tsat(5, comparator=">"))))


def test_iron_and_tibc_bounded_in_opposite_directions_are_a_tsat_to_read_by_hand(run):
    when = F.at(10)
    iron = F.iron(10, effective=when, comparator="<", rid="fe-lt")
    tibc = F.tibc(100, effective=when, comparator="<")
    f = finding(run(rls_patient(F.ferritin(150), iron, tibc)), "iron_deficiency")
    assert not f.actionable and "opposite limits: no TSAT can be computed" in f.summary
    assert "iron <10 ug/dL / TIBC <100 ug/dL" in f.summary and f.evidence[0].resource == "Observation/fe-lt"
    # As the lab sent them, not converted: SI units stay SI.
    si = (
        F.iron(2, "umol/L", effective=when, comparator="<"),
        F.tibc(20, "umol/L", effective=when, comparator="<"),
    )
    assert (
        "iron <2 umol/L / TIBC <20 umol/L"
        in finding(run(rls_patient(F.ferritin(150), *si)), "iron_deficiency").summary
    )
    # Alone, such a draw is a result that exists: never "no iron studies in 12 months".
    a = run(rls_patient(iron, tibc))
    assert "iron_studies_missing" in causes(a)
    assert not finding(a, "iron_studies_missing").actionable
    assert "no ferritin" not in finding(a, "iron_studies_missing").summary.lower()


def test_a_newer_draw_that_gives_no_tsat_makes_the_older_low_tsat_information(run):
    old, new = F.at(200), F.at(10)
    older = (F.iron(30, effective=old), F.tibc(400, effective=old))  # TSAT 7.5 %
    newer = (F.iron(10, effective=new, comparator="<"), F.tibc(100, effective=new, comparator="<"))
    f = finding(run(rls_patient(F.ferritin(150), *older, *newer)), "iron_deficiency")
    assert not f.actionable and "A newer TSAT result" in f.reasoning


def test_a_tsat_known_only_as_a_lower_bound_under_45_is_to_be_confirmed(run):
    when = F.at(10)
    a = run(
        rls_patient(F.ferritin(50), F.iron(150, effective=when, comparator=">"), F.tibc(450, effective=when))
    )
    f = finding(a, "iron_deficiency")
    assert "TSAT is known only as >33.3 %: confirm it is < 45 %" in f.reasoning


def test_upper_bounds_at_a_threshold_meet_it_and_show_their_comparator(run):
    f = finding(run(rls_patient(F.ferritin(150), F.tsat(20, comparator="<"))), "iron_deficiency")
    assert f.actionable and "TSAT <20 %" in f.reasoning
    f = finding(run(rls_patient(F.ferritin(10, comparator="<"))), "iron_deficiency")
    assert "Ferritin <10 ng/mL <= 75" in f.reasoning
    ceiling = finding(run(rls_patient(F.ferritin(60), F.tsat(50, comparator=">"))), "iron_deficiency")
    assert "TSAT >50 % (>= 45 %): iron not indicated" in ceiling.summary


def test_esrd_with_a_tsat_bound_on_either_side_of_20_asks_for_a_tsat(run):
    esrd = F.condition(F.ICD10, "N18.6", "End stage renal disease")
    f = finding(run(rls_patient(esrd, F.ferritin(100), F.tsat(10, comparator=">"))), "iron_deficiency")
    assert "TSAT needed" in f.summary and "known only as >10 %" in f.reasoning
    f = finding(run(rls_patient(esrd, F.ferritin(100), F.tsat(25, comparator="<"))), "iron_deficiency")
    assert "TSAT needed" in f.summary and "known only as <25 %" in f.reasoning


def test_esrd_with_a_tsat_known_to_be_20_or_more_needs_nothing(run):
    # '>90' already shows the ESRD criterion (TSAT < 20 %) is not met: no "measure the TSAT" card.
    esrd = F.condition(F.ICD10, "N18.6", "End stage renal disease")
    assert "iron_deficiency" not in causes(
        run(rls_patient(esrd, F.ferritin(150), F.tsat(90, comparator=">")))
    )
    when = F.at(10)
    high = (F.iron(300, effective=when, comparator=">"), F.tibc(250, effective=when))
    assert "iron_deficiency" not in causes(run(rls_patient(esrd, F.ferritin(150), *high)))


def test_computed_bounds_are_rounded_outwards_and_inclusive_bounds_stay_inclusive(run):
    when = F.at(10)

    def tsat_card(iron):
        return finding(
            run(rls_patient(F.ferritin(150), iron, F.tibc(450, effective=when))), "iron_deficiency"
        )

    # iron <90.2 / 450 is <20.04 %: '<20.1', which does not show TSAT < 20 % (it was shown as '<20').
    assert "iron_deficiency" not in causes(
        run(
            rls_patient(
                F.ferritin(150), F.iron(90.2, effective=when, comparator="<"), F.tibc(450, effective=when)
            )
        )
    )
    # iron <=90 / 450 is <=20 %: may be exactly 20, so not < 20.
    assert "iron_deficiency" not in causes(
        run(
            rls_patient(
                F.ferritin(150), F.iron(90, effective=when, comparator="<="), F.tibc(450, effective=when)
            )
        )
    )
    # iron >202.4 / 450 is >44.98 %: '>44.9', not the 45 % ceiling; the card asks to confirm.
    f = finding(
        run(
            rls_patient(
                F.ferritin(50), F.iron(202.4, effective=when, comparator=">"), F.tibc(450, effective=when)
            )
        ),
        "iron_deficiency",
    )
    assert "iron not indicated" not in f.summary and "known only as >44.9 %" in f.reasoning
    assert tsat_card(F.iron(40, effective=when)).data["tsat"] == pytest.approx(8.9)


def test_esrd_rule_needs_values_that_show_both_are_low(run):
    esrd = F.condition(F.ICD10, "N18.6", "End stage renal disease")
    a = run(rls_patient(esrd, F.ferritin(150, comparator=">"), F.tsat(15)))
    assert "iron_deficiency" not in causes(a)


def test_ferritin_in_iv_only_band_75_to_100(run):
    for value in (76, 100):
        f = finding(run(rls_patient(F.ferritin(value), F.tsat(30))), "iron_deficiency")
        assert f.data["band"] == "iv_only" and "IV" in f.summary, value


def test_iron_deficiency_diagnosis_without_labs(run):
    a = run(rls_patient(F.condition(F.ICD10, "D50.9", "Iron deficiency anemia, unspecified")))
    f = finding(a, "iron_deficiency")
    assert f.actionable and "D50.9" in f.summary


def test_esrd_rule_ferritin_below_200_with_low_tsat(run):
    esrd = F.condition(F.ICD10, "N18.6", "End stage renal disease")
    f = finding(run(rls_patient(esrd, F.ferritin(150), F.tsat(15))), "iron_deficiency")
    assert f.actionable and f.data["band"] == "esrd" and "IV iron sucrose" in f.summary


# --- iron_deficiency: negative ------------------------------------------------------------------


def test_normal_iron_is_silent(run):
    assert "iron_deficiency" not in causes(run(rls_patient(F.ferritin(150), F.tsat(30))))


def test_ferritin_just_above_100_is_silent(run):
    assert "iron_deficiency" not in causes(run(rls_patient(F.ferritin(100.5), F.tsat(30))))


def test_iron_and_tibc_from_different_draws_are_not_combined(run):
    a = run(rls_patient(F.ferritin(150), F.iron(40, days=15), F.tibc(400, days=40)))
    assert "iron_deficiency" not in causes(a)


def test_esrd_ferritin_150_with_tsat_25_is_not_deficient(run):
    esrd = F.condition(F.SCT, "46177005", "End-stage renal disease")
    assert "iron_deficiency" not in causes(run(rls_patient(esrd, F.ferritin(150), F.tsat(25))))


def test_esrd_does_not_use_the_general_75_rule(run):
    dialysis = F.condition(F.ICD10, "Z99.2", "Dependence on renal dialysis")
    assert "iron_deficiency" not in causes(run(rls_patient(dialysis, F.ferritin(60), F.tsat(25))))


def test_refuted_and_entered_in_error_diagnoses_never_count(run):
    refuted = F.condition(F.ICD10, "D50.9", "Iron deficiency anemia", verification="refuted")
    wrong = F.condition(F.SCT, "87522002", "Iron deficiency anemia", verification="entered-in-error")
    resolved = F.condition(F.ICD10, "E61.1", "Iron deficiency", clinical="resolved")
    assert "iron_deficiency" not in causes(run(rls_patient(refuted, wrong, resolved, F.ferritin(150))))


def test_anemia_in_ckd_is_not_iron_deficiency(run):
    d631 = F.condition(F.ICD10, "D63.1", "Anemia in chronic kidney disease")
    assert "iron_deficiency" not in causes(run(rls_patient(d631, F.ferritin(150))))


# --- iron_deficiency: edge ----------------------------------------------------------------------


@pytest.mark.parametrize("tsat_value", [45, 52])
def test_tsat_45_or_more_suppresses_iron_advice(run, tsat_value):
    f = finding(run(rls_patient(F.ferritin(50), F.tsat(tsat_value))), "iron_deficiency")
    assert not f.actionable and f.data["band"] == "tsat_ceiling"
    assert "not indicated" in f.summary
    cards = run.cards(rls_patient(F.ferritin(50), F.tsat(tsat_value)))
    iron = [c for c in cards if c["source"]["topic"]["code"] == "iron_deficiency"]
    assert iron and iron[0]["indicator"] == "info" and not iron[0].get("suggestions")


def test_tsat_just_below_45_still_allows_iron(run):
    assert finding(run(rls_patient(F.ferritin(50), F.tsat(44.9))), "iron_deficiency").actionable


def test_stale_ferritin_outside_12_months_is_not_used(run):
    a = run(rls_patient(F.ferritin(20, days=400)))
    assert "iron_deficiency" not in causes(a)
    missing = finding(a, "iron_studies_missing")
    assert "over 12 months" in missing.summary


def test_preliminary_ferritin_is_not_a_result(run):
    a = run(rls_patient(F.ferritin(20, status="preliminary")))
    assert "iron_deficiency" not in causes(a)
    assert "iron_studies_missing" not in causes(a)  # the studies are under way


def test_cancelled_or_entered_in_error_ferritin_is_ignored(run):
    a = run(rls_patient(F.ferritin(20, status="entered-in-error"), F.ferritin(150, days=40)))
    assert "iron_deficiency" not in causes(a)


def test_latest_ferritin_decides(run):
    a = run(rls_patient(F.ferritin(20, days=200), F.ferritin(160, days=10), F.tsat(30, days=10)))
    assert "iron_deficiency" not in causes(a)


def test_active_iron_order_turns_advice_into_recheck(run):
    ferrous = F.med_request("310325", "ferrous sulfate 325 MG Oral Tablet")
    f = finding(run(rls_patient(F.ferritin(30), ferrous)), "iron_deficiency")
    assert not f.actionable and "already ordered" in f.summary
    assert "recheck" in f.action.lower()


def test_unknown_ferritin_unit_is_reported_not_guessed(run):
    a = run(rls_patient(F.ferritin(3, unit="mg/dL", ucum="mg/dL")))
    assert "iron_deficiency" not in causes(a)
    assert any("not recognised" in w for w in a.warnings)


def test_ferritin_below_the_limit_of_detection_keeps_its_comparator_in_the_evidence(run):
    a = run(rls_patient(F.ferritin(10, comparator="<", rid="fer-lt")))
    f = finding(a, "iron_deficiency")
    assert "<10" in f.summary and f.evidence[0].value == "<10"
    card = next(
        c for c in run.cards(rls_patient(F.ferritin(10, comparator="<"))) if "iron" in c["summary"].lower()
    )
    assert "\\<10 ng/mL" in card["detail"]  # Markdown-escaped '<10', never a bare '10'


def test_coded_iron_deficiency_with_an_unreadable_ferritin_keeps_its_warning_and_says_why(run):
    ida = F.condition(F.ICD10, "D50.9", "Iron deficiency anemia, unspecified")
    f = finding(run(rls_patient(ida, F.ferritin(30, unit="mmol/L", rid="fer-u"))), "iron_deficiency")
    assert f.actionable and "iron study result: unit not recognised" in f.summary
    assert [e.resource for e in f.evidence].count("Observation/fer-u") == 1
    assert "older value" not in f.reasoning


def test_an_unreadable_tsat_with_no_readable_one_is_named_without_calling_it_newer(run):
    # The TSAT ceiling (iron only while TSAT < 45 %) is unknown: inform, name the result, don't date-judge.
    old_tsat = F.tsat(12, days=200, rid="tsat-u")
    old_tsat["valueQuantity"].update(unit="1", code="1")  # a fraction: not a unit the tables convert
    f = finding(run(rls_patient(F.ferritin(30, days=20), old_tsat)), "iron_deficiency")
    assert not f.actionable and "A TSAT result (" in f.reasoning and "newer" not in f.reasoning
    assert f.evidence[-1].resource == "Observation/tsat-u"


def test_an_older_unreadable_ferritin_beside_a_newer_readable_one_is_ignored(run):
    old = F.ferritin(30, unit="pmol/L", days=200)
    f = finding(run(rls_patient(F.ferritin(40, days=20), F.tsat(30, days=20), old)), "iron_deficiency")
    assert f.actionable and "could not be read" not in f.reasoning


def test_an_undated_ferritin_is_never_no_iron_studies(run):
    undated = F.ferritin(30, rid="fer-nodate")
    del undated["effectiveDateTime"], undated["issued"]
    f = finding(run(rls_patient(undated)), "iron_studies_missing")
    assert "no date" in f.summary and "date unknown" in f.summary and not f.actionable
    assert f.data.get("unread_result") == "Observation/fer-nodate"


def test_a_recent_ferritin_answered_in_words_is_unread_not_over_12_months_old(run):
    worded = F.ferritin(30, days=30, rid="fer-w")
    del worded["valueQuantity"]
    worded["valueString"] = "hemolysed"
    f = finding(run(rls_patient(worded)), "iron_studies_missing")
    assert "over 12 months" not in f.summary and "value is not a usable number" in f.summary
    assert not f.actionable and f.evidence[0].resource == "Observation/fer-w"


def test_a_computed_tsat_newer_than_the_measured_one_is_dated_as_its_own_draw(run):
    record = [
        F.tsat(30, days=240),  # measured, older
        F.iron(40, days=30, effective=F.at(30)),
        F.tibc(400, days=30, effective=F.at(30)),  # same draw: TSAT 10 %, newer
        F.ferritin(200, days=30),
    ]
    f = finding(run(rls_patient(*record)), "iron_deficiency")
    assert "TSAT 10 %" in f.summary and F.at(30)[:10] in f.summary


def test_unreadable_results_that_cannot_change_the_decision_give_no_card(run):
    # TSAT >= 45 %: no iron whatever the ferritin; an unreadable ferritin changes nothing.
    a = run(rls_patient(F.tsat(50), F.ferritin(300, unit="pmol/L")))
    assert "iron_deficiency" not in causes(a)
    # ESRD with ferritin >= 200: the ESRD criterion fails whatever the TSAT.
    esrd = F.condition(F.ICD10, "N18.6", "End stage renal disease")
    tsat_u = F.tsat(12)
    tsat_u["valueQuantity"].update(unit="1", code="1")
    assert "iron_deficiency" not in causes(run(rls_patient(esrd, F.ferritin(500), tsat_u)))


def test_an_out_of_range_value_does_not_break_the_evaluation(run):
    a = run(
        rls_patient(
            F.ferritin(1e30, rid="huge"), F.tsat(15), F.med_request("312941", "sertraline 50 MG Oral Tablet")
        )
    )
    assert {"iron_deficiency", "drug_induced"} <= causes(a) and a.fingerprint


def test_a_preliminary_worded_or_empty_ferritin_means_studies_are_under_way(run):
    worded = F.ferritin(30, status="preliminary")
    del worded["valueQuantity"]
    worded["valueString"] = "pending"
    empty = F.ferritin(30, status="registered")
    del empty["valueQuantity"]
    for pending in (worded, empty):
        assert "iron_studies_missing" not in causes(run(rls_patient(pending)))


def test_a_tsat_known_only_as_an_upper_bound_never_settles_the_ceiling(run):
    below = F.tsat(50, comparator="<")
    a = run(rls_patient(F.ferritin(30), below))
    f = finding(a, "iron_deficiency")
    assert "iron not indicated" not in f.summary
    unread = run(rls_patient(below, F.ferritin(300, unit="pmol/L")))
    assert "unit not recognised" in finding(unread, "iron_deficiency").summary


def test_esrd_with_a_tsat_of_20_or_more_needs_no_unreadable_ferritin_card(run):
    esrd = F.condition(F.ICD10, "N18.6", "End stage renal disease")
    a = run(rls_patient(esrd, F.tsat(30), F.ferritin(300, unit="pmol/L")))
    assert "iron_deficiency" not in causes(a)


def test_ferritin_labelled_ng_per_dl_is_not_guessed(run):
    # Not in the reference's unit table, and as often a mislabelled ng/mL as a real ng/dL: read by hand.
    f = finding(run(rls_patient(F.ferritin(150, unit="ng/dL"), F.tsat(30))), "iron_deficiency")
    assert not f.actionable and "unit not recognised" in f.summary and f.data.get("ferritin") is None


def test_newer_unreadable_ferritin_turns_the_older_low_value_into_information(run):
    old_low = F.ferritin(40, days=200, rid="fer-old")
    new_unread = F.ferritin(300, unit="pmol/L", days=10, rid="fer-new")  # not in the unit table
    f = finding(run(rls_patient(old_low, new_unread)), "iron_deficiency")
    assert not f.actionable, "judged on an older value while the newest cannot be read"
    assert "A newer ferritin result" in f.reasoning and "unit not recognised" in f.reasoning
    assert [e.resource for e in f.evidence] == ["Observation/fer-old", "Observation/fer-new"]


def test_normal_tsat_with_an_older_unreadable_ferritin_still_says_iron_is_not_assessed(run):
    old = F.ferritin(30, unit="pmol/L", days=200, rid="fer-old")
    f = finding(run(rls_patient(F.tsat(30, days=10), old)), "iron_deficiency")
    assert (
        not f.actionable
        and "unit not recognised" in f.summary
        and f.evidence[0].resource == "Observation/fer-old"
    )


def test_normal_tsat_with_unreadable_ferritin_says_iron_is_not_assessed(run):
    f = finding(run(rls_patient(F.tsat(30), F.ferritin(300, unit="pmol/L", rid="fer-x"))), "iron_deficiency")
    assert not f.actionable and "unit not recognised" in f.summary
    assert f.evidence[0].resource == "Observation/fer-x"


def test_ferritin_value_sent_as_text_is_never_read_as_no_ferritin(run):
    bad = F.ferritin(38, rid="fer-text")
    bad["valueQuantity"]["value"] = "38"  # invalid FHIR: a decimal sent as a string
    a = run(rls_patient(bad))
    f = finding(a, "iron_studies_missing")
    assert "could not read" in f.reasoning and "Neither result exists" not in f.reasoning
    assert not f.actionable and f.evidence[0].resource == "Observation/fer-text"
    assert "value is not a usable number" in f.summary


def test_negative_ferritin_is_not_read_as_deficiency(run):
    a = run(rls_patient(F.ferritin(-5, rid="fer-neg"), F.tsat(30)))
    f = finding(a, "iron_deficiency")
    assert not f.actionable and "value is not a usable number" in f.summary and "-5" in f.summary
    assert any("fer-neg" in w and "negative" in w for w in a.warnings)


def test_ferritin_failing_fhir_validation_is_never_read_as_no_ferritin(run):
    bad = F.ferritin(38, rid="fer-invalid")
    bad["status"] = "final"
    bad["subject"] = "Patient/p1"  # a Reference sent as a string: fails FHIR validation
    a = run(rls_patient(bad))
    f = finding(a, "iron_studies_missing")
    assert "not valid FHIR R4" in f.summary and "Neither result exists" not in f.reasoning
    assert any("fer-invalid" in w and "validation" in w for w in a.warnings)


# --- iron_studies_missing -----------------------------------------------------------------------


def test_rls_without_iron_studies_suggests_a_service_request(run):
    a = run(rls_patient())
    f = finding(a, "iron_studies_missing")
    assert f.actionable
    cards = run.cards(rls_patient())
    card = next(c for c in cards if c["source"]["topic"]["code"] == "iron_studies_missing")
    actions = card["suggestions"][0]["actions"]
    codes = {a["resource"]["code"]["coding"][0]["code"] for a in actions}
    assert codes == {"2276-4", "50190-8"}
    assert all(a["resource"]["subject"]["reference"] == "Patient/p1" for a in actions)


def test_recent_ferritin_satisfies_iron_studies(run):
    assert "iron_studies_missing" not in causes(run(rls_patient(F.ferritin(150, days=300))))


def test_tsat_alone_satisfies_iron_studies(run):
    assert "iron_studies_missing" not in causes(run(rls_patient(F.tsat(30, days=100))))


def test_no_iron_studies_claim_without_rls(run):
    assert "iron_studies_missing" not in causes(run([F.patient()]))


def test_labs_that_could_not_be_read_are_never_called_missing(run):
    a = run(rls_patient(), missing=frozenset({"Observation"}))
    assert "iron_studies_missing" not in causes(a)


def test_ferritin_at_366_days_is_stale(run):
    assert "iron_studies_missing" in causes(run(rls_patient(F.ferritin(150, days=366))))
    assert "iron_studies_missing" not in causes(run(rls_patient(F.ferritin(150, days=364))))


def test_iron_cards_in_pregnancy_defer_iv_iron_past_the_first_trimester(run):
    # Ferritin 85 is the IV-only band for non-pregnant adults: "consider IV iron" in early pregnancy
    # was unsafe advice (IV iron is not given in the first trimester).
    early = F.condition(F.SCT, "72892002", "Normal pregnancy", onset_days=20)
    f = finding(run(rls_patient(early, F.ferritin(85), F.tsat(25))), "iron_deficiency")
    assert "IV iron is avoided in the first trimester" in f.action and f.data["pregnant"] is True
    assert "oral iron is not expected to help" not in f.action
    late = F.condition(F.ICD10, "Z3A.30", "30 weeks gestation of pregnancy", onset_days=7)
    f = finding(run(rls_patient(late, F.ferritin(40))), "iron_deficiency")
    assert "Pregnant (31 weeks): decide oral or IV iron with the obstetric team" in f.action
    # Not pregnant: the action is the guideline's alone.
    f = finding(run(rls_patient(F.ferritin(85), F.tsat(25))), "iron_deficiency")
    assert "Pregnant" not in f.action and "pregnant" not in f.data


def test_pregnancy_with_esrd_or_an_iv_iron_order_never_contradicts_itself(run):
    early = F.condition(F.ICD10, "Z3A.10", "10 weeks gestation of pregnancy", onset_days=7)
    esrd = F.condition(F.ICD10, "N18.6", "End stage renal disease")
    f = finding(run(rls_patient(early, esrd, F.ferritin(150), F.tsat(15))), "iron_deficiency")
    assert "IV iron sucrose" not in f.summary and "Consider IV iron" not in f.action
    assert "in pregnancy, plan iron with the obstetric team" in f.summary
    assert "for non-pregnant adults" in f.reasoning
    # An IV iron order in early pregnancy is the one iron order that gets a second look.
    fcm = F.draft("1435169", "ferric carboxymaltose 50 MG/ML Injectable Solution", rid="fcm")
    cards = run.cards(rls_patient(early, F.ferritin(30)), hook="order-sign", drafts=[fcm])
    card = next(c for c in cards if c["source"]["topic"]["code"] == "iron_deficiency")
    assert card["indicator"] == "warning" and "ordered in early pregnancy" in card["summary"]
    # Oral iron ordered: as before, "recheck levels".
    oral = F.draft(None, "ferrous sulfate 325 MG Oral Tablet", rid="fs")
    f = finding(run(rls_patient(early, F.ferritin(30)), drafts=[oral]), "iron_deficiency")
    assert "iron already ordered" in f.summary and not f.actionable


def test_iv_iron_in_pregnancy_uses_the_weeks_bound_and_needs_no_iron_card(run):
    fcm = F.draft("1435169", "ferric carboxymaltose 50 MG/ML Injectable Solution", rid="fcm")
    # A pregnancy dated 140 days ago is at least 20 weeks along: not "early", no IV-iron warning.
    z33 = F.condition(F.ICD10, "Z33.1", "Pregnant state, incidental", onset_days=140)
    cards = run.cards(rls_patient(z33, F.ferritin(20)), hook="order-sign", drafts=[fcm])
    assert not any("early pregnancy" in c["summary"] for c in cards)
    # Early pregnancy, normal ferritin (no iron card at all): the IV order still gets its warning.
    early = F.condition(F.ICD10, "Z3A.10", "10 weeks gestation of pregnancy", onset_days=7)
    cards = run.cards(rls_patient(early, F.ferritin(150), F.tsat(30)), hook="order-sign", drafts=[fcm])
    assert any(c["indicator"] == "warning" and "ordered in early pregnancy" in c["summary"] for c in cards)
    # ESRD in early pregnancy: no "prefer oral iron" (it does little in dialysis); nephrology is named.
    esrd = F.condition(F.ICD10, "N18.6", "End stage renal disease")
    f = finding(run(rls_patient(early, esrd, F.ferritin(150), F.tsat(15))), "iron_deficiency")
    assert "prefer oral iron" not in f.action and "nephrology and obstetric teams" in f.action


def test_which_iron_is_intravenous_is_the_tables_call(tmp_path):
    """IV-only iron is drug class iv_iron in the tables: an informaticist's edit changes the rule."""
    import shutil

    from rls_cds.core.engine import evaluate
    from rls_cds.settings import get_settings
    from rls_cds.terminology import load_terminology

    early = F.condition(F.ICD10, "Z3A.10", "10 weeks gestation of pregnancy", onset_days=7)
    sucrose = F.draft("1741261", "10 ML iron sucrose 20 MG/ML Injection", rid="ivs")

    def early_iv_warning(t) -> bool:
        a = evaluate(
            rls_patient(early, F.ferritin(150), F.tsat(30)), now=NOW, terminology=t, draft_orders=[sucrose]
        )
        return any(f.data.get("band") == "iv_in_early_pregnancy" for f in a.findings)

    tables = tmp_path / "terminology"
    shutil.copytree(get_settings().terminology_dir, tables)
    assert early_iv_warning(load_terminology(tables))
    meds = tables / "medications.csv"
    text = meds.read_text(encoding="utf-8")
    meds.write_text(text.replace("iron sucrose,,rls_treatment,iv_iron,", "iron sucrose,,rls_treatment,iron,"))
    edited = load_terminology(tables)
    assert not early_iv_warning(edited)
    # Still an iron order: the card is "iron already ordered", not "start iron".
    f = finding(
        evaluate(rls_patient(F.ferritin(30)), now=NOW, terminology=edited, draft_orders=[sucrose]),
        "iron_deficiency",
    )
    assert "iron already ordered (iron sucrose)" in f.summary
