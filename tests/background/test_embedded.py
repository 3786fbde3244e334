"""Embedded mode: `rls-cds serve --dev` with no REDIS_URL starts its own Redis server and a worker,
and a patient gets re-evaluated with nothing else installed or started."""

from __future__ import annotations

import os
import signal

import pytest
import redis

from tests.background.conftest import wait_for
from tests.support.cds_server import start_cds_server

pytestmark = pytest.mark.slow


def test_serve_without_redis_url_runs_redis_and_worker(tmp_path, fhir_server, servers_file, bg_patients):
    server = start_cds_server(
        tmp_path / "cds",
        env={
            "RLS_EMBEDDED_WORKER": "true",
            "RLS_WORKER_CONCURRENCY": "1",
            "RLS_FHIR_SERVERS_FILE": str(servers_file),
        },
    )
    url_file = tmp_path / "cds" / "redis" / "redis.url"
    try:
        assert "REDIS_URL" not in server.env
        assert url_file.exists() and oct(url_file.stat().st_mode & 0o777) == "0o600"
        url = url_file.read_text().strip()
        assert url.startswith("redis://:") and "@127.0.0.1:" in url  # password, loopback
        assert redis.Redis.from_url(url).ping()
        assert server.get("/readyz").json()["checks"]["store"] is True

        pid = bg_patients["low_iron_ssri"]
        queued = server.post("/operator/reevaluate", {"patientId": pid, "fhirServer": fhir_server.base_url})
        assert queued.status_code == 202
        got = wait_for(lambda: server.get(f"/operator/assessments/{pid}").status_code == 200, 60, 0.2)
        assert got, server.log_text()[-3000:]
        record = server.get(f"/operator/assessments/{pid}").json()
        assert {"iron_deficiency", "drug_induced"} <= {f["cause"] for f in record["findings"]}
    finally:
        os.kill(server.process.pid, signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
    assert not url_file.exists(), "the embedded Redis URL is removed on a clean stop"
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
