"""The Celery application: Redis broker and result backend, tuned for long, idempotent tasks.

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged only once done, so a
  worker killed mid-task has its task redelivered (tasks are idempotent, see tasks.py).
- Redis keeps unacknowledged messages of a dead worker for ``visibility_timeout`` seconds, then
  another worker gets them (settings.task_visibility_timeout_seconds).
- Prefetch multiplier 1: a long task never holds back work a free worker could take.
- JSON only (no pickle): a message can never execute code on a worker.
- Queues: ``hooks`` (latency-sensitive re-evaluations) and ``batch`` (panel screening).

Other parts add tasks in their own modules using ``from rls_cds.background.celery_app import app``;
a listed module that is not installed yet is left out instead of stopping the worker.
"""

from __future__ import annotations

import gc
import importlib.util
import logging

from celery import Celery, signals
from kombu import Exchange, Queue

from rls_cds.background.metrics import connect_worker_signals
from rls_cds.background.store import redis_url
from rls_cds.settings import get_settings

log = logging.getLogger("rls_cds.background")

TASK_MODULES = ["rls_cds.background.tasks", "rls_cds.panels.tasks"]
QUEUES = ("hooks", "batch")
# Same GC tuning as the API (DESIGN §1): large generation-0 budget, start-up heap frozen.
GC_THRESHOLDS = (50_000, 50, 100)


def _present(modules: list[str]) -> list[str]:
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:  # the parent package itself is missing
            found = False
        if found:
            out.append(name)
    return out


def configure(app: Celery, settings=None) -> Celery:
    settings = settings or get_settings()
    url = redis_url(settings) or "redis://127.0.0.1:6379/0"
    limit = settings.task_time_limit_seconds
    vt = settings.task_visibility_timeout_seconds
    app.conf.update(
        broker_url=url,
        result_backend=url,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,  # publishing from the API must not hang on a vanished Redis
        # Redis: redelivery of a dead worker's unacknowledged tasks; short socket timeouts so a
        # vanished Redis is noticed (and reconnected to) quickly.
        broker_transport_options={
            "visibility_timeout": vt,
            # Sweep for a dead worker's messages often enough for the visibility timeout to hold.
            "unacked_restore_interval": max(1, min(10, vt // 4)),
            "unacked_restore_throttle": 1,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "health_check_interval": 15,
        },
        result_backend_transport_options={"socket_timeout": 10, "socket_connect_timeout": 5},
        redis_socket_timeout=10,
        redis_socket_connect_timeout=5,
        redis_backend_health_check_interval=15,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,  # failures are dead-lettered by the task itself
        worker_prefetch_multiplier=1,
        task_time_limit=limit,
        task_soft_time_limit=max(1, int(limit * 0.8)),
        result_expires=24 * 3600,
        # Task events cost a Redis publish each: off by default; Flower switches them on in the
        # workers it watches (its --enable_events default), `celery control enable_events` too.
        task_track_started=False,
        worker_send_task_events=False,
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q) for q in QUEUES],
        task_default_queue="hooks",
        task_default_routing_key="hooks",
        task_routes={
            "rls_cds.background.*": {"queue": "hooks"},
            "rls_cds.panels.*": {"queue": "batch"},
        },
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        # Celery would turn stdout/stderr into a logger, a traceback into one unredacted record per
        # line; uncaught exceptions are logged by rls_cds.security.logs (type and frames) instead.
        worker_redirect_stdouts=False,
        beat_schedule_filename=str(settings.beat_schedule_file),
    )
    return app


app = configure(Celery("rls_cds", include=_present(TASK_MODULES)))
connect_worker_signals()  # every task's outcome and duration -> Redis -> the API's /metrics


class _NoTaskArgs(logging.Filter):
    """Celery's worker lines ("Task ... received", failures) carry the task's arguments as the sender
    wrote them; a client outside this package may not have digested the patient id. Drop them."""

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        if isinstance(data, dict) and ("args" in data or "kwargs" in data):
            record.data = {k: v for k, v in data.items() if k not in ("args", "kwargs")}
        return True


for _name in ("celery.worker.strategy", "celery.app.trace", "celery.worker.request"):
    logging.getLogger(_name).addFilter(_NoTaskArgs())


@signals.before_task_publish.connect
def _patient_digest_in_argsrepr(sender=None, body=None, headers=None, **_kwargs) -> None:
    """Celery logs and Flower show a task's ``argsrepr``: make it name the patient by digest only."""
    if not isinstance(headers, dict) or not str(sender or "").startswith("rls_cds.background.tasks."):
        return
    try:
        args = list(body[0])
        if len(args) >= 3 and isinstance(args[0], str) and isinstance(args[2], str):
            from rls_cds.api.suppression import patient_key

            if sender.endswith(".reevaluate_patient"):
                args[2] = patient_key(args[0], args[2])
            else:  # reevaluate_focus: 'Type/id' -> type only
                args[2] = args[2].split("/", 1)[0] + "/…"
            headers["argsrepr"] = repr(tuple(args))
    except (TypeError, IndexError, KeyError):
        pass


@signals.worker_process_init.connect
def _tune_worker_process(**_kwargs) -> None:
    """Each pool process: load terminology once, then freeze the start-up heap (short GC pauses)."""
    try:
        from rls_cds.background.tasks import warm_up

        warm_up()
    except Exception as exc:  # noqa: BLE001 - the task reports a missing core/terminology itself
        log.warning("worker warm-up failed", extra={"error_type": type(exc).__name__})
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _connect_task_metrics() -> None:
    """Outcomes and durations of every task (those that do not record their own) for /metrics."""
    try:
        from rls_cds.background.metrics import connect_worker_signals
    except ImportError:
        return
    connect_worker_signals()


_connect_task_metrics()
