"""Test patients and hook requests for the API tests (FHIR R4 JSON built in code, ids per test)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _days_ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def patient(pid: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1961-04-02"}


def rls_condition(pid: str) -> dict:
    return {
        "resourceType": "Condition",
        "id": f"{pid}-rls",
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "verificationStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
            ]
        },
        "code": {"coding": [{"system": ICD10, "code": "G25.81", "display": "Restless legs syndrome"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": _days_ago(400),
    }


def ferritin(pid: str, value: float, days_ago: int = 30, suffix: str = "1") -> dict:
    return {
        "resourceType": "Observation",
        "id": f"{pid}-ferritin-{suffix}",
        "status": "final",
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
        "code": {
            "coding": [{"system": LOINC, "code": "2276-4", "display": "Ferritin [Mass/volume] in Serum"}]
        },
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": _days_ago(days_ago),
        "valueQuantity": {
            "value": value,
            "unit": "ng/mL",
            "system": "http://unitsofmeasure.org",
            "code": "ng/mL",
        },
    }


def sertraline_order(pid: str, status: str = "active", oid: str | None = None) -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": oid or f"{pid}-sertraline",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "312941", "display": "sertraline 50 MG Oral Tablet"}],
            "text": "sertraline 50 MG Oral Tablet",
        },
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": _days_ago(10),
    }


def gabapentin_order(pid: str, status: str = "draft", oid: str | None = None) -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": oid or f"{pid}-gabapentin",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "310430", "display": "gabapentin 100 MG Oral Capsule"}]
        },
        "subject": {"reference": f"Patient/{pid}"},
    }


def searchset(resources: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def patient_record(
    pid: str, ferritin_value: float | None = 30, active_sertraline: bool = False
) -> list[dict]:
    out = [patient(pid), rls_condition(pid)]
    if ferritin_value is not None:
        out.append(ferritin(pid, ferritin_value))
    if active_sertraline:
        out.append(sertraline_order(pid))
    return out


def full_prefetch(resources: list[dict], service: dict) -> dict:
    """Prefetch for every key of ``service``'s discovery entry, filled from ``resources``."""
    by_type: dict[str, list[dict]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    prefetch = {}
    observations_given = False
    for key, template in service["prefetch"].items():
        kind = template.split("?")[0].split("/")[0]
        if kind == "Patient":
            prefetch[key] = by_type.get("Patient", [None])[0]
        elif kind == "Observation":
            # All observations in the first Observation key, empty bundles for the others.
            prefetch[key] = searchset([] if observations_given else by_type.get("Observation", []))
            observations_given = True
        else:
            prefetch[key] = searchset(by_type.get(kind, []))
    return prefetch


def hook_request(
    hook: str,
    pid: str,
    prefetch: dict | None = None,
    fhir_server: str | None = None,
    token: str | None = None,
    drafts: list[dict] | None = None,
    selections: list[str] | None = None,
) -> dict:
    context: dict = {"patientId": pid, "userId": "Practitioner/example"}
    if hook in ("order-select", "order-sign"):
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in drafts or []],
        }
        if hook == "order-select":
            context["selections"] = (
                selections
                if selections is not None
                else [f"MedicationRequest/{d['id']}" for d in drafts or []]
            )
    if hook == "medication-prescribe":
        context["medications"] = drafts or []
    body: dict = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if prefetch is not None:
        body["prefetch"] = prefetch
    if fhir_server:
        body["fhirServer"] = fhir_server
        if token:
            body["fhirAuthorization"] = {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "patient/*.read",
                "subject": "rls-cds",
            }
    return body
