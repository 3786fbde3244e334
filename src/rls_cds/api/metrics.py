"""Prometheus metrics of the API, in a registry per app (several apps in one process stay apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Hooks live within 0.5-2 s EHR windows: resolve the low end finely.
_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 5.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
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
        self.store_up = Gauge("rls_cds_store_up", "1 when the store answered its last check", registry=r)
        self.core_errors = Counter(
            "rls_cds_core_errors_total",
            "Internal failures of the clinical core (answered with no cards)",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
