"""`rls-cds reevaluate` and `rls-cds beat` as real processes against a real Redis (and workers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.background.conftest import worker_env
from tests.support.celery_workers import RLS_CDS_BIN

pytestmark = pytest.mark.slow


def _env(broker_url: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"}
    return {**base, "REDIS_URL": broker_url, **extra}


def test_reevaluate_command_waits_for_the_stored_result(
    broker_url, store, tenant, celery_workers, fhir_server, servers_file, bg_patients
):
    celery_workers.start(broker_url, env=worker_env(servers_file))
    pid = bg_patients["rls_only"]
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
        end = time.monotonic() + 20
        while "beat: Starting" not in log.read_text() and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.1)
        assert "beat: Starting" in log.read_text(), log.read_text()[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()[-2000:]
    assert list(schedule.parent.iterdir()), "beat keeps its schedule state where configured"
