"""`rls-cds worker`: a Celery worker (a thin wrapper over `celery worker`) with the tuned settings.

Tuning lives in rls_cds.background.celery_app (late acks, prefetch 1, JSON only, time limits,
queues). Terminology is loaded before the pool forks, then the start-up heap is frozen
(gc.freeze) in the parent and again in every pool process, as in the API.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import socket
import sys

from rls_cds.commands.celery_setup import settings_with_broker
from rls_cds.commands.config import redact_urls, terminology_problems
from rls_cds.security.logs import JsonFormatter, scrub


def register(sub) -> None:
    p = sub.add_parser("worker", help="run a Celery worker for background re-evaluation and panel screening")
    p.add_argument(
        "--queues", "-Q", default="hooks,batch", help="comma-separated queues (default: hooks,batch)"
    )
    p.add_argument("--concurrency", "-c", type=int, help="pool processes (default: RLS_WORKER_CONCURRENCY)")
    p.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"], help="Celery pool")
    p.add_argument("--hostname", "-n", help="worker node name (default: celery@<host>, as `celery worker`)")
    p.add_argument("--loglevel", "-l", help="log level (default: RLS_LOG_LEVEL)")
    p.set_defaults(func=run)


def _say_in_json() -> None:
    """Celery's signal handlers print fixed texts ('worker: Warm shutdown (MainProcess)') with a raw
    os.write, outside logging. Keep the raw write (it runs inside a signal handler), as a JSON line."""
    import celery.apps.worker as celery_worker

    formatter = JsonFormatter()  # the log lines' own shape; no handler, so no lock in the signal handler

    def say(msg, f=None) -> None:
        record = logging.LogRecord(
            "celery.apps.worker", logging.INFO, "", 0, scrub(str(msg).strip()), None, None
        )
        with contextlib.suppress(OSError):
            os.write(2, formatter.format(record).encode() + b"\n")

    celery_worker.safe_say = say


def run(args) -> int:
    settings = settings_with_broker("the worker")
    if settings is None:
        return 2
    log = logging.getLogger("rls_cds.background")
    from rls_cds.background.celery_app import QUEUES, app
    from rls_cds.background.store import redis_url

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown:
        log.error("unknown queue(s)", extra={"queues": unknown, "known": list(QUEUES)})
        return 2
    # Without the tables every task would dead-letter ("terminology_unavailable") behind a worker
    # that looks ready: refuse to start instead, naming the variable.
    problems = terminology_problems(settings)
    if problems:
        log.error("refusing to start: %s", problems[0])
        print(f"rls-cds worker: refusing to start: {problems[0]}", file=sys.stderr)
        return 2
    try:
        from rls_cds.background.tasks import warm_up

        warm_up()  # before the pool forks: children share the loaded terminology
    except Exception as exc:  # noqa: BLE001 - tasks dead-letter with the reason; the worker still runs
        log.warning("worker warm-up failed", extra={"error_type": type(exc).__name__})
    gc.collect()
    gc.freeze()
    concurrency = args.concurrency or settings.worker_concurrency
    # Celery's start-up banner is plain text on stdout: the same facts go out as a JSON line instead.
    log.info(
        "worker starting",
        extra={
            "queues": queues,
            "concurrency": concurrency,
            "pool": args.pool,
            "node": args.hostname or f"celery@{socket.gethostname()}",  # ("hostname" would be redacted)
            "broker": redact_urls(redis_url(settings) or ""),  # host and db, never the password
        },
    )
    argv = [
        "--quiet",
        "worker",
        "--queues",
        ",".join(queues),
        "--concurrency",
        str(concurrency),
        "--pool",
        args.pool,
        "--loglevel",
        (args.loglevel or settings.log_level).upper(),
        "--without-gossip",  # peers need not chat; events still flow for Flower
        "--without-mingle",
    ]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    _say_in_json()
    app.worker_main(argv=argv)
    return 0
