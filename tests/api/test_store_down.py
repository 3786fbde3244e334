"""Redis down: hooks still answer (live evaluation), and /readyz and /metrics say the store is down."""

from __future__ import annotations

import pytest

from tests.api import data
from tests.support.cds_server import start_cds_server, start_redis
from tests.support.fhir_server import stop_process


@pytest.fixture(scope="module")
def server_losing_redis(tmp_path_factory):
    work = tmp_path_factory.mktemp("store-down")
    redis = start_redis(work / "redis")
    server = start_cds_server(work / "cds", env={"REDIS_URL": redis.url})
    yield server, redis
    stop_process(server.process)
    stop_process(redis.process)


def test_hooks_answer_when_redis_is_down(server_losing_redis):
    server, redis = server_losing_redis
    svc = next(s for s in server.get("/cds-services").json()["services"] if s["hook"] == "patient-view")
    body = data.hook_request("patient-view", "sd-1", data.full_prefetch(data.patient_record("sd-1", 30), svc))
    up = server.post(f"/cds-services/{svc['id']}", body)
    assert up.status_code == 200
    assert up.json()["cards"], "ferritin 30 with RLS must give cards"
    assert server.get("/readyz").json()["checks"]["store"] is True

    stop_process(redis.process)
    down = server.post(f"/cds-services/{svc['id']}", body)
    assert down.status_code == 200
    assert down.json()["cards"] == up.json()["cards"]
    ready = server.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["store"] is False
    metrics = server.get("/metrics").text
    assert 'rls_cds_store_errors_total{operation="suppression"}' in metrics
    assert "rls_cds_store_up 0.0" in metrics
    feedback = server.post(
        f"/cds-services/{svc['id']}/feedback",
        {"feedback": [{"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]},
    )
    assert feedback.status_code == 503 and feedback.json()["error"] == "store_unavailable"
