"""Request and response shapes, declared for the OpenAPI document.

Hook bodies are parsed with orjson and checked by hand (hooks.py) because pydantic parsing of a
600-resource prefetch would cost more than the whole evaluation; these models only document the
contract. They are flat (free-form objects inside) so the schema has no references to resolve.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class HookRequest(BaseModel):
    hook: str = Field(description="The hook that fired; must be this service's hook")
    hookInstance: str = Field(description="Unique id of this hook invocation")
    context: dict[str, Any] = Field(description="Hook context (patientId, userId, draftOrders, ...)")
    fhirServer: str | None = Field(None, description="FHIR base URL used when prefetch is missing")
    fhirAuthorization: dict[str, Any] | None = Field(
        None, description="OAuth 2.0 bearer token for fhirServer"
    )
    prefetch: dict[str, Any] | None = Field(None, description="Prefetched FHIR data, keyed as in discovery")


class FeedbackItem(BaseModel):
    card: str
    outcome: Literal["accepted", "overridden"]
    outcomeTimestamp: str
    acceptedSuggestions: list[dict[str, Any]] | None = None
    overrideReason: dict[str, Any] | None = None


class FeedbackRequest(BaseModel):
    feedback: list[FeedbackItem]


class ErrorBody(BaseModel):
    error: str
    detail: str


class CardsResponse(BaseModel):
    cards: list[dict[str, Any]]
    systemActions: list[dict[str, Any]] = []


class DiscoveryResponse(BaseModel):
    services: list[dict[str, Any]]


def _inline_refs(node: Any, defs: dict) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.rsplit("/", 1)[1]], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def request_body(model: type[BaseModel]) -> dict:
    """openapi_extra for an endpoint that reads its JSON body itself (references inlined)."""
    schema = model.model_json_schema()
    schema = _inline_refs(schema, schema.get("$defs", {}))
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }


def error_responses(*codes: int) -> dict[int | str, dict]:
    return {code: {"model": ErrorBody} for code in codes}
