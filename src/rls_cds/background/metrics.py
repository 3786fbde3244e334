"""Worker and queue metrics, read from Redis when Prometheus scrapes the API's /metrics.

Workers are many processes on many machines; rather than scrape each one, they record task outcomes
and durations in Redis (``Store.record_task``) and any API replica exposes the cluster-wide totals.
Queue lengths are read from the broker's lists at scrape time, so they are never stale.

A scrape never waits on a sick Redis for long: the store's client has a short socket timeout, and
when Redis does not answer the collector reports ``rls_cds_queue_up 0`` and nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger("rls_cds.background")

QUEUES = ("hooks", "batch")  # the Celery queues of rls_cds.background.celery_app
# kombu's Redis transport keeps delivered-but-unacknowledged messages (acks are late) in this hash.
UNACKED_KEY = "unacked"


def _split(field: str) -> tuple[str, str]:
    task, _, outcome = field.rpartition("|")
    return task or field, outcome or "unknown"


class BackgroundCollector:
    """prometheus_client collector over the store (`rls_cds.background.store.Store`)."""

    def __init__(self, store, queues: tuple[str, ...] = QUEUES):
        self.store = store
        self.queues = queues

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: its series depend on what Redis holds

    def _read(self) -> tuple[dict[str, int], int, dict[str, int], dict[str, float]]:
        if self.store is None:
            raise ConnectionError("no store configured")
        depths = self.store.queue_depths(self.queues)
        unacked = int(self.store.redis.hlen(UNACKED_KEY))
        counts, seconds = self.store.task_stats()
        return depths, unacked, counts, seconds

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("rls_cds_queue_up", "1 when the broker (Redis) answered this scrape")
        try:
            depths, unacked, counts, seconds = self._read()
        except Exception as exc:  # noqa: BLE001 - a scrape must report the broker down, not fail
            log.warning("queue metrics unavailable", extra={"error_type": type(exc).__name__})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        length = GaugeMetricFamily(
            "rls_cds_queue_length",
            "Tasks waiting in each Celery queue (read at scrape time)",
            labels=["queue"],
        )
        for queue in self.queues:
            length.add_metric([queue], depths.get(queue, 0))
        yield length

        taken = GaugeMetricFamily(
            "rls_cds_tasks_unacked",
            "Tasks taken by a worker and not yet acknowledged (running, or held by a dead worker "
            "until the visibility timeout redelivers them)",
        )
        taken.add_metric([], unacked)
        yield taken

        outcomes = CounterMetricFamily(
            "rls_cds_tasks", "Background task outcomes, all workers", labels=["task", "outcome"]
        )
        for field, n in sorted(counts.items()):
            outcomes.add_metric(list(_split(field)), n)
        yield outcomes

        durations = CounterMetricFamily(
            "rls_cds_task_seconds",
            "Summed task run time by outcome, all workers (divide by rls_cds_tasks_total for the mean)",
            labels=["task", "outcome"],
        )
        for field, total in sorted(seconds.items()):
            durations.add_metric(list(_split(field)), total)
        yield durations


def register_background_metrics(registry, store) -> BackgroundCollector:
    """Add the queue/worker collector to an API registry (no store -> it reports the broker down)."""
    collector = BackgroundCollector(store)
    registry.register(collector)
    return collector


# --- worker side: outcomes of every task that does not record its own -----------------------------
# reevaluate_patient records richer outcomes itself (stored / unchanged / dead_letter ...).
SELF_RECORDING = frozenset({"rls_cds.background.tasks.reevaluate_patient"})
_started: dict[str, float] = {}
_store = None


def _worker_store():
    global _store
    if _store is None:
        from rls_cds.background.store import Store
        from rls_cds.settings import get_settings

        _store = Store.from_settings(get_settings(), socket_timeout=0.5)
    return _store


def _on_prerun(task_id=None, **_kwargs) -> None:
    import time

    if task_id:
        _started[task_id] = time.monotonic()


def _on_postrun(task_id=None, task=None, state=None, **_kwargs) -> None:
    import time

    started = _started.pop(task_id, None)
    name = getattr(task, "name", None) or "unknown"
    if started is None or name in SELF_RECORDING:
        return
    try:
        _worker_store().record_task(
            name.rsplit(".", 1)[-1], str(state or "unknown").lower(), time.monotonic() - started
        )
    except Exception as exc:  # noqa: BLE001 - metrics must never fail a task
        log.debug("task outcome not recorded", extra={"error_type": type(exc).__name__})


def connect_worker_signals() -> None:
    """Record every task's outcome and duration in Redis (read by the API's /metrics). Idempotent.
    Called by rls_cds.background.celery_app so every worker process has it."""
    from celery import signals

    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid="rls_cds.metrics.prerun")
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid="rls_cds.metrics.postrun")
