"""Prometheus metrics of the API.

One process (RLS_API_WORKERS=1, and tests that build several apps in one process): a registry per app,
so apps stay apart. Several uvicorn workers: `rls-cds serve` gives the workers a private
PROMETHEUS_MULTIPROC_DIR before they start, prometheus_client then keeps every value in a file per
process there (its multiprocess mode), and /metrics reads the files of all workers, so whichever
worker takes a scrape answers with the sums over the whole instance (counters never appear to reset).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Hooks live within 0.5-2 s EHR windows: resolve the low end finely.
_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 5.0)


def multiprocess_dir() -> str | None:
    """The shared directory when prometheus_client runs in multiprocess mode in this process, else None.

    The mode is fixed when prometheus_client is first imported (it reads PROMETHEUS_MULTIPROC_DIR then);
    in that mode every metric value of the process lives in that directory's files, so a registry per
    app could not keep apps apart anyway.
    """
    path = os.environ.get(MULTIPROC_DIR_ENV)
    if path and getattr(values.ValueClass, "_multiprocess", False) and os.path.isdir(path):
        return path
    return None


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        # What /metrics renders; other parts add their collectors to it (rls_cds.background.metrics).
        self.registry = CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir()
        if self.multiprocess_dir is None:
            r = self.registry
            store_mode = "all"  # unused in one process
        else:
            # The metrics below only write this process's file; the collector sums all workers' files.
            # Registering them as well would expose this worker's own values beside the sums.
            MultiProcessCollector(self.registry, path=self.multiprocess_dir)
            r = None
            # The gauge means "the store answered its last check", and each worker checks on its own
            # (/readyz, failed store calls): the last check made by any worker is the answer, which is
            # 'mostrecent'. 'max' would hide an outage one worker has seen behind another's older
            # success, 'min' (and the per-pid 'all'/'liveall') would report a worker that has not
            # checked yet as down (gauges start at 0). A dead worker's value only wins while it is the
            # newest check, so mark_process_dead is not needed. Until some worker has checked, the
            # series is absent rather than 0.
            store_mode = "mostrecent"
        self.hook_latency = Histogram(
            "rls_cds_hook_latency_seconds", "Hook request latency", ["service"], buckets=_BUCKETS, registry=r
        )
        self.hook_requests = Counter(
            "rls_cds_hook_requests_total", "Hook requests by answer status", ["service", "status"], registry=r
        )
        self.cards = Counter("rls_cds_cards_total", "Cards returned", ["cause", "indicator"], registry=r)
        self.cards_suppressed = Counter(
            "rls_cds_cards_suppressed_total", "Cards withheld after an override", ["cause"], registry=r
        )
        self.fhir_fetch_errors = Counter(
            "rls_cds_fhir_fetch_errors_total", "FHIR fallback queries that failed", ["reason"], registry=r
        )
        self.fhir_fetches = Counter(
            "rls_cds_fhir_fetches_total", "FHIR fallback queries run (prefetch missing)", registry=r
        )
        self.feedback = Counter("rls_cds_feedback_total", "Card feedback received", ["outcome"], registry=r)
        self.store_errors = Counter(
            "rls_cds_store_errors_total", "Store (Redis) operations that failed", ["operation"], registry=r
        )
        self.store_up = Gauge(
            "rls_cds_store_up",
            "1 when the store answered its last check",
            registry=r,
            multiprocess_mode=store_mode,
        )
        self.core_errors = Counter(
            "rls_cds_core_errors_total",
            "Internal failures of the clinical core (answered with no cards)",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
