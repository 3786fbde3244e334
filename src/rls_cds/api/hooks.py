"""POST /cds-services/{id}: validate the call, gather data, run the clinical core, answer cards.

The answer is never a 5xx for a well-formed call: FHIR trouble means fewer data (named in the
cards), store trouble means no suppression, and a failure inside the core means no cards plus an
error log, because an internal failure must never turn into advice.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
from fastapi import APIRouter, Request, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from rls_cds.api.catalogue import Service
from rls_cds.api.decode import HookBody, decode_hook_request
from rls_cds.api.errors import ApiError, check_json_content_type, read_body
from rls_cds.api.models import CardsResponse, HookRequest, error_responses, request_body
from rls_cds.api.prefetch import CORE_KINDS, deadline_from, gather, prefetch_failures
from rls_cds.api.runtime import Runtime
from rls_cds.api.suppression import patient_key
from rls_cds.fhir.base_url import base_url_problem
from rls_cds.fhir.ids import FHIR_ID
from rls_cds.security.logs import safe_request_id

log = logging.getLogger("rls_cds.api")
router = APIRouter()

_DRAFT_HOOKS = {"order-select", "order-sign"}


def _require_str(obj: dict, name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "invalid_request", f"'{name}' is required and must be a non-empty string")
    return value


def _validate(obj: dict, service: Service) -> dict:
    hook = _require_str(obj, "hook")
    _require_str(obj, "hookInstance")
    if hook != service.hook:
        raise ApiError(
            400, "hook_mismatch", f"service '{service.id}' answers '{service.hook}', not this hook"
        )
    context = obj.get("context")
    if not isinstance(context, dict):
        raise ApiError(400, "invalid_request", "'context' is required and must be an object")
    if "patientId" not in context and isinstance(obj.get("patient"), str):
        context = {**context, "patientId": obj["patient"]}  # CDS Hooks 1.0 top-level patient
    if not isinstance(context.get("patientId"), str) or not context["patientId"]:
        raise ApiError(400, "invalid_request", "'context.patientId' is required and must be a string")
    patient_id = _patient_id(context["patientId"])
    if patient_id is None:
        raise ApiError(
            400,
            "invalid_request",
            "'context.patientId' must be a FHIR id (letters, digits, '-' and '.', at most 64) "
            "or a Patient reference",
        )
    if patient_id != context["patientId"]:  # one form for queries, store keys and background work
        context = {**context, "patientId": patient_id}
    for name, kinds in (("prefetch", dict), ("fhirAuthorization", dict), ("fhirServer", str)):
        if obj.get(name) is not None and not isinstance(obj[name], kinds):
            raise ApiError(400, "invalid_request", f"'{name}' has the wrong type")
    server = obj.get("fhirServer")
    problem = base_url_problem(server) if server else None
    if problem:
        raise ApiError(400, "invalid_request", f"'fhirServer' {problem}")
    if hook in _DRAFT_HOOKS and not isinstance(context.get("draftOrders"), dict | list):
        raise ApiError(400, "invalid_request", "'context.draftOrders' is required (a Bundle)")
    if hook == "medication-prescribe" and not isinstance(context.get("medications"), dict | list):
        raise ApiError(400, "invalid_request", "'context.medications' is required")
    return context


# 'Patient/p1', 'https://ehr/fhir/Patient/p1', either with '/_history/<version>'.
_PATIENT_REFERENCE = re.compile(r"(?:[^?#\s]*/)?Patient/([^/?#\s]+)(?:/_history/[A-Za-z0-9\-.]{1,64})?\Z")


def _patient_id(value: str) -> str | None:
    """The id of an id ('p1') or of a reference naming one, else None: 'Patient/', 'patient/p1' or
    ' p1' named nobody, and every resource then looked like another patient's (an empty answer)."""
    if FHIR_ID.match(value):
        return value
    m = _PATIENT_REFERENCE.match(value)
    return m.group(1) if m and FHIR_ID.match(m.group(1)) else None


def _access_token(obj: dict) -> str | None:
    auth = obj.get("fhirAuthorization") or {}
    token = auth.get("access_token")
    return token if isinstance(token, str) and token else None


def _draft_orders(service: Service, context: dict, flatten) -> tuple[list[dict], list[str]]:
    if service.hook == "patient-view":
        return [], []
    raw = context.get("medications") if service.hook == "medication-prescribe" else context.get("draftOrders")
    drafts, warnings = flatten(raw)  # lenient readings (e.g. a Bundle without type) go to the cards
    selections = context.get("selections")
    if service.hook == "order-select" and isinstance(selections, list) and selections:
        wanted = {s for s in selections if isinstance(s, str)}
        drafts = [d for d in drafts if f"{d.get('resourceType')}/{d.get('id')}" in wanted]
    return drafts, warnings


def _count_resources(prefetch: dict, limit: int, drafts: Any = None) -> None:
    """At most ``limit`` resources in prefetch and draft orders together (each draft becomes a card:
    20,000 drafts in a 5 MB body were 20,000 cards and a 43 MB answer past the hook deadline)."""
    total = 0
    for value in [*prefetch.values(), drafts]:
        if isinstance(value, dict):
            entries = value.get("entry")
            total += len(entries) if isinstance(entries, list) else 1
        elif isinstance(value, list):
            total += len(value)
        if total > limit:
            raise ApiError(
                413, "too_many_resources", f"prefetch and draft orders hold more than {limit} resources"
            )


def _annotate_missing(cards: list[dict], missing: dict[str, str]) -> None:
    if not missing:
        return
    parts = "; ".join(f"{kind}: {why}" for kind, why in sorted(missing.items()))
    note = (
        f"\n\n**Data not available for this check** — {parts}. "
        "Findings that depend on them were not assessed."
    )
    # New dicts: the core may hand out cards it keeps (caches); never mutate them in place.
    cards[:] = [{**card, "detail": (card.get("detail") or "") + note} for card in cards]


def _per_patient_uuids(cards: list[dict], patient: str) -> list[dict]:
    """Card uuids from the core are content hashes; two patients can get the same card text. Feedback
    names only the uuid, so make it patient-specific (still deterministic) to keep overrides apart."""
    out = []
    for card in cards:
        try:
            base = uuid.UUID(str(card.get("uuid")))
        except ValueError:
            base = uuid.uuid5(uuid.NAMESPACE_OID, orjson.dumps(card, option=orjson.OPT_SORT_KEYS).decode())
        out.append({**card, "uuid": str(uuid.uuid5(base, patient))})
    return out


def _run_core(
    rt: Runtime, service: Service, sources: list, context: dict, missing: frozenset, body: HookBody
) -> list[dict]:
    from rls_cds.core.engine import evaluate, render_cards
    from rls_cds.core.resources import flatten

    resources, _warnings = flatten(sources)
    drafts, draft_warnings = _draft_orders(service, context, flatten)
    assessment = evaluate(
        resources,
        now=datetime.now(UTC),
        terminology=rt.terminology,
        draft_orders=drafts,
        draft_warnings=draft_warnings,
        missing=missing,
        fingerprint=False,  # the hook stores nothing, so the facts' hash would never be read
        as_sent=body.as_sent,  # prefetch was decoded thin: validate evidence as the EHR sent it
        patient=context["patientId"],
    )
    cards = render_cards(assessment, hook=service.hook)
    return [c if isinstance(c, dict) else msgspec.to_builtins(c) for c in cards]


def _stored_cards(
    rt: Runtime, service: Service, obj: dict, context: dict, tenant: str, failures: dict[str, str | None]
) -> list[dict] | None:
    """patient-view with prefetch missing: a fresh stored assessment (background re-evaluation) answers
    without FHIR round trips. Any store trouble means None: the live path answers. So does any usable
    clinical prefetch key: what the EHR just sent is newer than any stored assessment and must be read
    (the Patient alone, which EHRs nearly always send, holds none of the data the rules judge)."""
    if (
        service.hook != "patient-view"
        or rt.store is None
        or rt.settings.assessment_freshness_seconds <= 0
        or any(failures.get(key, "absent") is None for key in service.prefetch if key != "patient")
    ):
        return None
    from rls_cds.provenance import code_version

    try:
        return rt.store.fresh_cards(
            tenant,
            context["patientId"],
            obj.get("fhirServer"),
            rt.settings.assessment_freshness_seconds,
            getattr(rt.terminology, "version", None),
            code_version(),
        )
    except Exception as exc:  # noqa: BLE001 - Redis down or a bad record: evaluate live
        rt.metrics.store_errors.labels("assessment").inc()
        log.warning("stored assessment unavailable", extra={"error_type": type(exc).__name__})
        return None


def _evaluate(
    rt: Runtime, service: Service, body: HookBody, context: dict, caller: Any, start: float
) -> dict:
    settings = rt.settings
    obj = body.obj
    prefetch = obj.get("prefetch") or {}
    _count_resources(
        prefetch, settings.max_prefetch_resources, context.get("draftOrders") or context.get("medications")
    )
    tenant = getattr(caller, "tenant", None) or "default"
    failures = prefetch_failures(prefetch)
    stored = _stored_cards(rt, service, obj, context, tenant, failures)
    if stored is not None:
        patient = patient_key(tenant, context["patientId"])
        cards = _per_patient_uuids(stored, patient)
        if rt.feedback is not None and cards:
            cards = rt.feedback.filter_and_remember(tenant, patient, service.id, cards)
        return {"cards": cards, "systemActions": [], "_missing": [], "_source": "stored"}
    data = gather(
        service,
        prefetch,
        context,
        obj.get("fhirServer"),
        _access_token(obj),
        deadline_from(start, settings.hook_deadline_seconds),
        settings.fhir_request_timeout_seconds,
        rt.metrics,
        failures,
    )
    missing = frozenset(k for k in data.missing if k in CORE_KINDS)
    try:
        if rt.terminology is None:
            raise RuntimeError("terminology not loaded")
        cards = _run_core(rt, service, data.sources, context, missing, body)
    except Exception as exc:  # noqa: BLE001 - an internal failure must never become a card
        rt.metrics.core_errors.inc()
        log.error("clinical core failed", extra={"service": service.id, "error_type": type(exc).__name__})
        cards = []
    _annotate_missing(cards, data.missing)
    patient = patient_key(tenant, context["patientId"])
    cards = _per_patient_uuids(cards, patient)
    if rt.feedback is not None and cards:
        cards = rt.feedback.filter_and_remember(tenant, patient, service.id, cards)
    for card in cards:
        cause = ((card.get("source") or {}).get("topic") or {}).get("code") or "unknown"
        rt.metrics.cards.labels(str(cause), str(card.get("indicator"))).inc()
    return {"cards": cards, "systemActions": [], "_missing": sorted(data.missing)}


def _after_order_sign_task(rt: Runtime, service: Service, obj: dict, context: dict, caller: Any):
    """Once the answer is sent: let background work re-evaluate the patient (orders just changed)."""
    if service.hook != "order-sign" or rt.on_order_sign is None:
        return None
    tenant = getattr(caller, "tenant", None) or "default"

    def run() -> None:
        try:
            rt.on_order_sign(tenant, obj.get("fhirServer"), context["patientId"])
        except Exception as exc:  # noqa: BLE001 - a trigger failure must not touch the hook's answer
            log.warning("order-sign trigger failed", extra={"error_type": type(exc).__name__})

    return BackgroundTask(run)


@router.post(
    "/cds-services/{service_id}",
    response_model=CardsResponse,
    responses=error_responses(400, 401, 403, 404, 408, 413, 415),
    openapi_extra=request_body(HookRequest),
    summary="Call a CDS service (CDS Hooks 2.0)",
    tags=["cds-hooks"],
)
async def call_service(service_id: str, request: Request) -> Response:
    start = time.monotonic()
    rt: Runtime = request.app.state.runtime
    service = rt.catalogue.get(service_id)
    if service is None:
        raise ApiError(404, "unknown_service", "no CDS service with this id; see GET /cds-services")
    request_id = safe_request_id(request.headers.get("x-request-id")) or str(uuid.uuid4())
    status = 200
    n_cards = 0
    missing: list[str] = []
    source = "none"
    try:
        caller = await rt.authenticate(request)
        check_json_content_type(request)
        body = await read_body(request, rt.settings.max_body_bytes, rt.settings.body_timeout_seconds)
        hook_body = decode_hook_request(body, rt.settings.max_json_depth)
        obj = hook_body.obj
        context = _validate(obj, service)
        server = obj.get("fhirServer")
        if server and not caller.allows_fhir_server(server):
            raise ApiError(403, "fhir_server_not_allowed", "fhirServer is not allowed for this issuer")
        answer = await run_in_threadpool(_evaluate, rt, service, hook_body, context, caller, start)
        missing = answer.pop("_missing")
        source = answer.pop("_source", "live")
        n_cards = len(answer["cards"])
        after = _after_order_sign_task(rt, service, obj, context, caller)
        return Response(orjson.dumps(answer), media_type="application/json", background=after)
    except ApiError as exc:
        status = exc.status
        raise
    except Exception:
        status = 500  # answered by the last-resort handler: log and count it as what it is
        raise
    finally:
        elapsed = time.monotonic() - start
        rt.metrics.hook_latency.labels(service.id).observe(elapsed)
        rt.metrics.hook_requests.labels(service.id, str(status)).inc()
        log.info(
            "hook answered",
            extra={
                "request_id": request_id,
                "service_id": service.id,
                "hook": service.hook,
                "status": status,
                "latency_ms": round(elapsed * 1000, 1),
                "card_count": n_cards,
                "missing_data": missing,
                "source": source,  # live evaluation, or a stored (background) assessment
            },
        )
