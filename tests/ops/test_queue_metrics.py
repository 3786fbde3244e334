"""Worker/queue metrics on the API's /metrics: real Redis, real Celery messages, real `rls-cds serve`."""

from __future__ import annotations

import re
import time

import pytest
import redis
from celery import Celery

from rls_cds.background.store import Store
from tests.support.cds_server import start_cds_server, start_redis
from tests.support.fhir_server import stop_process

pytestmark = pytest.mark.slow


def _value(text: str, series: str) -> float | None:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def test_queue_lengths_task_outcomes_and_broker_down(tmp_path):
    broker = start_redis(tmp_path / "redis")
    server = start_cds_server(tmp_path / "serve", env={"REDIS_URL": broker.url})
    try:
        # Three real Celery messages wait in `batch`, one in `hooks` (no worker consumes them).
        sender = Celery("sender", broker=broker.url)
        for i in range(3):
            sender.send_task("rls_cds.panels.tasks.noop", args=[i], queue="batch", routing_key="batch")
        sender.send_task("rls_cds.background.tasks.noop", args=[0], queue="hooks", routing_key="hooks")
        # Outcomes as workers record them (the store's own API).
        store = Store(redis.Redis.from_url(broker.url))
        store.record_task("reevaluate_patient", "success", 0.25)
        store.record_task("reevaluate_patient", "success", 0.5)
        store.record_task("reevaluate_patient", "dead_letter", 1.0)

        text = server.get("/metrics").text
        assert _value(text, "rls_cds_queue_up") == 1
        assert _value(text, 'rls_cds_queue_length{queue="batch"}') == 3
        assert _value(text, 'rls_cds_queue_length{queue="hooks"}') == 1
        assert _value(text, 'rls_cds_tasks_total{outcome="success",task="reevaluate_patient"}') == 2
        assert _value(text, 'rls_cds_tasks_total{outcome="dead_letter",task="reevaluate_patient"}') == 1
        assert _value(text, 'rls_cds_task_seconds_total{outcome="success",task="reevaluate_patient"}') == 0.75
        assert _value(text, "rls_cds_tasks_unacked") == 0

        # Broker gone: the scrape still answers, quickly, and says so.
        stop_process(broker.process)
        start = time.monotonic()
        resp = server.get("/metrics")
        assert resp.status_code == 200
        assert time.monotonic() - start < 3
        assert _value(resp.text, "rls_cds_queue_up") == 0
        assert "rls_cds_queue_length" not in resp.text
        assert "rls_cds_hook_latency_seconds" in resp.text  # the API's own metrics are untouched
    finally:
        stop_process(server.process)
        stop_process(broker.process)
