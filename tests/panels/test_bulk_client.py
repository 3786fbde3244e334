"""The Bulk Data client against a loopback server that misbehaves the way production servers do
(sekmet never answers 429 or fails one download then recovers, so these are scripted here): 429 with
Retry-After at kick-off, 202 + Retry-After while running, a download failing once (retried) and one
failing always (reported), error files, the token only where the manifest requires it, DELETE."""

from __future__ import annotations

import json
import threading
import time
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from rls_cds.fhir import bulk
from tests.support.fhir_server import free_port
from tests.support.scripted_http import ScriptedHandler


class Script:
    def __init__(self, requires_token: bool = True):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.requires_token = requires_token
        self.seen: list[tuple[str, str, dict]] = []
        self.kickoffs = self.polls = self.flaky = 0


def _handler(script: Script):
    class Handler(ScriptedHandler):
        def do_DELETE(self):
            script.seen.append(("DELETE", self.path, dict(self.headers)))
            self._send(202)

        def do_GET(self):
            script.seen.append(("GET", self.path, dict(self.headers)))
            path = urlsplit(self.path).path
            if path.endswith("/$export"):
                script.kickoffs += 1
                if script.kickoffs == 1:
                    return self._send(429, b"{}", {"Retry-After": "0.2"})
                return self._send(202, b"", {"Content-Location": f"{script.base}/status/1"})
            if path.endswith("/status/1"):
                script.polls += 1
                if script.polls < 3:
                    return self._send(202, b"", {"Retry-After": "0.1", "X-Progress": "busy"})
                manifest = {
                    "transactionTime": "2026-11-25T00:00:00Z",
                    "requiresAccessToken": script.requires_token,
                    "output": [
                        {"type": "Patient", "url": f"{script.base}/files/Patient.ndjson"},
                        {"type": "Observation", "url": f"{script.base}/files/flaky.ndjson"},
                        {"type": "Condition", "url": f"{script.base}/files/broken.ndjson"},
                    ],
                    "error": [{"type": "OperationOutcome", "url": f"{script.base}/files/errors.ndjson"}],
                }
                return self._send(200, json.dumps(manifest).encode(), {"Content-Type": "application/json"})
            if path.endswith("/files/Patient.ndjson"):
                return self._send(
                    200, b'{"resourceType":"Patient","id":"a"}\n{"resourceType":"Patient","id":"b"}\n'
                )
            if path.endswith("/files/flaky.ndjson"):
                script.flaky += 1
                if script.flaky == 1:
                    return self._send(503, b"", {"Retry-After": "0.1"})
                return self._send(200, b'{"resourceType":"Observation","id":"o"}\n')
            if path.endswith("/files/broken.ndjson"):
                return self._send(500)
            if path.endswith("/files/errors.ndjson"):
                issue = {"severity": "error", "code": "processing", "diagnostics": "Observation skipped"}
                oo = {"resourceType": "OperationOutcome", "issue": [issue]}
                return self._send(200, json.dumps(oo).encode() + b"\n")
            return self._send(404)

    return Handler


@pytest.fixture
def scripted(request):
    script = Script(**getattr(request, "param", {}))
    server = ThreadingHTTPServer(("127.0.0.1", script.port), _handler(script))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield script
    server.shutdown()


def _session() -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = "Bearer test-token"  # stands in for session_for()'s SMART auth
    return s


def test_kickoff_polling_downloads_errors_and_delete(scripted):
    s = _session()
    t0 = time.monotonic()
    status = bulk.kickoff(s, scripted.base, "g1", since="2026-11-01T00:00:00Z")
    manifest = bulk.wait_for_manifest(s, status, time.monotonic() + 30)
    assert time.monotonic() - t0 >= 0.4  # waited as told: 0.2 s after the 429, 2 x 0.1 s while running
    _, path, headers = scripted.seen[1]
    query = parse_qs(urlsplit(path).query)
    assert headers["Prefer"] == "respond-async" and path.split("?")[0] == "/fhir/Group/g1/$export"
    assert query["_type"] == ["Patient,Condition,Observation,MedicationRequest,Medication"]
    assert query["_since"] == ["2026-11-01T00:00:00Z"]
    assert [f["type"] for f in manifest.output] == ["Patient", "Observation", "Condition"]
    patient = b"".join(bulk.download(s, manifest.output[0]["url"], manifest.requires_access_token))
    assert patient.count(b"\n") == 2
    flaky = b"".join(bulk.download(s, manifest.output[1]["url"], True, attempts=3, sleep=lambda _s: None))
    assert flaky.startswith(b'{"resourceType":"Observation"') and scripted.flaky == 2  # retried once
    with pytest.raises(bulk.BulkError) as err:
        b"".join(bulk.download(s, manifest.output[2]["url"], True, attempts=2, sleep=lambda _s: None))
    assert err.value.reason == "download failed: HTTP 500" and "http" not in err.value.reason.split(":")[0]
    assert bulk.read_error_files(s, manifest) == [
        {"type": "OperationOutcome", "code": "processing", "diagnostics": "Observation skipped"}
    ]
    assert bulk.delete_export(s, status)
    assert scripted.seen[-1][:2] == ("DELETE", "/fhir/status/1")
    files = [h for m, p, h in scripted.seen if "/files/" in p]
    assert all(h.get("Authorization") == "Bearer test-token" for h in files)


@pytest.mark.parametrize("scripted", [{"requires_token": False}], indirect=True)
def test_token_not_sent_for_files_that_do_not_require_it(scripted):
    s = _session()
    manifest = bulk.wait_for_manifest(s, bulk.kickoff(s, scripted.base, "g1", sleep=lambda _s: None),
                                      time.monotonic() + 30, sleep=lambda _s: None)  # fmt: skip
    assert manifest.requires_access_token is False
    b"".join(bulk.download(s, manifest.output[0]["url"], manifest.requires_access_token))
    file_get = [h for m, p, h in scripted.seen if p.endswith("Patient.ndjson")][0]
    assert "Authorization" not in file_get


def test_export_that_never_finishes_times_out(scripted):
    s = _session()
    status = bulk.kickoff(s, scripted.base, "g1", sleep=lambda _s: None)
    scripted.polls = -(10**6)  # keeps answering 202
    with pytest.raises(bulk.BulkError, match="did not complete"):
        bulk.wait_for_manifest(s, status, time.monotonic() + 0.5)
