"""SIGTERM to a real `rls-cds worker` mid-task: warm shutdown finishes the task, acknowledges it and
exits 0; nothing is left queued or unacknowledged to run a second time."""

from __future__ import annotations

import json
import signal
import time

import pytest
import redis

from tests.support.cds_server import start_redis
from tests.support.celery_workers import client_app
from tests.support.fhir_server import stop_process, transaction

pytestmark = pytest.mark.slow

FHIR_DELAY = 1.5
PATIENT = "ops-warm-shutdown-1"


def test_sigterm_lets_the_running_task_finish(tmp_path, fhir_server, fault_proxy, celery_workers):
    broker = start_redis(tmp_path / "redis")
    try:
        servers = fhir_server.write_fhir_servers_file(
            tmp_path / "fhir-servers.yaml", base=fault_proxy.base_url, token_url=fhir_server.token_url
        )
        fhir_server.load_bundle(transaction([{"resourceType": "Patient", "id": PATIENT}]))
        worker = celery_workers.start(broker.url, env={"RLS_FHIR_SERVERS_FILE": str(servers)})
        fault_proxy.set_mode("delay", FHIR_DELAY)
        seen = fault_proxy.requests_seen
        app = client_app(broker.url)
        result = app.send_task(
            "rls_cds.background.tasks.reevaluate_patient",
            args=["ops-tenant", fault_proxy.base_url, PATIENT, "manual"],
            queue="hooks",
            routing_key="hooks",
        )
        end = time.monotonic() + 20
        while fault_proxy.requests_seen == seen and time.monotonic() < end:
            time.sleep(0.02)
        assert fault_proxy.requests_seen > seen, "the task never reached the FHIR server"
        sent = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)  # warm shutdown while the task waits on FHIR

        assert worker.process.wait(timeout=60) == 0
        assert time.monotonic() - sent >= FHIR_DELAY * 0.5  # it waited for the task, not cut it off
        answer = result.get(timeout=10)
        assert answer["outcome"] != "dead_letter", answer  # it completed its real work
        assert result.state == "SUCCESS"
        client = redis.Redis.from_url(broker.url)
        assert client.llen("hooks") == 0  # not requeued: no second run after restart
        assert client.hlen("unacked") == 0  # acknowledged
        log = worker.log_text()
        assert "Traceback" not in log
        # One JSON object a line: Celery's banner and its superuser SecurityWarning were plain text.
        lines = [line for line in log.splitlines() if line.strip()]
        plain = [line for line in lines if not line.startswith("{")]
        assert not plain, plain[:5]
        records = [json.loads(line) for line in lines]
        starting = next(r for r in records if r["msg"] == "worker starting")
        assert starting["queues"] == ["hooks", "batch"] and starting["node"] == worker.name
        assert starting["broker"].startswith("redis://127.0.0.1:")
    finally:
        stop_process(broker.process)


def test_beat_stops_cleanly_on_sigterm(tmp_path):
    """Also when the signal lands while beat is still starting (it used to exit 1 about one time in
    three then: SystemExit inside one of its lazy imports), so each of several starts is cut short."""
    import os
    import subprocess

    from tests.support.cds_server import RLS_CDS_BIN

    broker = start_redis(tmp_path / "redis")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"}
    env.update(REDIS_URL=broker.url, RLS_BEAT_SCHEDULE_FILE=str(tmp_path / "beat" / "schedule"))
    try:
        for attempt in range(4):
            log_path = tmp_path / f"beat-{attempt}.log"
            with log_path.open("wb") as log:
                beat = subprocess.Popen(
                    [str(RLS_CDS_BIN), "beat"], env=env, stdout=log, stderr=subprocess.STDOUT
                )
            try:
                end = time.monotonic() + 30
                while b"beat: Starting" not in log_path.read_bytes() and time.monotonic() < end:
                    assert beat.poll() is None, log_path.read_text()
                    time.sleep(0.02)
                beat.send_signal(signal.SIGTERM)
                assert beat.wait(timeout=20) == 0, log_path.read_text()[-3000:]
            finally:
                stop_process(beat)
        assert (tmp_path / "beat").is_dir()  # schedule state kept where RLS_BEAT_SCHEDULE_FILE says
    finally:
        stop_process(broker.process)
