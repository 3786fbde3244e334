"""Feedback is stored and counted; an overridden card stays away for that patient and trigger."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tests.api import data
from tests.api.conftest import causes


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _cards(cds_server, svc, body) -> list[dict]:
    resp = cds_server.post(f"/cds-services/{svc['id']}", body)
    assert resp.status_code == 200, resp.text
    return resp.json()["cards"]


def _feedback(cds_server, svc, card: dict, outcome: str) -> None:
    item = {"card": card["uuid"], "outcome": outcome, "outcomeTimestamp": _now()}
    if outcome == "overridden":
        reasons = card.get("overrideReasons") or [{"code": "other", "display": "Other"}]
        item["overrideReason"] = {"reason": reasons[0], "userComment": "benefit outweighs risk"}
    else:
        item["acceptedSuggestions"] = [{"id": s["uuid"]} for s in card.get("suggestions", []) if "uuid" in s]
    resp = cds_server.post(f"/cds-services/{svc['id']}/feedback", {"feedback": [item]})
    assert resp.status_code == 200, resp.text


def test_override_suppresses_same_patient_and_trigger_only(cds_server, services):
    svc = services["order-sign"]
    pid, other = f"fb-{uuid.uuid4().hex[:8]}", f"fb-{uuid.uuid4().hex[:8]}"

    def request(patient: str, draft_id: str) -> dict:
        record = data.patient_record(patient, ferritin_value=30)
        draft = data.sertraline_order(patient, status="draft", oid=draft_id)
        return data.hook_request("order-sign", patient, data.full_prefetch(record, svc), drafts=[draft])

    first = _cards(cds_server, svc, request(pid, "d1"))
    drug = next(c for c in first if c["source"]["topic"]["code"] == "drug_induced")
    _feedback(cds_server, svc, drug, "overridden")

    # A new draft of the same drug for the same patient: suppressed; other findings still shown.
    again = _cards(cds_server, svc, request(pid, "d2"))
    assert "drug_induced" not in causes(again)
    assert "iron_deficiency" in causes(again)
    # Another patient with the same drug still gets the warning.
    assert "drug_induced" in causes(_cards(cds_server, svc, request(other, "d3")))


def test_accepted_feedback_does_not_suppress(cds_server, services):
    svc = services["patient-view"]
    pid = f"acc-{uuid.uuid4().hex[:8]}"
    body = data.hook_request("patient-view", pid, data.full_prefetch(data.patient_record(pid, None), svc))
    card = next(
        c for c in _cards(cds_server, svc, body) if c["source"]["topic"]["code"] == "iron_studies_missing"
    )
    _feedback(cds_server, svc, card, "accepted")
    assert "iron_studies_missing" in causes(_cards(cds_server, svc, body))


def test_feedback_outcomes_are_counted(cds_server, services):
    svc = services["patient-view"]
    before = _counter(cds_server, 'rls_cds_feedback_total{outcome="accepted"}')
    item = {"card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": _now()}
    resp = cds_server.post(f"/cds-services/{svc['id']}/feedback", {"feedback": [item, item]})
    assert resp.status_code == 200
    assert _counter(cds_server, 'rls_cds_feedback_total{outcome="accepted"}') == before + 2


def test_cds_hooks_1x_single_feedback_object_is_accepted(cds_server, services):
    svc = services["patient-view"]
    item = {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": _now()}
    assert cds_server.post(f"/cds-services/{svc['id']}/feedback", item).status_code == 200


def _counter(cds_server, name: str) -> float:
    for line in cds_server.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_identical_cards_for_two_patients_have_their_own_uuids(cds_server, services):
    svc = services["patient-view"]
    a, b = f"twin-{uuid.uuid4().hex[:8]}", f"twin-{uuid.uuid4().hex[:8]}"

    def request(pid: str) -> dict:
        return data.hook_request("patient-view", pid, data.full_prefetch(data.patient_record(pid, None), svc))

    card_a = next(
        c
        for c in _cards(cds_server, svc, request(a))
        if c["source"]["topic"]["code"] == "iron_studies_missing"
    )
    card_b = next(
        c
        for c in _cards(cds_server, svc, request(b))
        if c["source"]["topic"]["code"] == "iron_studies_missing"
    )
    assert card_a["uuid"] != card_b["uuid"]
    _feedback(cds_server, svc, card_a, "overridden")
    assert "iron_studies_missing" not in causes(_cards(cds_server, svc, request(a)))
    assert "iron_studies_missing" in causes(_cards(cds_server, svc, request(b)))
