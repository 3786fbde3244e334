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
    failures: dict[str, str | None] | None = None,
) -> Gathered:
    """``failures``: ``prefetch_failures(prefetch)`` if the caller has it already (each value's
    entries are scanned once per call)."""
    failures = prefetch_failures(prefetch) if failures is None else failures
    out = Gathered(sources=[v for key, v in prefetch.items() if failures[key] is None])
    queries: dict[str, str] = {}
    for key, template in service.prefetch.items():
        failure = failures.get(key, "absent")
        if failure is None:
            continue
        kind = resource_kind(template)
        query = render_query(template, context)
        if failure != "absent" and not fhir_server:
            out.missing.setdefault(kind, failure)
        elif query is None:
            out.missing.setdefault(kind, "the patient id in context is not a FHIR id: not queried")
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


def prefetch_failures(prefetch: dict[str, Any]) -> dict[str, str | None]:
    """``prefetch_failure`` of every key the EHR sent (a key it left out is 'absent')."""
    return {key: prefetch_failure(value) for key, value in prefetch.items()}


def prefetch_failure(value: Any) -> str | None:
    """None when a prefetch value can be read as data; else why not ('absent' when null or left out).

    CDS Hooks 2.0 lets an EHR whose prefetch query failed send an OperationOutcome in its place (or a
    searchset Bundle carrying an error outcome). Reading that as "no results" would make cards claim
    "no ferritin in 12 months" from labs nobody saw, so such a key is fetched again or reported."""
    if value is None:
        return "absent"
    if not isinstance(value, dict | list):
        return "the EHR's prefetch value was not a FHIR resource or Bundle"
    if isinstance(value, dict):
        if value.get("resourceType") == "OperationOutcome":
            return "the EHR could not prefetch it (OperationOutcome)"
        entries = value.get("entry") if value.get("resourceType") == "Bundle" else None
        if entries is not None and not isinstance(entries, list):
            # Read as "no results", a Bundle with an unreadable 'entry' would say "no ferritin" too.
            return "the EHR's prefetch Bundle could not be read ('entry' is not a list)"
        for entry in entries if isinstance(entries, list) else ():
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome":
                issues = resource.get("issue")
                if any(
                    isinstance(i, dict) and i.get("severity") in ("error", "fatal")
                    for i in (issues if isinstance(issues, list) else ())
                ):
                    return "the EHR's prefetch search failed (OperationOutcome in the Bundle)"
    return None


def _describe(reason: str) -> str:
    if reason in ("timeout", "deadline"):
        return "the FHIR server did not answer in time"
    if reason == "connection":
        return "the FHIR server could not be reached"
    if reason in ("http_401", "http_403"):
        return "the FHIR server refused the access token"
    if reason.startswith("http_"):
        return f"the FHIR server answered {reason[5:]}"
    if reason == "forbidden_destination":
        return "the FHIR server's address is not an allowed destination"
    if reason == "foreign_next_link":
        return "the FHIR server's next-page link pointed to another server (not followed)"
    if reason == "too_many_pages":
        return "the FHIR server returned more pages than the service reads"
    if reason == "too_large":
        return "the FHIR server's answer was larger than the service reads"
    return "the FHIR server's answer could not be read"


def deadline_from(start: float, hook_deadline: float) -> float:
    """Monotonic time by which fetching must stop, keeping a slice of the budget for evaluation."""
    reserve = min(0.25, hook_deadline * 0.15)
    return start + hook_deadline - reserve


def now_monotonic() -> float:
    return time.monotonic()
