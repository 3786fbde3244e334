"""Every bad request gets a 4xx JSON body that says what is wrong, and nothing else leaks."""

from __future__ import annotations

import json

import pytest
import requests

from tests.api import data
from tests.support.cds_server import start_cds_server
from tests.support.fhir_server import stop_process


def _post_raw(
    cds_server, path: str, body: bytes, content_type: str = "application/json"
) -> requests.Response:
    return requests.post(
        f"{cds_server.url}{path}", data=body, headers={"Content-Type": content_type}, timeout=10
    )


def _assert_error(resp: requests.Response, status: int, error: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "detail"}
    assert isinstance(body["detail"], str) and body["detail"]
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    if error:
        assert body["error"] == error
    return body


def test_unknown_service_is_404(cds_server):
    _assert_error(
        cds_server.post("/cds-services/no-such-service", {"hook": "patient-view"}), 404, "unknown_service"
    )
    _assert_error(cds_server.post("/cds-services/no-such-service/feedback", {"feedback": []}), 404)


def test_malformed_json_is_400(cds_server, services):
    resp = _post_raw(
        cds_server, f"/cds-services/{services['patient-view']['id']}", b'{"hook": "patient-view",'
    )
    _assert_error(resp, 400, "invalid_json")


def test_a_number_beyond_double_range_is_named_as_such(cds_server, services):
    body = b'{"hook":"patient-view","hookInstance":"x","context":{"patientId":"p1","n":1e400}}'
    resp = _post_raw(cds_server, f"/cds-services/{services['patient-view']['id']}", body)
    assert "number too large" in _assert_error(resp, 400, "invalid_json")["detail"]


def test_feedback_nested_past_the_parser_limit_is_json_too_deep(cds_server, services):
    body = b'{"feedback":' + b"[" * 5000 + b"]" * 5000 + b"}"
    resp = _post_raw(cds_server, f"/cds-services/{services['patient-view']['id']}/feedback", body)
    _assert_error(resp, 400, "json_too_deep")


def test_wrong_content_type_is_415(cds_server, services):
    body = json.dumps(data.hook_request("patient-view", "p1", {})).encode()
    resp = _post_raw(cds_server, f"/cds-services/{services['patient-view']['id']}", body, "text/plain")
    _assert_error(resp, 415)


@pytest.mark.parametrize("field", ["hook", "hookInstance", "context"])
def test_missing_required_field_is_400(cds_server, services, field):
    body = data.hook_request("patient-view", "p1", {})
    del body[field]
    body_resp = _assert_error(cds_server.post(f"/cds-services/{services['patient-view']['id']}", body), 400)
    assert field in body_resp["detail"]


def test_missing_patient_id_is_400(cds_server, services):
    body = data.hook_request("patient-view", "p1", {})
    del body["context"]["patientId"]
    _assert_error(cds_server.post(f"/cds-services/{services['patient-view']['id']}", body), 400)


@pytest.mark.parametrize(
    "pid",
    [
        "Patient/",
        "patient/p1",
        "p 1",
        "p1\n",
        "x" * 65,
        " p1",
        "Patient/p1?x=1",
        "a/b",
        "https://ehr/Patient/p1/Observation/x",
    ],
)
def test_patient_id_that_names_no_patient_is_400(cds_server, services, pid):
    # Before, such an id matched no subject: every resource was "another patient's" and the EHR got
    # an empty answer, as if the record held nothing.
    body = data.hook_request("patient-view", "p1", {})
    body["context"]["patientId"] = pid
    resp = _assert_error(cds_server.post(f"/cds-services/{services['patient-view']['id']}", body), 400)
    assert "'context.patientId' must be a FHIR id" in resp["detail"]
    assert pid.strip() not in resp["detail"]  # the id itself is never echoed


@pytest.mark.parametrize(
    "pid", ["p1", "a.b-C9", "Patient/p1", "https://ehr.example/fhir/Patient/p1/_history/2"]
)
def test_patient_id_as_id_or_patient_reference_is_accepted(cds_server, services, pid):
    body = data.hook_request("patient-view", "p1", {})
    body["context"]["patientId"] = pid
    assert cds_server.post(f"/cds-services/{services['patient-view']['id']}", body).status_code == 200


def test_hook_not_matching_service_is_400(cds_server, services):
    body = data.hook_request("order-sign", "p1", {}, drafts=[])
    _assert_error(
        cds_server.post(f"/cds-services/{services['patient-view']['id']}", body), 400, "hook_mismatch"
    )


def test_body_not_an_object_is_400(cds_server, services):
    _assert_error(cds_server.post(f"/cds-services/{services['patient-view']['id']}", [1, 2]), 400)


def test_order_sign_without_draft_orders_is_400(cds_server, services):
    body = data.hook_request("order-sign", "p1", {}, drafts=[])
    del body["context"]["draftOrders"]
    _assert_error(cds_server.post(f"/cds-services/{services['order-sign']['id']}", body), 400)


@pytest.mark.parametrize(
    "server",
    [
        "file:///etc/passwd",
        "http://[::1/fhir",  # urlsplit raises ValueError: was a 500
        "http://a]b/",
        "http://ehr.example:99999/fhir",  # port out of range
        "http://ehr.example/fhir?x=1#frag",  # the fragment would swallow the search path
        "http://user:pass@ehr.example/fhir",  # would send Basic credentials instead of the token
    ],
)
def test_fhir_server_must_be_a_plain_http_base_url(cds_server, services, server):
    body = data.hook_request("patient-view", "p1", None, server, "tok")
    resp = cds_server.post(f"/cds-services/{services['patient-view']['id']}", body)
    assert "fhirServer" in _assert_error(resp, 400, "invalid_request")["detail"]


def test_oversized_body_is_413(cds_server, services):
    # cds_server's RLS_MAX_BODY_BYTES is 2 MiB; stream 3 MiB without a Content-Length.
    def chunks():
        yield b'{"hook": "patient-view", "pad": "'
        for _ in range(48):
            yield b"x" * 65536
        yield b'"}'

    resp = requests.post(
        f"{cds_server.url}/cds-services/{services['patient-view']['id']}",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    _assert_error(resp, 413, "payload_too_large")


def test_too_deep_json_is_400(cds_server, services):
    body = data.hook_request("patient-view", "p1", {})
    nested: dict = {}
    for _ in range(100):
        nested = {"x": nested}
    body["context"]["deep"] = nested
    _assert_error(
        cds_server.post(f"/cds-services/{services['patient-view']['id']}", body), 400, "json_too_deep"
    )


def test_invalid_resources_in_prefetch_are_skipped_not_fatal(cds_server, services):
    svc = services["patient-view"]
    record = data.patient_record("junk-1", ferritin_value=30)
    prefetch = data.full_prefetch(record, svc)
    prefetch["conditions"]["entry"].append({"resource": {"resourceType": "Condition", "code": 42}})
    prefetch["conditions"]["entry"].append({"resource": "not a resource"})
    resp = cds_server.post(
        f"/cds-services/{svc['id']}", data.hook_request("patient-view", "junk-1", prefetch)
    )
    assert resp.status_code == 200
    assert any(c["source"]["topic"]["code"] == "iron_deficiency" for c in resp.json()["cards"])


@pytest.fixture(scope="module")
def small_limits_server(tmp_path_factory, cds_redis):
    server = start_cds_server(
        tmp_path_factory.mktemp("small-limits"),
        env={
            "REDIS_URL": cds_redis.url,
            "RLS_MAX_PREFETCH_RESOURCES": "5",
            "RLS_MAX_JSON_DEPTH": "16",
            "RLS_BODY_TIMEOUT_SECONDS": "1",
        },
    )
    yield server
    stop_process(server.process)


def test_too_many_prefetch_resources_is_413(small_limits_server):
    services = {s["hook"]: s for s in small_limits_server.get("/cds-services").json()["services"]}
    obs = [data.ferritin("many", 30, suffix=str(i)) for i in range(6)]
    body = data.hook_request("patient-view", "many", {"labs": data.searchset(obs)})
    resp = small_limits_server.post(f"/cds-services/{services['patient-view']['id']}", body)
    _assert_error(resp, 413, "too_many_resources")


def test_too_many_draft_orders_is_413(small_limits_server):
    services = {s["hook"]: s for s in small_limits_server.get("/cds-services").json()["services"]}
    drafts = [data.sertraline_order("many", status="draft", oid=f"d{i}") for i in range(6)]
    body = data.hook_request("order-sign", "many", {}, drafts=drafts)
    resp = small_limits_server.post(f"/cds-services/{services['order-sign']['id']}", body)
    _assert_error(resp, 413, "too_many_resources")


def test_configured_depth_limit(small_limits_server):
    services = {s["hook"]: s for s in small_limits_server.get("/cds-services").json()["services"]}
    body = data.hook_request("patient-view", "p1", {})
    nested: dict = {}
    for _ in range(16):  # 16 levels inside context: deeper than 16 in all
        nested = {"x": nested}
    body["context"]["a"] = nested
    resp = small_limits_server.post(f"/cds-services/{services['patient-view']['id']}", body)
    _assert_error(resp, 400, "json_too_deep")


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"feedback": []},
        {"feedback": [{"card": "x", "outcome": "maybe", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]},
        {"feedback": [{"card": "x", "outcome": "accepted", "outcomeTimestamp": "yesterday"}]},
        {"feedback": [{"outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]},
        {"feedback": "accepted"},
        {
            "feedback": [
                {"card": "x" * 1_000_000, "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}
            ]
        },
    ],
)
def test_invalid_feedback_is_400(cds_server, services, payload):
    resp = cds_server.post(f"/cds-services/{services['patient-view']['id']}/feedback", payload)
    _assert_error(resp, 400, "invalid_feedback")


def test_no_tokens_or_patient_ids_in_the_log(cds_server, services, fhir_server):
    svc = services["patient-view"]
    secret_pid = "patient-id-that-must-not-be-logged"
    body = data.hook_request(
        "patient-view", secret_pid, None, fhir_server.base_url, "token-that-must-not-be-logged"
    )
    assert cds_server.post(f"/cds-services/{svc['id']}", body).status_code == 200
    log = cds_server.log_text()
    assert "hook answered" in log
    assert secret_pid not in log
    assert "token-that-must-not-be-logged" not in log


def _read_response(conn) -> str:
    """One HTTP/1.1 response, headers and body (they may arrive in separate packets)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536) or b"\r\n\r\n"
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode(errors="replace")


def test_a_stalled_body_is_408_not_a_connection_held_for_ever(small_limits_server):
    """Headers announce 2,000 bytes, 10 arrive, then nothing: the answer is a 408 after the body timeout
    (1 s here), where the server used to wait as long as the client kept the connection open."""
    import socket
    import time
    from urllib.parse import urlsplit

    services = {s["hook"]: s for s in small_limits_server.get("/cds-services").json()["services"]}
    where = urlsplit(small_limits_server.url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as conn:
        head = (
            f"POST /cds-services/{services['patient-view']['id']} HTTP/1.1\r\nHost: {where.netloc}\r\n"
            "Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n"
        )
        started = time.monotonic()
        conn.sendall(head.encode() + b'{"hook": "p')
        answer = _read_response(conn)
        waited = time.monotonic() - started
    assert answer.startswith("HTTP/1.1 408"), answer[:200]
    assert '"error":"request_timeout"' in answer.replace(" ", "") and 0.8 < waited < 8
