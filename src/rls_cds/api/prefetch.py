"""Gather a hook's FHIR data: the prefetch the EHR sent, plus FHIR queries for keys it left out.

Missing or null keys are fetched from ``fhirServer`` (all in parallel, one deadline); whatever could
not be read is reported as a *data kind* ('Observation', ...) so the clinical core never concludes
"no iron studies" from labs it did not see.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rls_cds.api.catalogue import Service, render_query, resource_kind
from rls_cds.api.metrics import Metrics
from rls_cds.fhir.client import fetch_queries

# Kinds the clinical core understands in ``missing``.
CORE_KINDS = frozenset({"Condition", "Observation", "MedicationRequest"})


@dataclass
class Gathered:
    sources: list[Any] = field(default_factory=list)  # prefetch values and fetched resource lists
    missing: dict[str, str] = field(default_factory=dict)  # kind -> why ('timeout', 'no fhirServer', ...)
    fetched_keys: list[str] = field(default_factory=list)


def gather(
    service: Service,
    prefetch: dict[str, Any],
    context: dict[str, Any],
    fhir_server: str | None,
    access_token: str | None,
    deadline: float,
    per_request_timeout: float,
    metrics: Metrics,
) -> Gathered:
    out = Gathered(sources=[v for v in prefetch.values() if v is not None])
    queries: dict[str, str] = {}
    for key, template in service.prefetch.items():
        if prefetch.get(key) is not None:
            continue
        kind = resource_kind(template)
        query = render_query(template, context)
        if query is None:
            out.missing.setdefault(kind, "no patient in context")
        elif not fhir_server:
            out.missing.setdefault(kind, "not prefetched and no fhirServer")
        else:
            # Large pages: fewer round trips inside the deadline (servers cap _count as they see fit).
            if "?" in query and "_count=" not in query:
                query += "&_count=200"
            queries[key] = query
    if queries:
        metrics.fhir_fetches.inc(len(queries))
        result = fetch_queries(fhir_server, queries, access_token, deadline, per_request_timeout)
        out.fetched_keys = sorted(result.bundles)
        out.sources.extend(result.bundles.values())
        for key, reason in result.failed.items():
            metrics.fhir_fetch_errors.labels(reason).inc()
            out.missing.setdefault(resource_kind(service.prefetch[key]), _describe(reason))
    return out


def _describe(reason: str) -> str:
    if reason in ("timeout", "deadline"):
        return "the FHIR server did not answer in time"
    if reason == "connection":
        return "the FHIR server could not be reached"
    if reason in ("http_401", "http_403"):
        return "the FHIR server refused the access token"
    if reason.startswith("http_"):
        return f"the FHIR server answered {reason[5:]}"
    return "the FHIR server's answer could not be read"


def deadline_from(start: float, hook_deadline: float) -> float:
    """Monotonic time by which fetching must stop, keeping a slice of the budget for evaluation."""
    reserve = min(0.25, hook_deadline * 0.15)
    return start + hook_deadline - reserve


def now_monotonic() -> float:
    return time.monotonic()
