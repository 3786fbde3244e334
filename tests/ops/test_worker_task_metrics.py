"""Worker-side task metrics: Celery's own prerun/postrun signals record every task's outcome and
duration in a real Redis, where the API's /metrics collector reads them."""

from __future__ import annotations

import time

import pytest
import redis
from celery import Celery

from rls_cds.background import metrics
from rls_cds.background.store import Store
from tests.support.cds_server import start_redis
from tests.support.fhir_server import stop_process


@pytest.fixture
def broker(tmp_path, monkeypatch):
    server = start_redis(tmp_path / "redis")
    from rls_cds.settings import get_settings

    monkeypatch.setenv("REDIS_URL", server.url)
    get_settings.cache_clear()
    monkeypatch.setattr(metrics, "_store", None)
    yield server
    from celery import signals

    # Signals are process-wide: leave other tests' tasks unobserved.
    signals.task_prerun.disconnect(dispatch_uid="rls_cds.metrics.prerun")
    signals.task_postrun.disconnect(dispatch_uid="rls_cds.metrics.postrun")
    stop_process(server.process)
    get_settings.cache_clear()
    metrics._store = None


def test_outcomes_and_durations_are_recorded(broker):
    metrics.connect_worker_signals()
    metrics.connect_worker_signals()  # idempotent: no double counting
    app = Celery("ops-probe", broker=broker.url)

    @app.task(name="rls_cds.panels.tasks.probe")
    def probe(x):
        return x * 2

    @app.task(name="rls_cds.panels.tasks.broken_probe")
    def broken_probe():
        raise ValueError("boom")

    @app.task(name="rls_cds.background.tasks.reevaluate_patient")
    def records_itself():
        return None

    assert probe.apply(args=(2,)).get() == 4
    assert probe.apply(args=(3,)).get() == 6
    assert broken_probe.apply().failed()
    records_itself.apply()

    counts, seconds = Store(redis.Redis.from_url(broker.url)).task_stats()
    assert counts == {"probe|success": 2, "broken_probe|failure": 1}
    assert seconds["probe|success"] >= 0 and set(seconds) == set(counts)

    registry_text = _scrape(broker.url)
    assert 'rls_cds_tasks_total{outcome="success",task="probe"} 2.0' in registry_text


def _scrape(url: str) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    metrics.register_background_metrics(registry, Store(redis.Redis.from_url(url)))
    return generate_latest(registry).decode()


@pytest.mark.slow
def test_a_real_worker_records_its_tasks(tmp_path, celery_workers):
    """`rls-cds worker` (celery_app wires the signals): a task it runs shows up in /metrics' data."""
    from tests.support.celery_workers import client_app

    server = start_redis(tmp_path / "redis")
    try:
        celery_workers.start(server.url)
        result = client_app(server.url).send_task(
            "rls_cds.background.tasks.reevaluate_focus",
            args=["ops-tenant", "http://127.0.0.1:9/fhir", "not a reference", "ops-test"],
            queue="hooks",
            routing_key="hooks",
        )
        result.get(timeout=30)
        store = Store(redis.Redis.from_url(server.url))
        end = time.monotonic() + 5  # postrun fires just after the result is stored
        while not store.task_stats()[0] and time.monotonic() < end:
            time.sleep(0.05)
        counts, _ = store.task_stats()
        assert counts.get("reevaluate_focus|success") == 1, counts
    finally:
        stop_process(server.process)
