"""POST /cds-services/{id}/feedback: CDS Hooks 2.0 card feedback (1.x single-object form accepted)."""

from __future__ import annotations

import logging
from datetime import datetime

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from rls_cds.api.errors import ApiError, check_json_content_type, parse_json_object, read_body
from rls_cds.api.models import FeedbackRequest, error_responses, request_body
from rls_cds.api.runtime import Runtime

log = logging.getLogger("rls_cds.api")
router = APIRouter()

_OUTCOMES = {"accepted", "overridden"}


def _validate_item(i: int, item: object) -> dict:
    where = f"feedback[{i}]"
    if not isinstance(item, dict):
        raise ApiError(400, "invalid_feedback", f"{where} must be an object")
    card = item.get("card")
    if not isinstance(card, str) or not card or len(card) > 128:  # ours are UUIDs; it becomes a Redis key
        raise ApiError(400, "invalid_feedback", f"{where}.card must be the card's uuid")
    if item.get("outcome") not in _OUTCOMES:
        raise ApiError(400, "invalid_feedback", f"{where}.outcome must be 'accepted' or 'overridden'")
    stamp = item.get("outcomeTimestamp")
    try:
        datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, "invalid_feedback", f"{where}.outcomeTimestamp must be an ISO 8601 instant"
        ) from None
    for name in ("acceptedSuggestions",):
        if item.get(name) is not None and not isinstance(item[name], list):
            raise ApiError(400, "invalid_feedback", f"{where}.{name} must be an array")
    if item.get("overrideReason") is not None and not isinstance(item["overrideReason"], dict):
        raise ApiError(400, "invalid_feedback", f"{where}.overrideReason must be an object")
    return item


def _items(obj: dict) -> list[dict]:
    raw = obj.get("feedback")
    if raw is None and "card" in obj:
        raw = [obj]  # CDS Hooks 1.x: one feedback object per call
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "invalid_feedback", "'feedback' must be a non-empty array")
    if len(raw) > 1000:
        raise ApiError(413, "too_much_feedback", "at most 1000 feedback items per call")
    return [_validate_item(i, item) for i, item in enumerate(raw)]


@router.post(
    "/cds-services/{service_id}/feedback",
    responses=error_responses(400, 401, 404, 408, 413, 415, 503),
    openapi_extra=request_body(FeedbackRequest),
    summary="Report what the user did with cards (accepted / overridden)",
    tags=["cds-hooks"],
)
async def feedback(service_id: str, request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    if service_id not in rt.catalogue:
        raise ApiError(404, "unknown_service", "no CDS service with this id; see GET /cds-services")
    caller = await rt.authenticate(request)
    check_json_content_type(request)
    body = await read_body(request, rt.settings.max_body_bytes, rt.settings.body_timeout_seconds)
    items = _items(parse_json_object(body, rt.settings.max_json_depth))
    if rt.feedback is None:
        raise ApiError(503, "store_unavailable", "feedback cannot be stored: no store is configured")
    tenant = getattr(caller, "tenant", None) or "default"
    seconds = int(rt.settings.feedback_suppression_hours * 3600)
    for item in items:
        stored = await run_in_threadpool(rt.feedback.record, tenant, service_id, item, seconds)
        if not stored:
            raise ApiError(503, "store_unavailable", "feedback could not be stored; try again later")
        rt.metrics.feedback.labels(item["outcome"]).inc()
    log.info("feedback stored", extra={"service_id": service_id, "count": len(items)})
    return Response(status_code=200, content=b"{}", media_type="application/json")
