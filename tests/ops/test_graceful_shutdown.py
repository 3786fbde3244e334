"""SIGTERM to a real `rls-cds serve`: in-flight hooks finish with 200, new connections are refused,
the process exits 0 and leaves no child (embedded Redis, embedded worker) behind."""

from __future__ import annotations

import signal
import threading
import time
import uuid

import psutil
import pytest
import requests

from tests.support.cds_server import start_cds_server, start_redis
from tests.support.fhir_server import stop_process

pytestmark = pytest.mark.slow

FHIR_DELAY = 2.0  # the FHIR server (through the fault proxy) answers this late


def _slow_hook_body(fhir_base: str, token: str) -> dict:
    """patient-view with no prefetch: the service must fetch everything through the slow proxy."""
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir_base,
        "fhirAuthorization": {
            "access_token": token,
            "token_type": "Bearer",
            "scope": "patient/*.read",
            "subject": "rls-cds",
        },
        "context": {"patientId": f"drain-{uuid.uuid4().hex[:8]}", "userId": "Practitioner/example"},
    }


def _post_in_background(url: str, body: dict) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run() -> None:
        start = time.monotonic()
        try:
            resp = requests.post(url, json=body, timeout=30)
            result["status"], result["body"] = resp.status_code, resp.json()
        except requests.RequestException as exc:  # recorded, asserted on by the test
            result["error"] = repr(exc)
        result["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _deadline_env() -> dict:
    # A hook deadline well above the FHIR delay, so the answer really waits for the slow fetch.
    return {"RLS_HOOK_DEADLINE_SECONDS": "8", "RLS_FHIR_REQUEST_TIMEOUT_SECONDS": "6"}


@pytest.mark.parametrize("api_workers", ["1", "2"])
def test_sigterm_drains_the_in_flight_hook_and_exits_zero(tmp_path, fhir_server, fault_proxy, api_workers):
    redis = start_redis(tmp_path / "redis")
    env = {"REDIS_URL": redis.url, "RLS_API_WORKERS": api_workers, **_deadline_env()}
    server = start_cds_server(tmp_path / "serve", env=env)
    try:
        fault_proxy.set_mode("delay", FHIR_DELAY)
        seen = fault_proxy.requests_seen
        body = _slow_hook_body(fault_proxy.base_url, fhir_server.token)
        thread, result = _post_in_background(f"{server.url}/cds-services/rls-workup", body)
        # The hook is inside the service, waiting on the FHIR server: now stop the service.
        assert _wait_for(lambda: fault_proxy.requests_seen > seen, 10), "hook never reached FHIR"
        sent = time.monotonic()
        server.process.send_signal(signal.SIGTERM)

        if api_workers == "1":  # with several workers the supervisor keeps the socket until all exit
            time.sleep(0.5)
            with pytest.raises(requests.ConnectionError):  # no new work accepted while draining
                requests.get(f"{server.url}/healthz", timeout=2)

        thread.join(30)
        assert result.get("status") == 200, result
        assert isinstance(result["body"]["cards"], list)
        assert result["elapsed"] >= FHIR_DELAY * 0.9  # it really waited for the slow FHIR answer
        assert server.process.wait(timeout=20) == 0
        assert time.monotonic() - sent < 15
        log = server.log_text()
        assert "Traceback" not in log
        assert "hook answered" in log
    finally:
        stop_process(server.process)
        stop_process(redis.process)


def test_sigterm_in_embedded_mode_stops_the_embedded_children(tmp_path):
    server = start_cds_server(tmp_path / "serve", env={"RLS_EMBEDDED_WORKER": "true"})
    try:
        parent = psutil.Process(server.process.pid)
        children = parent.children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "redis-server" in names, "embedded mode runs its own Redis server"
        assert "worker" in names, "and a Celery worker beside the API"
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, [" ".join(p.cmdline()) for p in alive]
    finally:
        stop_process(server.process)
