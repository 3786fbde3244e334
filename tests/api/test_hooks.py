"""Every hook over loopback against the running server: full, missing and partial prefetch, FHIR faults."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.api import data
from tests.api.conftest import assert_card_rules, causes

DEADLINE = 1.0  # RLS_HOOK_DEADLINE_SECONDS of the cds_server fixture


def _pid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _call(cds_server, service: dict, body: dict) -> list[dict]:
    resp = cds_server.post(f"/cds-services/{service['id']}", body)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert isinstance(answer["cards"], list)
    for card in answer["cards"]:
        assert_card_rules(card)
    return answer["cards"]


def _without_observations(prefetch: dict, service: dict) -> dict:
    return {k: v for k, v in prefetch.items() if not service["prefetch"][k].startswith("Observation")}


# --- full prefetch ------------------------------------------------------------------------------


def test_patient_view_full_prefetch_names_iron_and_active_aggravator(cds_server, services):
    svc = services["patient-view"]
    pid = _pid("pv")
    record = data.patient_record(pid, ferritin_value=30, active_sertraline=True)
    cards = _call(cds_server, svc, data.hook_request("patient-view", pid, data.full_prefetch(record, svc)))
    found = causes(cards)
    assert "iron_deficiency" in found
    assert "drug_induced" in found  # patient-view also names active aggravating medications
    iron = next(c for c in cards if c["source"]["topic"]["code"] == "iron_deficiency")
    assert "30" in iron["summary"] or "30" in iron["detail"]


def test_patient_view_without_iron_studies_suggests_ordering_them(cds_server, services):
    svc = services["patient-view"]
    pid = _pid("pv")
    record = data.patient_record(pid, ferritin_value=None)
    cards = _call(cds_server, svc, data.hook_request("patient-view", pid, data.full_prefetch(record, svc)))
    card = next(c for c in cards if c["source"]["topic"]["code"] == "iron_studies_missing")
    actions = [a for s in card.get("suggestions", []) for a in s.get("actions", [])]
    assert any(a["type"] == "create" and a["resource"]["resourceType"] == "ServiceRequest" for a in actions)


@pytest.mark.parametrize("hook", ["order-select", "order-sign", "medication-prescribe"])
def test_prescribing_hooks_warn_on_sertraline_draft(cds_server, services, hook):
    svc = services[hook]
    pid = _pid("rx")
    record = data.patient_record(pid, ferritin_value=120)
    draft = data.sertraline_order(pid, status="draft", oid=f"draft-{uuid.uuid4().hex[:6]}")
    body = data.hook_request(hook, pid, data.full_prefetch(record, svc), drafts=[draft])
    cards = _call(cds_server, svc, body)
    drug = [c for c in cards if c["source"]["topic"]["code"] == "drug_induced"]
    assert drug, cards
    assert drug[0]["indicator"] == "warning"
    assert "sertraline" in drug[0]["summary"].lower()


def test_gabapentin_draft_is_never_flagged(cds_server, services):
    svc = services["order-sign"]
    pid = _pid("gaba")
    record = data.patient_record(pid, ferritin_value=120)
    body = data.hook_request(
        "order-sign", pid, data.full_prefetch(record, svc), drafts=[data.gabapentin_order(pid)]
    )
    assert "drug_induced" not in causes(_call(cds_server, svc, body))


def test_order_select_honours_selections(cds_server, services):
    svc = services["order-select"]
    pid = _pid("sel")
    record = data.patient_record(pid, ferritin_value=120)
    sertraline = data.sertraline_order(pid, status="draft", oid="draft-ssri")
    gaba = data.gabapentin_order(pid, oid="draft-gaba")
    prefetch = data.full_prefetch(record, svc)
    only_gaba = data.hook_request(
        "order-select", pid, prefetch, drafts=[sertraline, gaba], selections=["MedicationRequest/draft-gaba"]
    )
    assert "drug_induced" not in causes(_call(cds_server, svc, only_gaba))
    both = data.hook_request("order-select", pid, prefetch, drafts=[sertraline, gaba])
    assert "drug_induced" in causes(_call(cds_server, svc, both))


def test_sandbox_style_imperfect_draft_is_accepted(cds_server, services):
    """The CDS Hooks sandbox sends category as an object and a draftOrders Bundle without type."""
    svc = services["order-sign"]
    pid = _pid("sbx")
    draft = data.sertraline_order(pid, status="draft", oid="sbx-draft")
    draft["category"] = {"coding": [{"code": "outpatient"}]}
    body = data.hook_request(
        "order-sign", pid, data.full_prefetch(data.patient_record(pid, 120), svc), drafts=[draft]
    )
    del body["context"]["draftOrders"]["type"]
    assert "drug_induced" in causes(_call(cds_server, svc, body))


# --- prefetch missing: fetched from the real FHIR server ------------------------------------------


def test_patient_view_prefetch_missing_is_fetched(cds_server, services, fhir_server, fhir_patients):
    svc = services["patient-view"]
    pid = fhir_patients["low_iron_ssri"]
    body = data.hook_request("patient-view", pid, None, fhir_server.base_url, fhir_server.token)
    found = causes(_call(cds_server, svc, body))
    assert {"iron_deficiency", "drug_induced"} <= found


def test_prefetch_null_keys_are_fetched(cds_server, services, fhir_server, fhir_patients):
    svc = services["patient-view"]
    pid = fhir_patients["no_labs"]
    prefetch = {k: None for k in svc["prefetch"]}
    body = data.hook_request("patient-view", pid, prefetch, fhir_server.base_url, fhir_server.token)
    cards = _call(cds_server, svc, body)
    assert "iron_studies_missing" in causes(cards)  # labs were read, and there are none


def test_partially_missing_prefetch_fetches_the_rest(cds_server, services, fhir_server, fhir_patients):
    svc = services["order-sign"]
    pid = fhir_patients["low_iron_ssri"]
    # Conditions, patient and medications are sent (empty meds); the labs must be fetched.
    record = [data.patient(pid), data.rls_condition(pid)]
    prefetch = _without_observations(data.full_prefetch(record, svc), svc)
    body = data.hook_request(
        "order-sign",
        pid,
        prefetch,
        fhir_server.base_url,
        fhir_server.token,
        drafts=[data.sertraline_order(pid, status="draft", oid="partial-draft")],
    )
    found = causes(_call(cds_server, svc, body))
    assert "iron_deficiency" in found  # ferritin 30 came from the FHIR server
    assert "drug_induced" in found


OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "timeout", "diagnostics": "query timed out"}],
}


@pytest.mark.parametrize(
    "failed",
    [
        OUTCOME,  # CDS Hooks 2.0: an EHR whose prefetch query failed may send an OperationOutcome
        {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": OUTCOME}]},
        "garbage",
        0,
        {"resourceType": "Bundle", "type": "searchset", "entry": "unreadable"},
    ],
)
def test_failed_prefetch_is_reported_not_read_as_no_results(cds_server, services, failed):
    svc = services["patient-view"]
    pid = _pid("oo")
    record = data.patient_record(pid, ferritin_value=None, active_sertraline=True)
    prefetch = data.full_prefetch(record, svc)
    for key, template in svc["prefetch"].items():
        if template.startswith("Observation"):
            prefetch[key] = failed
    cards = _call(cds_server, svc, data.hook_request("patient-view", pid, prefetch))
    assert "iron_studies_missing" not in causes(cards)  # never "no ferritin" from labs nobody saw
    drug = next(c for c in cards if c["source"]["topic"]["code"] == "drug_induced")
    assert "Observation" in drug["detail"] and "not available" in drug["detail"]


def test_failed_prefetch_key_is_fetched_from_the_fhir_server(
    cds_server, services, fhir_server, fhir_patients
):
    svc = services["patient-view"]
    pid = fhir_patients["low_iron_ssri"]
    record = [data.patient(pid), data.rls_condition(pid)]
    prefetch = data.full_prefetch(record, svc)
    for key, template in svc["prefetch"].items():
        if template.startswith("Observation"):
            prefetch[key] = OUTCOME
    body = data.hook_request("patient-view", pid, prefetch, fhir_server.base_url, fhir_server.token)
    assert "iron_deficiency" in causes(_call(cds_server, svc, body))  # ferritin 30 fetched instead


def test_resources_of_another_patient_are_never_evidence(cds_server, services):
    svc = services["patient-view"]
    pid = _pid("mix")
    record = data.patient_record(pid, ferritin_value=None)
    other = data.patient_record("someone-else", ferritin_value=20)
    prefetch = data.full_prefetch(record + [r for r in other if r["resourceType"] == "Observation"], svc)
    cards = _call(cds_server, svc, data.hook_request("patient-view", pid, prefetch))
    assert "iron_deficiency" not in causes(cards)
    assert "iron_studies_missing" in causes(cards)  # this patient has no ferritin of their own
    assert "someone-else" not in str(cards)


def test_patient_id_sent_as_an_absolute_reference_still_reads_the_record(cds_server, services):
    svc = services["patient-view"]
    pid = _pid("abs")
    record = data.patient_record(pid, ferritin_value=30)
    body = data.hook_request("patient-view", pid, data.full_prefetch(record, svc))
    body["context"]["patientId"] = f"https://ehr.example/fhir/Patient/{pid}"
    assert "iron_deficiency" in causes(_call(cds_server, svc, body))


def test_patient_reference_without_prefetch_is_queried_by_its_id(
    cds_server, services, fhir_server, fhir_patients
):
    # The reference form passed validation but every FHIR query was skipped ("not a FHIR id").
    svc = services["patient-view"]
    pid = fhir_patients["low_iron_ssri"]
    body = data.hook_request("patient-view", pid, None, fhir_server.base_url, fhir_server.token)
    body["context"]["patientId"] = f"{fhir_server.base_url}/Patient/{pid}/_history/1"
    cards = _call(cds_server, svc, body)
    assert "iron_deficiency" in causes(cards)
    assert all("not available" not in (c.get("detail") or "") for c in cards)


# --- FHIR server faults: answer in time with what is known, never claim absent labs ---------------


def _labs_unreadable_request(svc, pid, proxy_url, token):
    record = data.patient_record(pid, ferritin_value=None, active_sertraline=True)
    prefetch = _without_observations(data.full_prefetch(record, svc), svc)
    return data.hook_request("patient-view", pid, prefetch, proxy_url, token)


@pytest.mark.parametrize(
    ("mode", "seconds"),
    [("delay", 3.0), ("hang", 0.0), ("refuse", 0.0), ("500", 0.0), ("401", 0.0)],
)
def test_fhir_fault_answers_in_time_without_claiming_missing_labs(
    cds_server, services, fhir_server, fault_proxy, mode, seconds
):
    svc = services["patient-view"]
    fault_proxy.set_mode(mode, seconds)
    body = _labs_unreadable_request(svc, _pid("flt"), fault_proxy.base_url, fhir_server.token)
    start = time.monotonic()
    resp = cds_server.post(f"/cds-services/{svc['id']}", body, timeout=10)
    elapsed = time.monotonic() - start
    assert resp.status_code == 200, resp.text
    assert elapsed < DEADLINE + 0.5
    cards = resp.json()["cards"]
    for card in cards:
        assert_card_rules(card)
    assert "iron_studies_missing" not in causes(cards)
    drug = next(c for c in cards if c["source"]["topic"]["code"] == "drug_induced")
    assert "Observation" in drug["detail"] and "not available" in drug["detail"]


def test_fhir_server_rejecting_the_token_is_not_an_error(cds_server, services, fhir_server):
    svc = services["patient-view"]
    body = _labs_unreadable_request(svc, _pid("tok"), fhir_server.base_url, "not-a-valid-token")
    resp = cds_server.post(f"/cds-services/{svc['id']}", body)
    assert resp.status_code == 200
    assert "iron_studies_missing" not in causes(resp.json()["cards"])


def test_fault_proxy_passes_through_with_paging(
    cds_server, services, fhir_server, fault_proxy, fhir_patients
):
    svc = services["patient-view"]
    body = data.hook_request(
        "patient-view", fhir_patients["low_iron_ssri"], None, fault_proxy.base_url, fhir_server.token
    )
    assert "iron_deficiency" in causes(_call(cds_server, svc, body))
    assert fault_proxy.requests_seen > 0


def test_fhir_fetch_errors_are_counted(cds_server, services, fhir_server, fault_proxy):
    svc = services["patient-view"]
    fault_proxy.set_mode("500")
    _call(
        cds_server, svc, _labs_unreadable_request(svc, _pid("met"), fault_proxy.base_url, fhir_server.token)
    )
    metrics = cds_server.get("/metrics").text
    assert 'rls_cds_fhir_fetch_errors_total{reason="http_500"}' in metrics


@pytest.mark.parametrize("hook", ["order-select", "order-sign", "medication-prescribe"])
def test_prescribing_hooks_with_prefetch_missing(cds_server, services, fhir_server, fhir_patients, hook):
    svc = services[hook]
    pid = fhir_patients["low_iron_ssri"]
    draft = data.sertraline_order(pid, status="draft", oid=f"miss-{hook}")
    body = data.hook_request(hook, pid, None, fhir_server.base_url, fhir_server.token, drafts=[draft])
    found = causes(_call(cds_server, svc, body))
    assert {"drug_induced", "iron_deficiency"} <= found


def test_slow_server_within_the_deadline_is_still_used(
    cds_server, services, fhir_server, fault_proxy, fhir_patients
):
    svc = services["patient-view"]
    fault_proxy.set_mode("delay", 0.2)
    body = data.hook_request(
        "patient-view", fhir_patients["low_iron_ssri"], None, fault_proxy.base_url, fhir_server.token
    )
    cards = _call(cds_server, svc, body)
    assert "iron_deficiency" in causes(cards)
    assert all("not available" not in (c.get("detail") or "") for c in cards)


def test_patient_id_outside_fhir_id_syntax_is_never_put_in_a_query(
    cds_server, services, fhir_server, fault_proxy
):
    svc = services["patient-view"]
    seen = fault_proxy.requests_seen
    body = data.hook_request("patient-view", "x&_include=*", None, fault_proxy.base_url, fhir_server.token)
    resp = cds_server.post(f"/cds-services/{svc['id']}", body)
    assert resp.status_code == 400 and "must be a FHIR id" in resp.json()["detail"]
    assert fault_proxy.requests_seen == seen
