"""Optional OpenTelemetry tracing: spans reach a real OTLP/HTTP receiver on loopback, follow the caller's
traceparent, name routes by template, and carry no patient id; when off (the default), nothing is exported."""

from __future__ import annotations

import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.support.cds_server import start_cds_server
from tests.support.fhir_server import free_port, stop_process

pytestmark = pytest.mark.slow

SECRET_PATIENT = "otel-patient-Q7x9Z"


class OtlpReceiver:
    """Accepts OTLP/HTTP protobuf trace exports (POST /v1/traces) and keeps the raw bodies."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/v1/traces":
                    receiver.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        out = []
        for body in self.bodies:
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    out.extend((resource_spans.resource, span) for span in scope_spans.spans)
        return out

    def stop(self) -> None:
        self.server.shutdown()


def _attrs(span) -> dict:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = value.string_value or value.int_value
    return out


def test_spans_are_exported_without_patient_ids(tmp_path):
    receiver = OtlpReceiver()
    server = start_cds_server(
        tmp_path / "serve",
        env={
            "RLS_EMBEDDED_WORKER": "false",
            "RLS_OTEL_ENABLED": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "rls-cds-test",
        },
    )
    try:
        trace_id = uuid.uuid4().hex
        headers = {"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"}
        body = {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": {"patientId": SECRET_PATIENT, "userId": "Practitioner/x"},
            "prefetch": {"patient": {"resourceType": "Patient", "id": SECRET_PATIENT}},
        }
        resp = requests.post(f"{server.url}/cds-services/rls-workup", json=body, headers=headers, timeout=10)
        assert resp.status_code == 200
        # A path that itself carries the id: only the route template may be exported.
        assert (
            requests.post(f"{server.url}/cds-services/{SECRET_PATIENT}", json=body, timeout=10).status_code
            == 404
        )

        def hook_spans() -> list:
            return [s for _, s in receiver.spans() if s.name == "POST /cds-services/{service_id}"]

        end = time.monotonic() + 15
        while time.monotonic() < end and len(hook_spans()) < 2:
            time.sleep(0.1)
        spans = receiver.spans()
        hook = hook_spans()
        assert len(hook) >= 2, [s.name for _, s in spans]
        followed = [s for s in hook if s.trace_id.hex() == trace_id]
        assert followed, "the caller's traceparent was not honoured"
        assert _attrs(followed[0])["http.response.status_code"] == 200
        assert {_attrs(s)["http.response.status_code"] for s in hook} == {200, 404}
        resource = {kv.key: kv.value.string_value for kv in spans[0][0].attributes}
        assert resource["service.name"] == "rls-cds-test"
        leaks = [(s.name, _attrs(s)) for _, s in spans if SECRET_PATIENT.encode() in s.SerializeToString()]
        assert not leaks, leaks
        assert all(SECRET_PATIENT.encode() not in b for b in receiver.bodies)
    finally:
        stop_process(server.process)
        receiver.stop()


def test_off_by_default_nothing_is_exported(tmp_path):
    """OTEL_* variables alone (set for some other program, say) never make rls-cds export anything."""
    receiver = OtlpReceiver()
    server = start_cds_server(
        tmp_path / "serve",
        env={
            "RLS_EMBEDDED_WORKER": "false",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    )
    try:
        body = {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": {"patientId": SECRET_PATIENT, "userId": "Practitioner/x"},
        }
        assert (
            requests.post(f"{server.url}/cds-services/rls-workup", json=body, timeout=10).status_code == 200
        )
        time.sleep(1.5)
        assert receiver.bodies == []
    finally:
        stop_process(server.process)
        receiver.stop()


def test_switched_on_without_the_extra_refuses_to_start(tmp_path):
    """RLS_OTEL_ENABLED=true where OpenTelemetry is not installed: a clear message, exit 2, no traceback."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['opentelemetry.sdk.trace'] = None; "  # as if the extra were not installed
        "from rls_cds.cli import main; sys.exit(main(['serve', '--dev', '--port', '9']))"
    )
    env = {"PATH": "/usr/bin", "RLS_OTEL_ENABLED": "true", "RLS_EMBEDDED_REDIS_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2
    assert "rls-cds[tracing]" in out.stderr and "RLS_OTEL_ENABLED" in out.stderr
    assert "Traceback" not in out.stderr
