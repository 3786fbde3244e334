"""Fixtures shared by the API tests: discovery by hook, patients loaded into the real FHIR server."""

from __future__ import annotations

import uuid as uuidlib

import pytest

from tests.support.rls_patients import load_rls_patients

HOOKS = ("patient-view", "order-select", "order-sign", "medication-prescribe")
INDICATORS = {"info", "warning", "critical"}
ACTION_TYPES = {"create", "update", "delete"}


@pytest.fixture(scope="session")
def services(cds_server) -> dict[str, dict]:
    """hook -> its discovery entry."""
    resp = cds_server.get("/cds-services")
    assert resp.status_code == 200
    return {s["hook"]: s for s in resp.json()["services"]}


@pytest.fixture(scope="session")
def fhir_patients(fhir_server) -> dict[str, str]:
    """Patients in sekmet: 'low_iron_ssri' (RLS, ferritin 30, active sertraline), 'no_labs' (RLS only)."""
    return load_rls_patients(fhir_server, "api")


def causes(cards: list[dict]) -> set[str]:
    return {c["source"]["topic"]["code"] for c in cards if c.get("source", {}).get("topic")}


def assert_card_rules(card: dict) -> None:
    """CDS Hooks 2.0 card field rules."""
    uuidlib.UUID(card["uuid"])
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in INDICATORS
    assert isinstance(card["source"]["label"], str) and card["source"]["label"]
    topic = card["source"].get("topic")
    if topic is not None:
        assert isinstance(topic.get("code"), str)
    if card.get("detail") is not None:
        assert isinstance(card["detail"], str)
    suggestions = card.get("suggestions") or []
    for s in suggestions:
        assert isinstance(s["label"], str) and s["label"]
        if "uuid" in s:
            uuidlib.UUID(s["uuid"])
        for a in s.get("actions") or []:
            assert a["type"] in ACTION_TYPES
            assert isinstance(a["description"], str)
            if a["type"] == "delete":
                assert isinstance(a.get("resourceId"), list | str) or "resource" in a
            else:
                assert isinstance(a["resource"], dict) and a["resource"].get("resourceType")
    if suggestions:
        assert card.get("selectionBehavior") in ("at-most-one", "any")
    for reason in card.get("overrideReasons") or []:
        assert isinstance(reason.get("code"), str) and reason.get("display")
    for link in card.get("links") or []:
        assert link["label"] and link["url"].startswith(("http://", "https://"))
        assert link["type"] in ("absolute", "smart")
