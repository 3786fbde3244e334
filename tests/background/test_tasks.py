"""reevaluate_patient with real `rls-cds worker` processes, real Redis and the real sekmet-fhir server
(SMART Backend Services tokens): lands in the store, idempotent, concurrent-safe, retried, dead-lettered,
redelivered after SIGKILL, survives a Redis restart."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest
import redis
import yaml

from tests.background.conftest import TASK, causes, wait_for, worker_env
from tests.support.celery_workers import client_app
from tests.support.redis_server import start_redis
from tests.support.scripted_http import ScriptedHandler, serving

pytestmark = pytest.mark.slow


def _send(broker_url, tenant, server, patient, reason="manual"):
    return client_app(broker_url).send_task(TASK, args=[tenant, server, patient, reason], queue="hooks")


def test_reevaluation_lands_in_store_and_rerun_is_idempotent(
    broker_url, store, tenant, celery_workers, fhir_server, servers_file, bg_patients
):
    worker = celery_workers.start(broker_url, env=worker_env(servers_file))
    pid = bg_patients["low_iron_ssri"]
    first = _send(broker_url, tenant, fhir_server.base_url, pid).get(timeout=60)
    assert first["outcome"] == "stored", first
    record = store.get_assessment(tenant, pid)
    assert {"iron_deficiency", "drug_induced"} <= causes(record)
    assert record["cards"] and record["table_version"] and record["fingerprint"]
    assert record["changes"]["resolved"] == [] and "iron_deficiency" in record["changes"]["new"]
    assert record["resource_count"] >= 4  # Patient, Condition, Observation, MedicationRequest

    again = _send(broker_url, tenant, fhir_server.base_url, pid).get(timeout=60)
    assert again["outcome"] == "unchanged"
    after = store.get_assessment(tenant, pid)
    assert after["revision"] == 1 and after["changes"] == record["changes"]
    assert after["computed_at"] >= record["computed_at"]
    assert pid not in worker.log_text(), "the worker log never names the patient"


def test_two_workers_on_one_patient_leave_one_consistent_assessment(
    broker_url, store, tenant, celery_workers, fhir_server, servers_file, bg_patients
):
    env = worker_env(servers_file)
    celery_workers.start(broker_url, env=env)
    celery_workers.start(broker_url, env=env)
    pid = bg_patients["low_iron_ssri"]
    results = [_send(broker_url, tenant, fhir_server.base_url, pid) for _ in range(8)]
    outcomes = [r.get(timeout=90)["outcome"] for r in results]
    assert outcomes.count("stored") == 1, outcomes
    assert set(outcomes) <= {"stored", "unchanged"}, outcomes
    record = store.get_assessment(tenant, pid)
    assert record["revision"] == 1 and {"iron_deficiency", "drug_induced"} <= causes(record)
    assert len(store.redis.keys(f"rls:t:{tenant}:asmt:*")) == 1
    assert not store.redis.keys(f"rls:t:{tenant}:lock:*"), "locks are released"


def test_fhir_500_then_200_is_retried_and_completes(
    broker_url, store, tenant, celery_workers, fault_proxy, servers_file, bg_patients
):
    worker = celery_workers.start(broker_url, env=worker_env(servers_file))
    fault_proxy.set_mode("500")
    seen = fault_proxy.requests_seen
    result = _send(broker_url, tenant, fault_proxy.base_url, bg_patients["low_iron_ssri"])
    assert wait_for(lambda: fault_proxy.requests_seen > seen, 20), "the task never reached the FHIR server"
    time.sleep(0.3)
    fault_proxy.set_mode("pass")
    assert result.get(timeout=60)["outcome"] == "stored"
    counts, _ = store.task_stats()
    assert counts.get("reevaluate_patient|retry", 0) >= 1
    assert "Retry in" in worker.log_text()
    assert store.dead_letters(tenant) == []


def test_poison_task_ends_in_dead_letter_with_reason(
    broker_url, store, tenant, celery_workers, fault_proxy, servers_file, bg_patients, fhir_server
):
    celery_workers.start(broker_url, env=worker_env(servers_file, RLS_TASK_MAX_RETRIES="2"))
    fault_proxy.set_mode("500")
    answer = _send(broker_url, tenant, fault_proxy.base_url, bg_patients["low_iron_ssri"]).get(timeout=60)
    assert answer["outcome"] == "dead_letter"
    letters = store.dead_letters(tenant)
    assert len(letters) == 1
    assert letters[0]["reason"] == "fhir_http_500 (gave up)" and letters[0]["retries"] == 2
    assert bg_patients["low_iron_ssri"] not in str(letters), "dead letters name patients by digest only"
    # An unknown patient cannot succeed by retrying: dead-lettered at once.
    fault_proxy.set_mode("pass")
    gone = _send(broker_url, tenant, fhir_server.base_url, "no-such-patient-x").get(timeout=60)
    assert gone == {"outcome": "dead_letter", "reason": "patient_not_found"}
    # A malformed server URL (urlsplit raises ValueError) is a permanent failure, not a crash.
    bad = _send(broker_url, tenant, "http://[::1/fhir", "p1").get(timeout=60)
    assert bad == {"outcome": "dead_letter", "reason": "invalid_fhir_server"}
    time.sleep(0.5)
    assert store.redis.llen("hooks") == 0 and store.redis.hlen("unacked") == 0, "nothing loops"


def test_task_that_keeps_losing_its_worker_is_dead_lettered(
    broker_url, store, tenant, celery_workers, fhir_server, servers_file, bg_patients
):
    """A task redelivered again and again (each delivery killed its worker, so late acks requeue it
    forever) is stopped by its delivery count. The count of earlier lost deliveries is preset here."""
    celery_workers.start(broker_url, env=worker_env(servers_file))
    task_id = f"poison-{tenant}"
    store.redis.set(f"rls:deliveries:{task_id}", 4)  # four deliveries already lost with their workers
    app = client_app(broker_url)
    args = [tenant, fhir_server.base_url, bg_patients["low_iron_ssri"], "manual"]
    answer = app.send_task(TASK, args=args, queue="hooks", task_id=task_id).get(timeout=60)
    assert answer == {"outcome": "dead_letter", "reason": "delivered 5 times (the worker was lost each time)"}
    assert store.dead_letters(tenant)[0]["task_id"] == task_id
    assert store.get_assessment(tenant, bg_patients["low_iron_ssri"]) is None


def test_worker_killed_mid_task_has_it_redelivered(
    broker_url, store, tenant, celery_workers, fault_proxy, servers_file, bg_patients
):
    env = worker_env(servers_file, RLS_TASK_VISIBILITY_TIMEOUT_SECONDS="2")
    first = celery_workers.start(broker_url, env=env)
    fault_proxy.set_mode("hang")
    seen = fault_proxy.requests_seen
    result = _send(broker_url, tenant, fault_proxy.base_url, bg_patients["low_iron_ssri"])
    assert wait_for(lambda: fault_proxy.requests_seen > seen, 20), "the task never started"
    first.kill()  # SIGKILL, worker and pool: the task is unacknowledged
    assert store.redis.hlen("unacked") == 1
    fault_proxy.set_mode("pass")
    celery_workers.start(broker_url, env=env)
    answer = result.get(timeout=60)
    assert answer["outcome"] == "stored", (answer, store.dead_letters(tenant))
    assert {"iron_deficiency", "drug_induced"} <= causes(
        store.get_assessment(tenant, bg_patients["low_iron_ssri"])
    )
    assert wait_for(lambda: store.redis.hlen("unacked") == 0, 10)


def test_redis_restart_worker_reconnects_and_pending_tasks_complete(
    tmp_path, tenant, celery_workers, fhir_server, servers_file, bg_patients
):
    own = start_redis(tmp_path / "redis")
    try:
        celery_workers.start(own.url, env=worker_env(servers_file))
        own.restart()  # Redis gone and back (empty): the worker must reconnect by itself
        results = [
            _send(own.url, tenant, fhir_server.base_url, pid) for pid in bg_patients.values()
        ]  # queued while the worker may still be reconnecting
        assert [r.get(timeout=90)["outcome"] for r in results] == ["stored", "stored"]
        check = redis.Redis.from_url(own.url)
        assert len(check.keys(f"rls:t:{tenant}:asmt:*")) == 2
    finally:
        own.stop()


@contextmanager
def _fhir_answering(body: dict):
    """A loopback 'FHIR server' that answers every GET with ``body``."""

    class Handler(ScriptedHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self._json(body)

    with serving(Handler) as base:
        yield base


@pytest.mark.parametrize(
    "bundle",
    [
        {"resourceType": "Bundle", "type": "searchset", "entry": 5},
        {"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "next", "url": 5}]},
    ],
)
def test_a_malformed_fhir_answer_is_dead_lettered_with_its_reason(
    broker_url, store, celery_workers, tmp_path, bundle
):
    """A FHIR server answering a Bundle whose 'entry' is not a list (or whose next link is no URL) raised
    TypeError outside every handled failure: the task just failed (acknowledged) and no dead letter
    said why. Now the read fails by name and the patient is dead-lettered with that reason."""
    with _fhir_answering(bundle) as base:
        servers = tmp_path / "fhir-servers.yaml"
        servers.write_text(yaml.safe_dump({"servers": {base: {}}}))  # tenant 'default', no credentials
        celery_workers.start(broker_url, env=worker_env(servers))
        answer = _send(broker_url, "default", base, "p-odd").get(timeout=60, propagate=False)
    assert answer == {"outcome": "dead_letter", "reason": "fhir_invalid_bundle"}, answer
    letters = store.dead_letters("default")
    assert [x["reason"] for x in letters] == ["fhir_invalid_bundle"]


def test_a_focus_read_cut_by_the_time_limit_is_retried_like_a_patient_read(
    broker_url, store, celery_workers, tmp_path
):
    """A FHIR server slower than the task's soft time limit: the focus task retried, as the patient
    task does, and only then dead-lettered 'gave up' (it was an 'unexpected_error' at once)."""
    import time

    class Slow(ScriptedHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            time.sleep(6)
            self._json({"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1"}})

    with serving(Slow) as base:
        servers = tmp_path / "fhir-servers.yaml"
        servers.write_text(yaml.safe_dump({"servers": {base: {}}}))
        env = worker_env(servers, RLS_TASK_TIME_LIMIT_SECONDS="5", RLS_TASK_MAX_RETRIES="1")
        celery_workers.start(broker_url, env=env)
        focus = "rls_cds.background.tasks.reevaluate_focus"
        args = ["default", base, "Observation/o1", "subscription"]
        result = client_app(broker_url).send_task(focus, args=args, queue="hooks")
        answer = result.get(timeout=60, propagate=False)
    assert answer == {"outcome": "dead_letter", "reason": "SoftTimeLimitExceeded"}, answer
    assert [x["reason"] for x in store.dead_letters("default")] == ["SoftTimeLimitExceeded (gave up)"]
