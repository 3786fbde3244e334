"""Builders for realistic FHIR R4 JSON as EHRs send it (codes, statuses, units, references).

Every builder returns plain dicts; dates are relative to ``NOW`` so vignettes read as
"ferritin 30 days ago". Nothing here knows the expected answer.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
PID = "p1"


def at(days_ago: float, now: datetime = NOW) -> str:
    return (now - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def patient(pid: str = PID, gender: str = "female") -> dict:
    return {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"family": "Testperson", "given": ["Alex"]}],
        "gender": gender,
        "birthDate": "1968-03-14",
    }


def condition(
    system: str,
    code: str,
    display: str = "",
    *,
    rid: str | None = None,
    clinical: str | None = "active",
    verification: str | None = "confirmed",
    onset_days: float | None = 400,
    recorded_days: float | None = None,
    extra: list[tuple[str, str, str]] = (),
    pid: str = PID,
) -> dict:
    codings = [{"system": system, "code": code, "display": display}] + [
        {"system": s, "code": c, "display": d} for s, c, d in extra
    ]
    out: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid or _id("cond"),
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "problem-list-item",
                    }
                ]
            }
        ],
        "code": {"coding": codings, "text": display or code},
        "subject": {"reference": f"Patient/{pid}"},
    }
    if clinical is not None:
        out["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": clinical}]}
    if verification is not None:
        out["verificationStatus"] = {"coding": [{"system": VERIFICATION, "code": verification}]}
    if onset_days is not None:
        out["onsetDateTime"] = at(onset_days)
    if recorded_days is not None:
        out["recordedDate"] = at(recorded_days)
    return out


def rls(system: str = ICD10, **kw) -> dict:
    if system == ICD10:
        return condition(ICD10, "G25.81", "Restless legs syndrome", **kw)
    return condition(SCT, "32914008", "Restless legs", **kw)


def observation(
    loinc: str,
    display: str,
    value: float | None,
    unit: str | None,
    *,
    ucum: str | None = None,
    days: float = 30,
    rid: str | None = None,
    status: str = "final",
    effective: str | None = None,
    interpretation: str | None = None,
    comparator: str | None = None,
    pid: str = PID,
) -> dict:
    out: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid or _id("obs"),
        "status": status,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": effective or at(days),
        "issued": effective or at(days - 0.2),
    }
    if value is not None:
        qty: dict[str, Any] = {"value": value}
        if unit is not None:
            qty["unit"] = unit
            qty["system"] = UCUM
            qty["code"] = ucum or unit
        if comparator:
            qty["comparator"] = comparator
        out["valueQuantity"] = qty
    if interpretation:
        out["interpretation"] = [{"coding": [{"system": INTERPRETATION, "code": interpretation}]}]
    return out


def ferritin(value: float, unit: str = "ng/mL", ucum: str | None = None, loinc: str = "2276-4", **kw) -> dict:
    return observation(loinc, "Ferritin [Mass/volume] in Serum or Plasma", value, unit, ucum=ucum, **kw)


def tsat(value: float, **kw) -> dict:
    return observation("2502-3", "Iron saturation [Mass Fraction] in Serum or Plasma", value, "%", **kw)


def iron(value: float, unit: str = "ug/dL", **kw) -> dict:
    return observation("2498-4", "Iron [Mass/volume] in Serum or Plasma", value, unit, **kw)


def tibc(value: float, unit: str = "ug/dL", **kw) -> dict:
    return observation("2500-7", "Iron binding capacity [Mass/volume] in Serum or Plasma", value, unit, **kw)


def egfr(
    value: float, days: float = 30, unit: str = "mL/min/{1.73_m2}", loinc: str = "98979-8", **kw
) -> dict:
    return observation(
        loinc,
        "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood",
        value,
        unit,
        days=days,
        **kw,
    )


def coded_observation(
    loinc: str, display: str, system: str, code: str, answer: str, days: float = 30
) -> dict:
    out = observation(loinc, display, None, None, days=days)
    out["valueCodeableConcept"] = {
        "coding": [{"system": system, "code": code, "display": answer}],
        "text": answer,
    }
    return out


def med_request(
    rxcui: str | None,
    display: str,
    *,
    status: str = "active",
    intent: str = "order",
    authored_days: float = 60,
    rid: str | None = None,
    end_days: float | None = None,
    codings: list[dict] | None = None,
    text: str | None = None,
    pid: str = PID,
) -> dict:
    concept: dict[str, Any] = {
        "coding": codings
        if codings is not None
        else ([{"system": RXNORM, "code": rxcui, "display": display}] if rxcui else [])
    }
    concept["text"] = text or display
    out: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": rid or _id("medrx"),
        "status": status,
        "intent": intent,
        "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": at(authored_days),
        "dosageInstruction": [{"text": "Take 1 tablet by mouth daily"}],
    }
    if end_days is not None:
        out["dispenseRequest"] = {"validityPeriod": {"start": at(authored_days), "end": at(end_days)}}
    return out


def draft(rxcui: str | None, display: str, **kw) -> dict:
    kw.setdefault("authored_days", 0)
    return med_request(rxcui, display, status="draft", **kw)


def medication(
    mid: str, code_codings: list[dict], ingredients: list[dict] = (), text: str | None = None
) -> dict:
    out: dict[str, Any] = {"resourceType": "Medication", "id": mid, "code": {"coding": code_codings}}
    if text:
        out["code"]["text"] = text
    if ingredients:
        out["ingredient"] = [{"itemCodeableConcept": {"coding": [c]}} for c in ingredients]
    return out


def with_reference(order: dict, med: dict, contained: bool) -> dict:
    """Point ``order`` at ``med`` via medicationReference (contained '#id' or 'Medication/id')."""
    order = dict(order)
    order.pop("medicationCodeableConcept", None)
    if contained:
        order["contained"] = [med]
        order["medicationReference"] = {"reference": f"#{med['id']}"}
    else:
        order["medicationReference"] = {"reference": f"Medication/{med['id']}"}
    return order


def searchset(resources: list[dict]) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": r} for r in resources],
    }


def hook_request(hook: str, resources: list[dict], drafts: list[dict] = (), pid: str = PID) -> dict:
    by_kind: dict[str, list[dict]] = {}
    for r in resources:
        by_kind.setdefault(r["resourceType"], []).append(r)
    prefetch: dict[str, Any] = {
        "patient": (by_kind.get("Patient") or [None])[0],
        "conditions": searchset(by_kind.get("Condition", [])),
        "observations1": searchset(by_kind.get("Observation", [])),
        "medications": searchset(by_kind.get("MedicationRequest", []) + by_kind.get("Medication", [])),
    }
    context: dict[str, Any] = {"patientId": pid, "userId": "Practitioner/example"}
    if hook != "patient-view":
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in drafts],
        }
    return {
        "hook": hook,
        "hookInstance": str(uuid.UUID(int=0x1234)),
        "context": context,
        "prefetch": prefetch,
    }
