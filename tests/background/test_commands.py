"""`rls-cds reevaluate` and `rls-cds beat` as real processes against a real Redis (and workers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.background.conftest import TASK, wait_for, worker_env
from tests.support.celery_workers import RLS_CDS_BIN, client_app

pytestmark = pytest.mark.slow


def _env(broker_url: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"}
    return {**base, "REDIS_URL": broker_url, **extra}


def test_reevaluate_command_waits_for_the_stored_result(
    broker_url, store, tenant, celery_workers, fhir_server, servers_file, bg_patients
):
    celery_workers.start(broker_url, env=worker_env(servers_file))
    pid = bg_patients["no_labs"]
    cmd = [
        str(RLS_CDS_BIN),
        "reevaluate",
        pid,
        "--fhir-server",
        fhir_server.base_url,
        "--tenant",
        tenant,
        "--wait",
    ]
    proc = subprocess.run(cmd, env=_env(broker_url), capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["result"]["outcome"] == "stored" and pid not in proc.stdout  # digest, not the id
    assert "iron_studies_missing" in {f["cause"] for f in store.get_assessment(tenant, pid)["findings"]}

    # Without --tenant: the tenant background work files this server under (the servers file says
    # 'dev', the development caller's), so the hooks find the result; the output names it.
    cmd = [str(RLS_CDS_BIN), "reevaluate", pid, "--fhir-server", fhir_server.base_url, "--wait"]
    env = _env(broker_url, RLS_FHIR_SERVERS_FILE=str(servers_file))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tenant"] == "dev" and store.get_assessment("dev", pid) is not None

    bad = subprocess.run(
        [str(RLS_CDS_BIN), "reevaluate", "not an id", "--fhir-server", fhir_server.base_url],
        env=_env(broker_url),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "FHIR id" in bad.stderr


def test_beat_starts_and_stops_cleanly(broker_url, tmp_path):
    schedule = tmp_path / "beat" / "schedule"
    log = tmp_path / "beat.log"
    with log.open("wb") as f:
        proc = subprocess.Popen(
            [str(RLS_CDS_BIN), "beat"],
            env=_env(broker_url, RLS_BEAT_SCHEDULE_FILE=str(schedule)),
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    try:
        # Up means: announced, and its schedule state opened (a SIGTERM before that races the set-up).
        def up() -> bool:
            return (
                "beat: Starting" in log.read_text()
                and schedule.parent.exists()
                and any(schedule.parent.iterdir())
            )

        end = time.monotonic() + 20
        while not up() and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.1)
        assert up(), log.read_text()[-2000:]
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()[-2000:]
    assert list(schedule.parent.iterdir()), "beat keeps its schedule state where configured"


def test_queued_message_names_the_patient_by_digest_only_in_argsrepr(broker_url, tenant):
    """What Celery logs and Flower show (argsrepr) carries the salted digest, never the patient id."""
    import redis

    from rls_cds.api.suppression import patient_key

    code = (
        "from rls_cds.background.triggers import enqueue_reevaluation as e;"
        f"print(e({tenant!r}, 'http://fhir.example/r4', 'secret-pid-1', 'test').queued)"
    )
    proc = subprocess.run(
        [str(RLS_CDS_BIN.parent / "python"), "-c", code],
        env=_env(broker_url),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.stdout.strip() == "True", proc.stderr
    raw = redis.Redis.from_url(broker_url).lrange("hooks", 0, -1)
    assert len(raw) == 1
    message = json.loads(raw[0])
    assert patient_key(tenant, "secret-pid-1") in message["headers"]["argsrepr"]
    assert "secret-pid-1" not in message["headers"]["argsrepr"]


def test_dead_lettered_patients_are_queued_again_once_the_server_is_back(
    broker_url, store, tenant, celery_workers, fault_proxy, servers_file, bg_patients
):
    # The operator API lists dead letters by digest only, so there was no way to re-queue them.
    celery_workers.start(broker_url, env=worker_env(servers_file, RLS_TASK_MAX_RETRIES="0"))
    pid = bg_patients["low_iron_ssri"]
    fault_proxy.set_mode("500")
    for _ in range(2):  # twice: one patient, two entries
        failed = client_app(broker_url).send_task(
            TASK, args=[tenant, fault_proxy.base_url, pid, "manual"], queue="hooks"
        )
        assert failed.get(timeout=60)["outcome"] == "dead_letter"
    store.dead_letter(tenant, {"task": "reevaluate_focus", "reason": "no patient to queue"})
    assert pid not in json.dumps(store.dead_letters(tenant))  # what the operator API shows
    fault_proxy.set_mode("pass")

    proc = subprocess.run(
        [str(RLS_CDS_BIN), "reevaluate", "--dead-letters", "--tenant", tenant],
        env=_env(broker_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"tenant": tenant, "requeued": 1, "kept": 1}  # queued once
    assert pid not in proc.stdout + proc.stderr
    wait_for(lambda: store.get_assessment(tenant, pid) is not None, timeout=60)
    assert [e["reason"] for e in store.dead_letters(tenant)] == ["no patient to queue"]  # kept, not lost
