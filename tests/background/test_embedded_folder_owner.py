"""One owner per embedded Redis folder: a second `rls-cds serve --dev` on the same RLS_EMBEDDED_REDIS_DIR
refuses to start (exit 2, one line saying what to do, no traceback) and leaves the first instance's
Redis and redis.url alone; once the owner has gone (clean stop or kill -9) a new one starts."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import redis

from tests.support.cds_server import RLS_CDS_BIN, start_cds_server
from tests.support.fhir_server import free_port, stop_process

pytestmark = pytest.mark.slow


def _ping(url_file: Path) -> bool:
    return redis.Redis.from_url(url_file.read_text().strip(), socket_timeout=2).ping()


def _second_serve(folder: Path, workdir: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"},
        "RLS_EMBEDDED_WORKER": "false",
        "RLS_EMBEDDED_REDIS_DIR": str(folder),
        "RLS_REPORTS_DIR": str(workdir / "reports"),
    }
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(RLS_CDS_BIN), "serve", "--dev", "--host", "127.0.0.1", "--port", str(free_port())]
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, env=env, cwd=workdir, capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired as exc:  # the bug: it starts a second Redis on the same files
        pytest.fail(f"the second serve on the same folder did not refuse to start: {exc.stderr!s:.2000}")
    return done, time.monotonic() - started


def test_second_serve_on_the_same_folder_refuses_and_leaves_the_first_alone(tmp_path):
    folder = tmp_path / "shared-redis"
    env = {"RLS_EMBEDDED_REDIS_DIR": str(folder)}
    first = start_cds_server(tmp_path / "first", env=env)
    url_file = folder / "redis.url"
    try:
        url = url_file.read_text().strip()
        assert _ping(url_file)

        done, elapsed = _second_serve(folder, tmp_path / "second")
        assert done.returncode == 2, done.stderr[-3000:]
        assert elapsed < 10
        assert "Traceback" not in done.stderr + done.stdout
        refusal = [line for line in done.stderr.splitlines() if line.startswith("rls-cds serve: refusing")]
        assert len(refusal) == 1, done.stderr
        message = refusal[0]
        assert str(folder) in message
        assert f"pid {first.process.pid}" in message
        assert "RLS_EMBEDDED_REDIS_DIR" in message and "REDIS_URL" in message
        assert "Stop that instance" in message

        # The first instance still owns its Redis: same URL, still answering, still usable by the API.
        assert url_file.read_text().strip() == url
        assert _ping(url_file)
        assert first.get("/readyz").json()["checks"]["store"] is True
        redis_pid = redis.Redis.from_url(url).info("server")["process_id"]
        children = psutil.Process(first.process.pid).children(recursive=True)
        assert redis_pid in {c.pid for c in children}
        lock = str(folder / "owner.lock")  # held by serve only: no child could keep it after a crash
        assert lock in {f.path for f in psutil.Process(first.process.pid).open_files()}
        assert not [c.pid for c in children if lock in {f.path for f in c.open_files()}]

        first.process.send_signal(signal.SIGTERM)
        assert first.process.wait(timeout=30) == 0
        assert not url_file.exists()

        # Clean stop released the folder: a new owner starts; then kill -9 it, and one more starts.
        again = start_cds_server(tmp_path / "again", env=env)
        try:
            assert _ping(url_file)
            again.process.kill()
            again.process.wait(timeout=10)
        finally:
            stop_process(again.process)
        after_crash = start_cds_server(tmp_path / "after-crash", env=env)
        try:
            assert url_file.read_text().strip() != url
            assert _ping(url_file)
            assert after_crash.get("/readyz").json()["checks"]["store"] is True
        finally:
            stop_process(after_crash.process)
    finally:
        stop_process(first.process)
