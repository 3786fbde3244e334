"""FHIR Subscription notifications and operator endpoints that queue background re-evaluation.

Notifications (``POST``/``PUT /fhir-subscriptions/notify[/{type}/{id}]``) are authenticated by the
``X-Subscription-Secret`` header (settings.subscription_secret, compared in constant time), which
the Subscription carries in ``channel.header``. Accepted shapes:

- R4 rest-hook: an empty body (a ping: nothing named unless the URL names a resource) or the
  changed resource itself (POST to the endpoint, or PUT to ``{endpoint}/{type}/{id}``);
- R4B/R5 topic-based (Subscriptions Backport IG) notification Bundles (``type = history``, first
  entry a ``Parameters`` or ``SubscriptionStatus``): ``handshake`` and ``heartbeat`` are
  acknowledged, ``event-notification`` queues the patients named by each event's additional
  context or focus (full-resource payloads are read directly; an id-only focus is read from the
  FHIR server by a background task).

The FHIR server the data are read from is the ``X-FHIR-Server`` header, else the base of the
backport ``subscription`` reference, else the only server in settings.fhir_servers_file. Duplicate
notifications coalesce (see background.triggers). If nothing can be queued because Redis is down the
answer is 503, so the FHIR server delivers again: a patient is never silently dropped.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from rls_cds.api.errors import ApiError, check_json_content_type, parse_json_object, read_body
from rls_cds.api.runtime import Runtime
from rls_cds.fhir.base_url import base_url_problem

log = logging.getLogger("rls_cds.api")
router = APIRouter()

SECRET_HEADER = "x-subscription-secret"  # noqa: S105 - a header name, not a secret
SERVER_HEADER = "x-fhir-server"
MAX_PATIENTS_PER_NOTIFICATION = 1000
_FOCUS_TASK = "rls_cds.background.tasks.reevaluate_focus"


def _check_secret(request: Request, rt: Runtime) -> None:
    expected = rt.settings.subscription_secret
    if expected is None or not expected.get_secret_value():
        raise ApiError(
            403,
            "subscriptions_not_configured",
            "this service accepts FHIR Subscription notifications only when RLS_SUBSCRIPTION_SECRET is set",
        )
    given = request.headers.get(SECRET_HEADER, "").encode()
    accepted = [x.strip().encode() for x in expected.get_secret_value().split(",") if x.strip()]
    # Compare against every accepted secret (constant time each, no early exit on a match).
    matches = [hmac.compare_digest(given, secret) for secret in accepted]
    if not given or not any(matches):
        raise ApiError(401, "unauthorized", "missing or wrong X-Subscription-Secret header")


# --- what a notification names ----------------------------------------------------------------
def _backport_status(body: dict) -> dict | None:
    if body.get("resourceType") != "Bundle" or body.get("type") != "history":
        return None
    entries = body.get("entry") or []
    first = (entries[0].get("resource") if entries and isinstance(entries[0], dict) else None) or {}
    return first if first.get("resourceType") in ("Parameters", "SubscriptionStatus") else None


def _param(p: dict) -> Any:
    return next((v for k, v in p.items() if k.startswith("value")), None)


def _backport_events(status: dict) -> tuple[str | None, str | None, list[dict]]:
    """(notification type, subscription reference, events [{focus, context: [...]}]) for R4 Parameters
    (kebab- or camelCase names) and R4B SubscriptionStatus."""
    if status.get("resourceType") == "SubscriptionStatus":
        events = [
            {
                "focus": (e.get("focus") or {}).get("reference"),
                "context": [
                    c.get("reference") for c in e.get("additionalContext") or [] if isinstance(c, dict)
                ],
            }
            for e in status.get("notificationEvent") or []
            if isinstance(e, dict)
        ]
        return status.get("type"), (status.get("subscription") or {}).get("reference"), events
    ntype, sub, events = None, None, []
    for p in status.get("parameter") or []:
        if not isinstance(p, dict):
            continue
        name = p.get("name")
        if name == "type":
            ntype = _param(p)
        elif name == "subscription":
            sub = (_param(p) or {}).get("reference") if isinstance(_param(p), dict) else None
        elif name in ("notification-event", "notificationEvent"):
            ev: dict[str, Any] = {"focus": None, "context": []}
            for part in p.get("part") or []:
                ref = (_param(part) or {}).get("reference") if isinstance(_param(part), dict) else None
                if part.get("name") == "focus":
                    ev["focus"] = ref
                elif part.get("name") in ("additional-context", "additionalContext"):
                    ev["context"].append(ref)
            events.append(ev)
    return ntype, sub, events


def _named(body: dict | None, path_type: str | None, path_id: str | None) -> dict[str, Any]:
    """{'patients': set, 'focus': set of 'Type/id' needing a read, 'type': str, 'subscription': ref}."""
    from rls_cds.background.triggers import patient_of, split_reference

    out: dict[str, Any] = {"patients": set(), "focus": set(), "type": "rest-hook", "subscription": None}
    if body is None:
        if path_type == "Patient":
            out["patients"].add(path_id)
        elif path_type:
            out["focus"].add(f"{path_type}/{path_id}")
        else:
            out["type"] = "ping"
        return out
    status = _backport_status(body)
    if status is None:
        resources = (
            [e.get("resource") for e in body.get("entry") or [] if isinstance(e, dict)]
            if body.get("resourceType") == "Bundle"
            else [body]
        )
        for res in resources:
            pid = patient_of(res)
            if pid:
                out["patients"].add(pid)
        return out
    ntype, sub, events = _backport_events(status)
    out["type"], out["subscription"] = ntype or "unknown", sub
    if ntype != "event-notification":
        return out  # handshake, heartbeat, query-status: nothing changed
    full = {
        (r.get("resourceType"), r.get("id")): r
        for e in (body.get("entry") or [])[1:]
        if isinstance(e, dict) and isinstance(r := e.get("resource"), dict)
    }
    for ev in events:
        patients = {rid for rtype, rid in map(split_reference, ev["context"]) if rtype == "Patient"}
        ftype, fid = split_reference(ev["focus"])
        if ftype == "Patient":
            patients.add(fid)
        elif not patients and ftype and (ftype, fid) in full:
            pid = patient_of(full[(ftype, fid)])
            patients.update([pid] if pid else [])
        elif not patients and ftype:
            out["focus"].add(f"{ftype}/{fid}")
        out["patients"].update(patients)
    return out


def _fhir_server(request: Request, named: dict, settings) -> str:
    from rls_cds.fhir.smart import load_fhir_servers

    server = request.headers.get(SERVER_HEADER)
    if (
        not server
        and isinstance(named.get("subscription"), str)
        and "/Subscription/" in named["subscription"]
    ):
        base = named["subscription"].rsplit("/Subscription/", 1)[0]
        server = base if base.startswith(("http://", "https://")) else None
    if not server:
        servers = load_fhir_servers(settings)
        if len(servers) == 1:
            server = next(iter(servers))
    if not server:
        raise ApiError(
            400,
            "fhir_server_unknown",
            "cannot tell which FHIR server sent this: add an 'X-FHIR-Server: <base>' channel header",
        )
    problem = base_url_problem(server)
    if problem:
        raise ApiError(400, "invalid_fhir_server", f"X-FHIR-Server {problem}")
    return server.rstrip("/")


def _queue(rt: Runtime, server: str, tenant: str, named: dict) -> dict[str, int]:
    from rls_cds.background.celery_app import app
    from rls_cds.background.tasks import FHIR_ID
    from rls_cds.background.triggers import PUBLISH_RETRY, enqueue_reevaluation, focus_claim

    counts = {"queued": 0, "coalesced": 0, "focus_queued": 0, "ignored": 0}
    store = rt.store
    for pid in sorted(named["patients"]):
        if not FHIR_ID.match(pid or ""):
            counts["ignored"] += 1
            continue
        queued = enqueue_reevaluation(tenant, server, pid, "subscription", store=store)
        counts["queued" if queued.queued else "coalesced"] += 1
    for ref in sorted(named["focus"]):
        if not store.claim_once(tenant, focus_claim(server, ref), rt.settings.trigger_coalesce_seconds):
            counts["coalesced"] += 1
            continue
        try:
            app.send_task(
                _FOCUS_TASK,
                args=(tenant, server, ref, "subscription"),
                queue="hooks",
                retry_policy=PUBLISH_RETRY,
            )
        except Exception:
            store.release_once(tenant, focus_claim(server, ref))  # the redelivery must queue it
            raise
        counts["focus_queued"] += 1
    return counts


async def notify(request: Request, resource_type: str | None = None, resource_id: str | None = None):
    rt: Runtime = request.app.state.runtime
    _check_secret(request, rt)
    body_bytes = await read_body(request, rt.settings.max_body_bytes, rt.settings.body_timeout_seconds)
    body = None
    if body_bytes.strip():
        check_json_content_type(request)
        body = parse_json_object(body_bytes, rt.settings.max_json_depth)
    try:
        named = _named(body, resource_type, resource_id)
    except (AttributeError, TypeError, KeyError, IndexError):
        # JSON of the wrong shape ('entry' not a list, a string where a Reference belongs, a list as
        # an id): the sender's mistake. A 500 would hide that and invite endless redelivery.
        raise ApiError(
            400, "invalid_notification", "the notification is not an R4 resource, Bundle or backport Bundle"
        ) from None
    if not named["patients"] and not named["focus"]:
        return JSONResponse({"notification": named["type"], "queued": 0, "coalesced": 0})
    if len(named["patients"]) + len(named["focus"]) > MAX_PATIENTS_PER_NOTIFICATION:
        raise ApiError(413, "too_many_patients", f"at most {MAX_PATIENTS_PER_NOTIFICATION} per notification")
    server = _fhir_server(request, named, rt.settings)
    from rls_cds.background.triggers import background_server

    allowed, tenant = background_server(server, rt.settings)
    if not allowed:
        raise ApiError(403, "fhir_server_not_allowed", "this FHIR server is not in RLS_FHIR_SERVERS_FILE")
    if rt.store is None:
        raise ApiError(503, "store_unavailable", "no Redis store: cannot queue re-evaluations now")
    try:
        counts = await run_in_threadpool(_queue, rt, server, tenant, named)
    except Exception as exc:  # noqa: BLE001 - Redis/broker down: the FHIR server should deliver again
        rt.metrics.store_errors.labels("enqueue").inc()
        log.warning("notification could not be queued", extra={"error_type": type(exc).__name__})
        raise ApiError(
            503, "store_unavailable", "re-evaluation could not be queued; deliver again later"
        ) from None
    log.info("subscription notification", extra={"notification": named["type"], **counts})
    return JSONResponse({"notification": named["type"], **counts})


_RESPONSES = {
    401: {"description": "missing or wrong X-Subscription-Secret"},
    403: {"description": "notifications not enabled, or FHIR server not allowed"},
    503: {"description": "cannot queue now; the FHIR server should deliver again"},
}
for _path, _what in (
    ("/fhir-subscriptions/notify", "R4 rest-hook (empty or resource) or backport notification Bundle"),
    ("/fhir-subscriptions/notify/{resource_type}/{resource_id}", "R4 rest-hook, put-resource form"),
):
    for _method in ("POST", "PUT"):
        router.add_api_route(
            _path,
            notify,
            methods=[_method],
            operation_id=f"subscription_notify_{_method.lower()}{'_resource' if '{' in _path else ''}",
            summary=f"FHIR Subscription notification: {_what}",
            tags=["background"],
            responses=_RESPONSES,
        )


# --- operators --------------------------------------------------------------------------------
async def _operator(request: Request) -> tuple[Runtime, Any]:
    rt: Runtime = request.app.state.runtime
    caller = await rt.authenticate(request)
    if rt.store is None:
        raise ApiError(503, "store_unavailable", "no Redis store is configured")
    return rt, caller


@router.post(
    "/operator/reevaluate",
    status_code=202,
    summary="Queue a background re-evaluation of one patient",
    tags=["background"],
    responses={401: {}, 403: {}, 503: {}},
)
async def operator_reevaluate(request: Request):
    from rls_cds.background.tasks import FHIR_ID
    from rls_cds.background.triggers import background_server, enqueue_reevaluation

    rt, caller = await _operator(request)
    check_json_content_type(request)
    obj = parse_json_object(
        await read_body(request, 64 * 1024, rt.settings.body_timeout_seconds), rt.settings.max_json_depth
    )
    patient, server = obj.get("patientId"), obj.get("fhirServer")
    if not isinstance(patient, str) or not FHIR_ID.match(patient):
        raise ApiError(400, "invalid_request", "'patientId' must be a FHIR id")
    problem = base_url_problem(server)
    if problem:
        raise ApiError(400, "invalid_request", f"'fhirServer' {problem}")
    if not caller.allows_fhir_server(server) or not background_server(server, rt.settings)[0]:
        raise ApiError(403, "fhir_server_not_allowed", "fhirServer is not allowed for background work")
    tenant = getattr(caller, "tenant", None) or "default"
    try:
        queued = await run_in_threadpool(
            enqueue_reevaluation, tenant, server.rstrip("/"), patient, "operator", rt.store, False
        )
    except Exception as exc:  # noqa: BLE001
        log.warning("operator re-evaluation could not be queued", extra={"error_type": type(exc).__name__})
        raise ApiError(503, "store_unavailable", "re-evaluation could not be queued") from None
    return JSONResponse({"patient": queued.patient, "taskId": queued.task_id}, status_code=202)


@router.get(
    "/operator/assessments/{patient_id}",
    summary="The stored assessment of one patient (findings, versions, what changed)",
    tags=["background"],
    responses={401: {}, 404: {}, 503: {}},
)
async def operator_assessment(patient_id: str, request: Request):
    rt, caller = await _operator(request)
    tenant = getattr(caller, "tenant", None) or "default"
    try:
        record = await run_in_threadpool(rt.store.get_assessment, tenant, patient_id)
    except Exception as exc:  # noqa: BLE001
        log.warning("stored assessment unavailable", extra={"error_type": type(exc).__name__})
        raise ApiError(503, "store_unavailable", "the store cannot be read now") from None
    if record is None:
        raise ApiError(404, "not_found", "no stored assessment for this patient")
    record.pop("outcome", None)
    record["age_seconds"] = round(rt.store.assessment_age(record), 1)
    return JSONResponse(record)


@router.get(
    "/operator/dead-letters",
    summary="Re-evaluations that failed for good, newest first (reasons, no patient ids)",
    tags=["background"],
    responses={401: {}, 503: {}},
)
async def operator_dead_letters(request: Request):
    rt, caller = await _operator(request)
    tenant = getattr(caller, "tenant", None) or "default"
    try:
        items = await run_in_threadpool(rt.store.dead_letters, tenant, 100)
    except Exception as exc:  # noqa: BLE001
        log.warning("dead letters unavailable", extra={"error_type": type(exc).__name__})
        raise ApiError(503, "store_unavailable", "the store cannot be read now") from None
    return JSONResponse({"deadLetters": items})
