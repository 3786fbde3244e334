"""Thin FHIR structs: only the fields the clinical rules read, for hook prefetch and batch screening.

Hook prefetch and Bulk NDJSON are far larger than what the rules need (DESIGN §1 "Parsing
strategy"): decoding straight from bytes into these msgspec Structs skips every other field at C
speed (the hook: ``rls_cds.api.decode``; the batch: ``rls_cds.panels.work``). A resource kept for
evaluation travels between workers as msgpack of these Structs (tag included), which an untyped
decode turns back into small FHIR-shaped dicts for the clinical core, exactly like a hook's
resources, so a patient gets the same answer on every path.

The Structs are ``gc=False``: they hold strings, numbers and other thin Structs only (no reference
cycles are possible), so the hundreds of thousands a map decodes are not tracked by the cyclic GC.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from rls_cds.core.facts import patient_of_reference

# An integer orjson (the whole-parse path) also reads as an integer; beyond, the thin decode refuses it
# and the resource is read whole, so both paths see the same value.
Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]


class Coding(Struct, gc=False, omit_defaults=True):
    system: str | None = None
    code: str | None = None
    display: str | None = None


class Concept(Struct, gc=False, omit_defaults=True):
    coding: list[Coding] = []
    text: str | None = None


class Reference(Struct, gc=False, omit_defaults=True):
    reference: str | None = None
    display: str | None = None


class LabCode(Struct, gc=False, omit_defaults=True):
    """Observation.code: the core reads the codings only (LOINC lookup, display for evidence)."""

    coding: list[Coding] = []


class LabQuantity(Struct, gc=False, omit_defaults=True):
    """Observation.valueQuantity: the unit is read from `code` (UCUM) or `unit`, never `system`."""

    value: float | None = None
    comparator: str | None = None
    unit: str | None = None
    code: str | None = None


class Period(Struct, gc=False, omit_defaults=True):
    start: str | None = None
    end: str | None = None


class Repeat(Struct, gc=False, omit_defaults=True):
    boundsPeriod: Period | None = None  # noqa: N815


class Timing(Struct, gc=False, omit_defaults=True):
    repeat: Repeat | None = None


class Dosage(Struct, gc=False, omit_defaults=True):
    text: str | None = None
    route: Concept | None = None
    timing: Timing | None = None


class DispenseRequest(Struct, gc=False, omit_defaults=True):
    validityPeriod: Period | None = None  # noqa: N815


class Ingredient(Struct, gc=False, omit_defaults=True):
    itemCodeableConcept: Concept | None = None  # noqa: N815


class Contained(Struct, gc=False, omit_defaults=True):
    """A contained resource: only Medications matter (medicationReference '#id')."""

    resourceType: str | None = None  # noqa: N815
    id: str | None = None
    code: Concept | None = None
    form: Concept | None = None
    ingredient: list[Ingredient] = []


class Patient(Struct, gc=False, tag_field="resourceType", tag="Patient", omit_defaults=True):
    id: str | None = None
    gender: str | None = None
    birthDate: str | None = None  # noqa: N815
    deceasedBoolean: bool | None = None  # noqa: N815
    deceasedDateTime: str | None = None  # noqa: N815


class Condition(Struct, gc=False, tag_field="resourceType", tag="Condition", omit_defaults=True):
    id: str | None = None
    clinicalStatus: Concept | None = None  # noqa: N815
    verificationStatus: Concept | None = None  # noqa: N815
    code: Concept | None = None
    subject: Reference | None = None
    onsetDateTime: str | None = None  # noqa: N815
    onsetPeriod: Period | None = None  # noqa: N815
    abatementDateTime: str | None = None  # noqa: N815
    abatementPeriod: Period | None = None  # noqa: N815
    abatementString: str | None = None  # noqa: N815
    # Only their presence is read (an abated condition with no clinicalStatus is over): kept as sent.
    abatementAge: dict | None = None  # noqa: N815
    abatementRange: dict | None = None  # noqa: N815
    recordedDate: str | None = None  # noqa: N815


class Observation(Struct, gc=False, tag_field="resourceType", tag="Observation", omit_defaults=True):
    id: str | None = None
    status: str | None = None
    code: LabCode | None = None
    subject: Reference | None = None
    effectiveDateTime: str | None = None  # noqa: N815
    effectivePeriod: Period | None = None  # noqa: N815
    effectiveInstant: str | None = None  # noqa: N815
    issued: str | None = None
    valueQuantity: LabQuantity | None = None  # noqa: N815
    valueCodeableConcept: Concept | None = None  # noqa: N815
    valueString: str | None = None  # noqa: N815
    valueInteger: Int64 | None = None  # noqa: N815
    interpretation: list[Concept] = []


class MedicationRequest(
    Struct, gc=False, tag_field="resourceType", tag="MedicationRequest", omit_defaults=True
):
    id: str | None = None
    status: str | None = None
    intent: str | None = None
    subject: Reference | None = None
    authoredOn: str | None = None  # noqa: N815
    medicationCodeableConcept: Concept | None = None  # noqa: N815
    medicationReference: Reference | None = None  # noqa: N815
    contained: list[Contained] = []
    dispenseRequest: DispenseRequest | None = None  # noqa: N815
    dosageInstruction: list[Dosage] = []  # noqa: N815
    doNotPerform: bool | None = None  # noqa: N815


class Medication(Struct, gc=False, tag_field="resourceType", tag="Medication", omit_defaults=True):
    id: str | None = None
    code: Concept | None = None
    form: Concept | None = None
    ingredient: list[Ingredient] = []


Resource = Patient | Condition | Observation | MedicationRequest | Medication
KINDS = ("Patient", "Condition", "Observation", "MedicationRequest", "Medication")

LINE_DECODER = msgspec.json.Decoder(Resource)
PACK_ENCODER = msgspec.msgpack.Encoder()


def patient_key(res: Resource) -> str | None:
    """'Patient/<id>' the resource belongs to (None for Medications and unreferenced resources)."""
    if isinstance(res, Patient):
        return f"Patient/{res.id}" if res.id else None
    if isinstance(res, Medication):
        return None
    ref = res.subject.reference if res.subject is not None else None
    # The core's reading: absolute references and '/_history/<v>' name the same patient (the copy here
    # kept '/_history/2' in the key, so such a resource was filed under a patient of its own).
    return patient_of_reference(ref) if ref else None
