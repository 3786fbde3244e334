"""Test fixture: real `rls-cds worker` (Celery) subprocesses against a given Redis.

`celery_workers.start(redis_url, env=..., name=...)` starts one, waits until it answers a control
ping, and returns a `CeleryWorker` with `.stop()` (SIGTERM: warm shutdown), `.kill()` (SIGKILL of
the worker and its pool processes) and `.log_text()`. Every worker still running at the end of the
test is stopped. `client_app(redis_url)` is a Celery client (JSON only) for sending tasks and
reading results from the test process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.fhir_server import REPO, log_tail, wait_until_ready

RLS_CDS_BIN = REPO / ".venv" / "bin" / "rls-cds"


def client_app(redis_url: str):
    from celery import Celery

    app = Celery("rls-tests", broker=redis_url, backend=redis_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
    )
    return app


@dataclass
class CeleryWorker:
    name: str
    process: subprocess.Popen
    log_path: Path
    env: dict = field(default_factory=dict)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # the worker and its pool processes (own session)
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=10)
        self._signal_group(signal.SIGKILL)  # stray pool processes, if any

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)


def start_worker(
    workdir: Path,
    redis_url: str,
    env: dict | None = None,
    name: str | None = None,
    queues: str = "hooks,batch",
    concurrency: int = 1,
    pool: str = "prefork",
    timeout: float = 30,
) -> CeleryWorker:
    if not RLS_CDS_BIN.exists():
        pytest.fail(f"{RLS_CDS_BIN} missing: run `make install`")
    name = name or f"w{uuid.uuid4().hex[:6]}@tests"
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name.split('@')[0]}.log"
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"},
        "REDIS_URL": redis_url,
        "RLS_LOG_LEVEL": "INFO",
        "RLS_EMBEDDED_REDIS_DIR": str(workdir / "redis"),
        "RLS_REPORTS_DIR": str(workdir / "reports"),
        **(env or {}),
    }
    cmd = [
        str(RLS_CDS_BIN),
        "worker",
        "--queues",
        queues,
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        "--hostname",
        name,
    ]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=workdir, start_new_session=True
        )
    worker = CeleryWorker(name, proc, log_path, full_env)
    app = client_app(redis_url)
    if wait_until_ready(
        proc, lambda: bool(app.control.ping(destination=[name], timeout=0.5)), "worker", log_path, timeout
    ):
        return worker
    worker.stop()
    pytest.fail(f"worker {name} not ready in {timeout}s: {log_tail(log_path)}")


class WorkerPool:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.started: list[CeleryWorker] = []

    def start(self, redis_url: str, **kwargs) -> CeleryWorker:
        worker = start_worker(self.workdir, redis_url, **kwargs)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for w in self.started:
            w.stop()


@pytest.fixture
def celery_workers(tmp_path) -> WorkerPool:
    pool = WorkerPool(tmp_path / "workers")
    yield pool
    pool.stop_all()
