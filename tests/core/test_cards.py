"""Cards: CDS Hooks 2.0 field rules, which findings each hook shows, determinism, emitted FHIR."""

from __future__ import annotations

import copy

import orjson
import pytest

from rls_cds.core.engine import evaluate, render_cards
from rls_cds.core.validation import validate
from tests.api.conftest import assert_card_rules
from tests.core import fhir as F
from tests.core.conftest import card_causes

HOOKS = ("patient-view", "order-select", "order-sign", "medication-prescribe")


def busy_patient():
    """RLS with several findings: low ferritin, active SSRI, CKD 4, neuropathy, smoker."""
    return [
        F.patient(),
        F.rls(rid="rls-1"),
        F.ferritin(38, rid="fer-1", days=12),
        F.med_request("312941", "sertraline 50 MG Oral Tablet", rid="ssri-1"),
        F.condition(F.ICD10, "N18.4", "Chronic kidney disease, stage 4 (severe)", rid="ckd-1"),
        F.condition(F.ICD10, "G62.9", "Polyneuropathy, unspecified", rid="neuro-1"),
        F.condition(F.ICD10, "F17.210", "Nicotine dependence, cigarettes, uncomplicated", rid="tob-1"),
    ]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_card_follows_the_cds_hooks_rules(run, hook):
    drafts = [F.draft("349332", "escitalopram 10 MG Oral Tablet", rid="d-esc")]
    cards = run.cards(busy_patient(), hook=hook, drafts=drafts)
    assert cards
    for card in cards:
        assert_card_rules(card)
        assert card["indicator"] in ("info", "warning")
        assert card["source"]["url"].startswith("https://")
        assert card["detail"].count("`") >= 2  # resource references in the evidence


def test_only_actionable_findings_raise_warning(run):
    a = run(busy_patient())
    by_cause = {f.cause: f for f in a.findings}
    for card in render_cards(a, hook="patient-view"):
        f = by_cause[card["source"]["topic"]["code"]]
        assert (card["indicator"] == "warning") == f.actionable


def test_patient_view_shows_the_work_up_warnings_first(run):
    cards = run.cards(busy_patient())
    indicators = [c["indicator"] for c in cards]
    assert indicators == sorted(indicators, key=lambda i: i != "warning")
    assert {"iron_deficiency", "drug_induced", "kidney_disease", "peripheral_neuropathy", "lifestyle"} <= set(
        card_causes(cards)
    )


def test_detail_names_values_units_dates_and_references(run):
    card = next(c for c in run.cards(busy_patient()) if c["source"]["topic"]["code"] == "iron_deficiency")
    detail = card["detail"]
    assert "`Observation/fer-1`" in detail and "**38 ng/mL**" in detail and F.at(12)[:10] in detail
    assert "AASM" in detail and "](https://pubmed.ncbi.nlm.nih.gov/39324694/)" in detail


def test_prescribing_hooks_show_drafts_and_actionable_findings_only(run):
    drafts = [F.draft("349332", "escitalopram 10 MG Oral Tablet", rid="d-esc")]
    cards = run.cards(busy_patient(), hook="order-sign", drafts=drafts)
    drug = [c for c in cards if c["source"]["topic"]["code"] == "drug_induced"]
    assert len(drug) == 1 and "escitalopram" in drug[0]["summary"].lower()  # not the active sertraline
    assert all(c["indicator"] == "warning" for c in cards)  # notes stay on patient-view


def test_no_rls_diagnosis_means_no_cards(run):
    """Conservative by design (core/cards.py docstring): no false alarms for patients without RLS."""
    record = [r for r in busy_patient() if r.get("id") != "rls-1"]
    drafts = [F.draft("349332", "escitalopram 10 MG Oral Tablet", rid="d-esc")]
    for hook in HOOKS:
        assert run.cards(record, hook=hook, drafts=drafts) == []
    a = run(record, drafts=drafts)
    assert not a.has_rls and a.findings  # findings are still computed for panels/re-evaluation


@pytest.mark.parametrize(
    "rls_condition",
    [
        F.rls(clinical="resolved"),
        F.rls(verification="refuted"),
        F.rls(verification="entered-in-error"),
    ],
)
def test_inactive_or_refuted_rls_does_not_open_the_gate(run, rls_condition):
    record = [F.patient(), rls_condition, F.ferritin(20)]
    assert run.cards(record) == []


def test_cards_are_deterministic_for_same_input_and_now(run):
    first = run.cards(busy_patient(), hook="order-sign", drafts=[F.draft("349332", "escitalopram", rid="d1")])
    again = run.cards(
        copy.deepcopy(busy_patient()), hook="order-sign", drafts=[F.draft("349332", "escitalopram", rid="d1")]
    )
    assert orjson.dumps(first) == orjson.dumps(again)
    assert len({c["uuid"] for c in first}) == len(first)


def test_card_uuid_changes_with_content(run):
    a = run.cards([F.patient(), F.rls(rid="r"), F.ferritin(38, rid="f")])
    b = run.cards([F.patient(), F.rls(rid="r"), F.ferritin(39, rid="f")])
    assert a[0]["uuid"] != b[0]["uuid"]


def test_findings_and_fingerprint_are_deterministic_and_serialisable(run):
    import msgspec

    one, two = run(busy_patient()), run(busy_patient())
    assert msgspec.json.encode(one.findings) == msgspec.json.encode(two.findings)
    assert one.fingerprint == two.fingerprint and one.table_version == run.t.version
    changed = run(busy_patient() + [F.egfr(40)])
    assert changed.fingerprint != one.fingerprint
    # Irrelevant resources do not change what the rules read.
    unrelated = F.condition(F.ICD10, "I10", "Essential (primary) hypertension", rid="htn")
    assert run(busy_patient() + [unrelated]).fingerprint == one.fingerprint


def test_fingerprint_follows_what_the_cards_show_of_unread_and_pending_results(run):
    base = [F.patient(), F.rls(rid="r")]

    def fp(*labs):
        return run(base + list(labs)).fingerprint

    # The value shown as sent changes: the card changes, so must the fingerprint (the store keeps
    # the previous findings when it does not).
    assert fp(F.ferritin(30, unit="pmol/L", rid="f")) != fp(F.ferritin(300, unit="pmol/L", rid="f"))
    assert fp(F.ferritin(5, rid="f")) != fp(F.ferritin(5, comparator="<", rid="f"))
    # Preliminary then final with the same value: no card, then an iron card.
    assert fp(F.ferritin(30, rid="f", status="preliminary")) != fp(F.ferritin(30, rid="f"))
    # The AUDIT-C cut-off follows Patient.gender: a corrected gender may change the lifestyle card.
    audit = F.observation("75626-2", "Total score [AUDIT-C]", 3, "{score}", rid="a")
    women, men = (run([F.patient(gender=g), F.rls(rid="r"), audit]).fingerprint for g in ("female", "male"))
    assert women != men


def test_emitted_service_requests_are_valid_fhir(run):
    cards = run.cards([F.patient(), F.rls(rid="r1")])
    actions = [a for c in cards for s in c.get("suggestions", []) for a in s["actions"]]
    assert actions
    for action in actions:
        ok, reason, _ = validate(action["resource"])
        assert ok, reason
        assert action["resource"]["reasonReference"] == [{"reference": "Condition/r1"}]


def test_summaries_stay_under_140_characters_with_long_drug_names(run):
    long_name = "acetaminophen 21.7 MG/ML / dextromethorphan hydrobromide 1 MG/ML / doxylamine succinate " * 3
    cards = run.cards([F.patient(), F.rls(), F.med_request("1043400", long_name)])
    assert cards and all(len(c["summary"]) < 140 for c in cards)


def test_unknown_hook_is_rejected(run):
    with pytest.raises(ValueError, match="unknown hook"):
        render_cards(run([F.patient()]), hook="appointment-book")


def test_ehr_text_cannot_inject_markdown(run):
    nasty = F.med_request("1000000009", "sertraline [click](https://evil.example) **now**")
    card = next(
        c for c in run.cards([F.patient(), F.rls(), nasty]) if c["source"]["topic"]["code"] == "drug_induced"
    )
    assert "[click](https" not in card["detail"]


def test_now_without_timezone_is_read_as_utc(terminology):
    naive = F.NOW.replace(tzinfo=None)
    a = evaluate([F.patient(), F.rls(), F.ferritin(30)], now=naive, terminology=terminology)
    assert a.now.endswith("+00:00")
