"""fhir.resources (R4B models) validation of evidence resources and of every resource we emit.

Full-model validation costs far more than reading the JSON (DESIGN §1), so the engine calls this
only for resources that become evidence (and for everything in ``strict`` mode). A failure is
reported by resource type/id and the failing *field path* only: pydantic's own messages quote the
offending input, which may be PHI.

Lenient repairs: some EHRs and the CDS Hooks sandbox send draft MedicationRequests with
``category`` as one object instead of an array. That one deviation is repaired (on a copy) and
recorded, so the order is still judged and the card can say the input was read leniently.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import ValidationError

from rls_cds.core.resources import ref_of

# Fields that are arrays in FHIR R4 but are sometimes sent as a single object.
_ARRAY_FIELDS = {
    "MedicationRequest": ("category", "dosageInstruction", "note", "reasonCode", "identifier"),
    "Observation": ("category", "interpretation", "note", "identifier", "performer"),
    "Condition": ("category", "note", "identifier"),
}


@cache
def _model(resource_type: str):
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return None


def repair(resource: dict) -> tuple[dict, list[str]]:
    """A copy of ``resource`` with known harmless deviations fixed, plus what was fixed."""
    fields = _ARRAY_FIELDS.get(resource.get("resourceType"), ())
    notes = []
    fixed = resource
    for name in fields:
        value = fixed.get(name)
        if isinstance(value, dict):
            if fixed is resource:
                fixed = dict(resource)
            fixed[name] = [value]
            notes.append(f"'{name}' was sent as an object, read as a one-element array")
    return fixed, notes


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc or '(resource)'}: {err.get('type', 'invalid')}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def validate(resource: Any) -> tuple[bool, str | None, list[str]]:
    """(valid, reason, repairs). ``reason`` names fields and error types only, never values."""
    if not isinstance(resource, dict):
        return False, "not a JSON object", []
    model = _model(str(resource.get("resourceType")))
    if model is None:
        return False, "unknown resourceType", []
    fixed, notes = repair(resource)
    try:
        model.model_validate(fixed)
    except ValidationError as exc:
        return False, _describe(exc), notes
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        return False, f"unreadable ({type(exc).__name__})", notes
    return True, None, notes


def check_emitted(resource: dict) -> dict:
    """Validate a resource the service is about to emit; a failure here is a bug, so raise it."""
    ok, reason, _ = validate(resource)
    if not ok:
        raise ValueError(f"emitted {ref_of(resource)} is not valid FHIR R4B: {reason}")
    return resource
