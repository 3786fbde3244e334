"""Discovery, health, readiness, metrics and the OpenAPI document of the running service."""

from __future__ import annotations

import re

import requests

from tests.api import data

TOKEN = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")


def test_discovery_lists_the_four_services(cds_server, services):
    assert set(services) == {"patient-view", "order-select", "order-sign", "medication-prescribe"}
    for svc in services.values():
        assert svc["id"] and svc["title"] and svc["description"]
        assert isinstance(svc["prefetch"], dict) and svc["prefetch"]
        assert svc.get("usageRequirements")


def test_prefetch_templates_use_only_2_0_tokens_and_short_urls(services):
    for svc in services.values():
        for query in svc["prefetch"].values():
            assert set(TOKEN.findall(query)) <= {"context.patientId", "userPractitionerId"}
            assert len("https://fhir.example.org/api/FHIR/R4/" + query) < 2000


def test_observation_prefetch_lists_the_terminology_lab_codes(services):
    queries = [q for q in services["patient-view"]["prefetch"].values() if q.startswith("Observation?")]
    assert queries, "no Observation prefetch generated from the terminology tables"
    codes = {c for q in queries for c in re.findall(r"http://loinc\.org\|([0-9-]+)", q)}
    for loinc in ("2276-4", "2502-3", "33914-3"):  # ferritin, TSAT, eGFR
        assert loinc in codes
    kinds = {q.split("?")[0].split("/")[0] for q in services["patient-view"]["prefetch"].values()}
    assert {"Patient", "Condition", "MedicationRequest", "Observation"} <= kinds


def test_healthz_and_readyz(cds_server):
    assert cds_server.get("/healthz").json() == {"status": "ok"}
    assert requests.head(f"{cds_server.url}/healthz", timeout=5).status_code == 200  # load balancers probe so
    ready = cds_server.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"terminology": True, "clinical_core": True, "store": True}


def test_metrics_expose_latency_cards_and_store(cds_server, services):
    svc = services["patient-view"]
    record = data.patient_record("metrics-1", ferritin_value=30)
    cds_server.post(
        f"/cds-services/{svc['id']}",
        data.hook_request("patient-view", "metrics-1", data.full_prefetch(record, svc)),
    )
    text = cds_server.get("/metrics").text
    assert f'rls_cds_hook_latency_seconds_bucket{{le="0.5",service="{svc["id"]}"}}' in text
    assert 'rls_cds_cards_total{cause="iron_deficiency",indicator="warning"}' in text
    assert "rls_cds_store_up 1.0" in text


def test_openapi_document_describes_the_hooks(cds_server):
    doc = cds_server.get("/openapi.json").json()
    hook = doc["paths"]["/cds-services/{service_id}"]["post"]
    schema = hook["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"hook", "hookInstance", "context"}
    assert {"400", "404", "413", "415"} <= set(hook["responses"])
    assert "/cds-services/{service_id}/feedback" in doc["paths"]


def test_cors_preflight_for_browser_ehrs(cds_server, services):
    import requests

    resp = requests.options(
        f"{cds_server.url}/cds-services/{services['patient-view']['id']}",
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        timeout=5,
    )
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] in ("*", "https://sandbox.cds-hooks.org")
