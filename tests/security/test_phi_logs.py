"""No patient data and no token in the service's log: run every kind of call with distinctive
values, then grep everything the production-mode server wrote."""

from __future__ import annotations

import time

import pytest

from tests.api import data
from tests.security.helpers import call, log_records
from tests.support.fhir_server import transaction

pytestmark = pytest.mark.slow

PID = "phiq7x-zebra-4411"
FAMILY = "Quenbarrowzz"
GIVEN = "Zyxwvuta"
MRN = "MRN-PHI-98765-XQ"
NOTE = "lives-at-17-Vexholm-Lane"


def _patient() -> dict:
    return {
        "resourceType": "Patient",
        "id": PID,
        "name": [{"family": FAMILY, "given": [GIVEN]}],
        "identifier": [{"system": "urn:oid:1.2.3.4.5.1", "value": MRN}],
        "address": [{"line": [NOTE]}],
        "gender": "female",
        "birthDate": "1961-04-02",
    }


def _record() -> list[dict]:
    resources = [_patient(), *data.patient_record(PID, ferritin_value=30, active_sertraline=True)[1:]]
    resources[1] = {**resources[1], "note": [{"text": f"{GIVEN} {FAMILY} {NOTE}"}]}
    return resources


def test_no_phi_or_token_in_logs(secure, service_ids, jwt_keys, fhir_server, fhir_forbidden):
    fhir_server.load_bundle(transaction(_record()))
    fhir_token = fhir_server.token
    tokens: list[str] = []

    def mint(**kw) -> str:
        tokens.append(jwt_keys.mint(claims={"sub": f"client-{GIVEN}"}, **kw))
        return tokens[-1]

    pv, sel, sign = service_ids["patient-view"], service_ids["order-select"], service_ids["order-sign"]
    statuses = []
    # Data read from the real FHIR server with the EHR's access token.
    body = data.hook_request("patient-view", PID, fhir_server=fhir_server.base_url, token=fhir_token)
    statuses.append(call(secure, pv["id"], body, mint()).status_code)
    # Data in prefetch.
    body = data.hook_request("patient-view", PID, prefetch=data.full_prefetch(_record(), pv))
    statuses.append(call(secure, pv["id"], body, mint()).status_code)
    for svc in (sel, sign):
        drafts = [data.sertraline_order(PID, status="draft", oid=f"{PID}-draft")]
        body = data.hook_request(svc["hook"], PID, prefetch=data.full_prefetch(_record(), svc), drafts=drafts)
        statuses.append(call(secure, svc["id"], body, mint()).status_code)
    assert statuses == [200, 200, 200, 200]
    # Refusals that carry the same data: bad request, forbidden fhirServer, rejected token.
    bad = {
        "hook": "patient-view",
        "context": {"name": FAMILY, "patientId": PID},
        "prefetch": {"p": _patient()},
    }
    assert call(secure, pv["id"], bad, mint()).status_code == 400
    forbidden = data.hook_request("patient-view", PID, fhir_server=fhir_forbidden.base_url, token=fhir_token)
    assert call(secure, pv["id"], forbidden, mint()).status_code == 403
    assert call(secure, pv["id"], body, mint(lifetime=5000)).status_code == 401
    feedback = {
        "feedback": [
            {
                "card": "00000000-0000-4000-8000-000000000000",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-01-01T00:00:00Z",
            }
        ]
    }
    secure.post(f"/cds-services/{pv['id']}/feedback", feedback, headers={"Authorization": f"Bearer {mint()}"})

    # A patient id in the URL path (refused: no token) and free text in X-Request-Id: the log names
    # the route template and a generated request id instead.
    assert secure.get(f"/operator/assessments/{PID}").status_code == 401
    headers = {"Authorization": f"Bearer {mint()}", "X-Request-Id": f"{FAMILY} {MRN}"}
    pv_body = data.hook_request("patient-view", PID, prefetch=data.full_prefetch(_record(), pv))
    assert secure.post(f"/cds-services/{pv['id']}", pv_body, headers=headers).status_code == 200

    time.sleep(0.3)  # let the server flush its log
    text = secure.log_text()
    hooks_logged = [r for r in log_records(secure) if r.get("msg") == "hook answered"]
    assert len(hooks_logged) >= 6  # the log is real and structured
    assert {"request_id", "service_id", "hook", "status", "latency_ms", "card_count"} <= set(hooks_logged[-1])
    rejected = [r for r in log_records(secure) if r.get("msg") == "token rejected"]
    assert {"route": "/operator/assessments/{patient_id}"}.items() <= rejected[-1].items()
    for secret in [PID, FAMILY, GIVEN, MRN, NOTE, fhir_token, *tokens]:
        assert secret not in text, f"log contains {secret[:12]}..."
    for part in (t.split(".")[2][:20] for t in tokens):  # not even a signature fragment
        assert part not in text
