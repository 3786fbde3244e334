"""Test fixture: `rls-cds serve` as a real subprocess on a free loopback port.

`start_cds_server(workdir, env=..., dev=...)` starts one with any settings (RLS_* variables); the
session fixture `cds_server` is the development-mode server most API tests share, backed by its own
real Redis server process. The service's log goes to `server.log_path` so tests (for example the
security log-grep test) can read everything it wrote.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.fhir_server import REPO, free_port, log_tail, stop_process, wait_until_ready
from tests.support.redis_server import RedisProcess, start_redis  # noqa: F401 - re-exported

RLS_CDS_BIN = REPO / ".venv" / "bin" / "rls-cds"


@dataclass
class CdsServer:
    url: str
    process: subprocess.Popen
    log_path: Path
    env: dict

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post(self, path: str, body, headers: dict | None = None, timeout: float = 10) -> requests.Response:
        return requests.post(f"{self.url}{path}", json=body, headers=headers, timeout=timeout)

    def get(self, path: str, timeout: float = 10) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=timeout)


def start_cds_server(
    workdir: Path, env: dict | None = None, dev: bool = True, timeout: float = 30
) -> CdsServer:
    if not RLS_CDS_BIN.exists():
        pytest.fail(f"{RLS_CDS_BIN} missing: run `make install`")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "rls-cds.log"
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"},
        "RLS_EMBEDDED_WORKER": "false",
        "RLS_EMBEDDED_REDIS_DIR": str(workdir / "redis"),
        "RLS_REPORTS_DIR": str(workdir / "reports"),
        **(env or {}),
    }
    cmd = [str(RLS_CDS_BIN), "serve", "--host", "127.0.0.1", "--port", str(port)] + (["--dev"] if dev else [])
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=workdir)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        return requests.get(f"{url}/healthz", timeout=1).status_code == 200

    if wait_until_ready(
        proc, healthy, "rls-cds serve", log_path, timeout, not_yet=(requests.RequestException,)
    ):
        return CdsServer(url, proc, log_path, full_env)
    stop_process(proc)
    pytest.fail(f"rls-cds serve did not become healthy in {timeout}s: {log_tail(log_path)}")


@pytest.fixture(scope="session")
def cds_redis(tmp_path_factory) -> RedisProcess:
    server = start_redis(tmp_path_factory.mktemp("cds-redis"))
    yield server
    stop_process(server.process)


@pytest.fixture(scope="session")
def cds_server(tmp_path_factory, cds_redis) -> CdsServer:
    """Development-mode server with a 1 s hook deadline (tests of the deadline stay short)."""
    server = start_cds_server(
        tmp_path_factory.mktemp("cds-server"),
        env={
            "REDIS_URL": cds_redis.url,
            "RLS_HOOK_DEADLINE_SECONDS": "1.0",
            "RLS_FHIR_REQUEST_TIMEOUT_SECONDS": "0.8",
            "RLS_MAX_BODY_BYTES": str(2 * 1024 * 1024),
        },
    )
    yield server
    stop_process(server.process)
