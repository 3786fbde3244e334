"""FHIR resource dicts -> thin, normalized facts the rules read.

Only the fields the rules need are read, and only codings the terminology index knows turn into
facts: a 600-resource record costs one dict walk and one index lookup per coding. Everything else
(validation with fhir.resources) happens later, and only for the resources that become evidence.

Semantics applied here (rls-clinical.md §1):
- Conditions count when ``clinicalStatus`` is active/recurrence/relapse (or absent, as encounter
  diagnoses often are, unless an ``abatement[x]`` says it is over); ``verificationStatus`` refuted /
  entered-in-error never count; provisional / differential / unconfirmed count as weaker evidence
  (``tentative``).
- Observations count when ``status`` is final/amended/corrected; others are kept apart as
  ``pending`` (a preliminary ferritin means iron studies are under way, not missing). Values are
  converted to the analyte's canonical unit by the terminology; an unknown unit is a warning.
- MedicationRequests: codes first (``medicationCodeableConcept`` or the referenced Medication,
  contained or in the bundle), then the Medication's ingredient codings, then ingredient names in
  the display text, each labelled with its certainty.
"""

from __future__ import annotations

import math
import re
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

COUNTED_CLINICAL = frozenset({"active", "recurrence", "relapse"})
NEVER_VERIFICATION = frozenset({"refuted", "entered-in-error"})
TENTATIVE_VERIFICATION = frozenset({"provisional", "differential", "unconfirmed"})
ABATEMENT = ("abatementDateTime", "abatementPeriod", "abatementString", "abatementAge", "abatementRange")
FINAL_OBSERVATION = frozenset({"final", "amended", "corrected"})
PENDING_OBSERVATION = frozenset({"registered", "preliminary"})
CURRENT_MED_STATUS = frozenset({"active", "on-hold"})
ENDED_MED_STATUS = frozenset({"stopped", "completed"})
# 'proposal' and 'option' are suggestions nobody has adopted; they are not exposures.
COUNTED_INTENT = frozenset(
    {"order", "original-order", "reflex-order", "filler-order", "instance-order", "plan"}
)

_NUMBER = re.compile(r"^\s*(<=|>=|<|>)?\s*(-?\d+(?:\.\d+)?)\s*$")


def parse_date(value: Any) -> datetime | None:
    """FHIR date/dateTime/instant -> aware datetime (partial dates at their start; naive = UTC)."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        if len(value) == 4:
            return datetime(int(value), 1, 1, tzinfo=UTC)
        if len(value) == 7:
            return datetime(int(value[:4]), int(value[5:7]), 1, tzinfo=UTC)
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _codings(concept: Any) -> list[dict]:
    if not isinstance(concept, dict):
        return []
    codings = concept.get("coding")
    return [c for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []


def _code_of(concept: Any) -> str | None:
    for c in _codings(concept):
        code = c.get("code")
        if isinstance(code, str):
            return code
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


# --- facts ---------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)  # identity: facts are compared as objects, never by value
class ConditionFact:
    ref: str
    cause: str
    qualifier: str | None
    system: str
    code: str
    display: str | None
    date: datetime | None
    tentative: bool
    no_status: bool


@dataclass(slots=True, eq=False)  # identity: facts are compared as objects, never by value
class LabFact:
    ref: str
    analyte: str
    system: str
    code: str
    display: str | None
    value: float | None  # canonical unit; None when not numeric (see coded / text)
    unit: str | None  # canonical unit
    raw_value: Any
    raw_unit: str | None
    comparator: str | None
    date: datetime | None
    interpretation: frozenset[str]
    coded: tuple[tuple[str, str], ...] = ()  # valueCodeableConcept codings (system, code)
    text: str | None = None
    # Why a result that exists could not be read: "unit" (not convertible), "value" (not a usable
    # number), "invalid" (the resource failed FHIR validation); the rules add "undated" and "bounds"
    # (findings.UNREADABLE). Such results sit in Facts.unread_labs: never a value to compare, but no
    # rule may call the analyte missing either.
    unreadable: str | None = None


@dataclass(slots=True, eq=False)  # identity: facts are compared as objects, never by value
class MedFact:
    ref: str
    status: str
    intent: str | None
    draft: bool  # a draft order being decided in this hook call
    authored: datetime | None
    ended: datetime | None
    ingredients: list[Any]  # DrugIngredient
    certainty: str  # 'code' | 'ingredient' | 'text'
    system: str | None
    code: str | None
    display: str | None
    route_excluded: bool
    via_reference: str | None = None  # 'contained' | 'bundle' when the drug came from a Medication

    @property
    def in_effect(self) -> bool:
        """A draft order being decided, or an active / on-hold one: what the patient takes or will take."""
        return self.draft or self.status in ("active", "on-hold")


@dataclass(slots=True, eq=False)  # identity: facts are compared as objects, never by value
class ProcedureFact:
    ref: str
    system: str | None
    code: str | None
    display: str | None
    date: datetime | None


SURGICAL_CATEGORY = "387713003"  # SNOMED CT "Surgical procedure" (Procedure.category)


@dataclass(frozen=True)
class ReadScope:
    """What the rules can use: the analytes they read, and the oldest date any look-back window
    reaches (older labs are not converted at all; ``keep_old`` analytes are kept to say "stale")."""

    analytes: frozenset[str] = frozenset()
    horizon: datetime | None = None
    keep_old: frozenset[str] = frozenset()
    lab_codes: frozenset[str] | None = None  # LOINC codes of those analytes: a cheap first filter

    def __post_init__(self):
        if not self.analytes:
            object.__setattr__(self, "analytes", ALL_ANALYTES)


class _All(frozenset):
    def __contains__(self, item: object) -> bool:
        return True


ALL_ANALYTES = _All()


@dataclass
class Facts:
    conditions: list[ConditionFact] = field(default_factory=list)
    labs: list[LabFact] = field(default_factory=list)
    pending_labs: list[LabFact] = field(default_factory=list)
    # final labs with a quantity the tables cannot convert (unit not recognised): not evidence of a
    # value, but a result exists, so no rule may call the analyte missing
    unread_labs: list[LabFact] = field(default_factory=list)
    # draft orders that failed FHIR validation: never judged as orders, but the clinician deciding
    # them is told that their drug could not be checked (a silent skip would read as "nothing to flag")
    rejected_drafts: list[MedFact] = field(default_factory=list)
    # refs of active record orders that are also among the drafts (an order being changed or renewed)
    continued: set[str] = field(default_factory=set)
    meds: list[MedFact] = field(default_factory=list)
    surgeries: list[ProcedureFact] = field(default_factory=list)
    patient: str | None = None
    # Patient.gender ('female', 'male', 'other', 'unknown'): the one sex-related element every R4 Patient
    # may carry; the AUDIT-C cut-off depends on it (3 for women, 4 otherwise)
    gender: str | None = None
    warnings: list[str] = field(default_factory=list)
    # ref -> resource dict, for every resource a fact came from (validated only if it becomes evidence)
    sources: dict[str, dict] = field(default_factory=dict)
    # ref -> lenient repair notes (recorded so cards can say the input was read leniently)
    repairs: dict[str, list[str]] = field(default_factory=dict)

    def by_cause(self, cause: str) -> list[ConditionFact]:
        return [c for c in self.conditions if c.cause == cause]

    def labs_of(self, *analytes: str) -> list[LabFact]:
        return [lab for lab in self.labs if lab.analyte in analytes]


class _Memo:
    """Memo of terminology lookups: a record repeats the same few codes (CBC/BMP panels, refills of
    one product) hundreds of times, and a batch of thousands of patients the same few hundred. One
    memo per terminology object (``_memo_for``; the terminology is immutable, so an answer never goes
    stale); each table stops remembering at ``MEMO_MAX`` entries, so a stream of unique codes or
    texts cannot grow memory (lookups past it are simply not remembered)."""

    __slots__ = ("_t", "_cond", "_lab", "_drug", "_text", "_units", "__weakref__")

    def __init__(self, t: Any):
        self._t = t
        self._cond: dict = {}
        self._lab: dict = {}
        self._drug: dict = {}
        self._text: dict = {}
        self._units: dict = {}

    def condition_matches(self, system: str, code: str):
        key = (system, code)
        found = self._cond.get(key)
        if found is None:
            found = self._t.condition_matches(system, code)
            if len(self._cond) < MEMO_MAX:
                self._cond[key] = found
        return found

    def lab(self, system: str, code: str):
        key = (system, code)
        found = self._lab.get(key, _UNSET)
        if found is _UNSET:
            found = self._t.lab(system, code)
            if len(self._lab) < MEMO_MAX:
                self._lab[key] = found
        return found

    def drug_by_code(self, system: str, code: str):
        key = (system, code)
        found = self._drug.get(key, _UNSET)
        if found is _UNSET:
            found = self._t.drug_by_code(system, code)
            if len(self._drug) < MEMO_MAX:
                self._drug[key] = found
        return found

    def drug_by_text(self, text: str):
        found = self._text.get(text)
        if found is None:
            found = self._t.drug_by_text(text)
            if len(self._text) < MEMO_MAX:
                self._text[text] = found
        return found

    def convert(self, analyte: str, value: float, unit: str) -> float | None:
        """``t.convert`` through a per-call memo of the (affine: factor and offset, units.csv) conversion
        of each (analyte, unit) pair: two table lookups per unit spelling instead of one per value."""
        key = (analyte, unit)
        line = self._units.get(key)
        if line is None:
            zero, one = self._t.convert(analyte, 0.0, unit), self._t.convert(analyte, 1.0, unit)
            line = (one - zero, zero) if zero is not None and one is not None else False
            if len(self._units) < MEMO_MAX:
                self._units[key] = line
        return None if line is False else line[0] * value + line[1]

    def __getattr__(self, name: str):  # convert, route_of_text, ... straight through
        return getattr(self._t, name)


MEMO_MAX = 20_000  # entries per lookup table of a terminology's memo
_UNSET = object()
_MEMOS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _memo_for(t: Any) -> _Memo:
    """The terminology's shared memo (weakly held: it goes with the terminology object)."""
    try:
        return _MEMOS[t]
    except KeyError:
        # The memo reaches its terminology through a weak proxy: a strong reference from the value
        # would keep the key (and a reloaded terminology's memo) alive forever.
        memo = _MEMOS[t] = _Memo(weakref.proxy(t))
        return memo
    except TypeError:  # cannot be weakly referenced (a test double): a memo for this call only
        return _Memo(t)


# --- conditions ----------------------------------------------------------------------------------


def _condition(res: dict, ref: str, t: Any, facts: Facts) -> None:
    codings = _codings(res.get("code"))
    if not codings:
        return
    matched: list[tuple[dict, Any]] = []
    for c in codings:
        system, code = c.get("system"), c.get("code")
        if isinstance(system, str) and isinstance(code, str):
            for m in t.condition_matches(system, code):
                matched.append((c, m))
    if not matched:
        return
    verification = _code_of(res.get("verificationStatus"))
    if verification in NEVER_VERIFICATION:
        return
    clinical = _code_of(res.get("clinicalStatus"))
    if clinical is not None and clinical not in COUNTED_CLINICAL:
        return
    if clinical is None and any(res.get(k) not in (None, "", {}) for k in ABATEMENT):
        return  # abated with no status given: over (FHIR con-4: abatement means inactive/resolved/remission)
    date = parse_date(res.get("onsetDateTime")) or parse_date(res.get("recordedDate"))
    if date is None and isinstance(res.get("onsetPeriod"), dict):
        date = parse_date(res["onsetPeriod"].get("start"))
    seen: set[tuple[str, str | None]] = set()
    for coding, m in matched:
        key = (m.cause, m.qualifier)
        if key in seen:
            continue
        seen.add(key)
        facts.conditions.append(
            ConditionFact(
                ref=ref,
                cause=m.cause,
                qualifier=m.qualifier,
                system=coding["system"],
                code=coding["code"],
                display=_text(coding.get("display")) or getattr(m, "display", None),
                date=date,
                tentative=verification in TENTATIVE_VERIFICATION,
                no_status=clinical is None,
            )
        )
    facts.sources[ref] = res


# --- observations --------------------------------------------------------------------------------


def _lab_coding(concept: Any, t: Any, lab_codes: frozenset[str] | None) -> tuple[Any, dict | None]:
    """First coding of ``concept`` the lab table knows (hot path: one call per Observation)."""
    if type(concept) is not dict:
        return None, None
    codings = concept.get("coding")
    if type(codings) is not list:
        return None, None
    for c in codings:
        if type(c) is dict:
            system, code = c.get("system"), c.get("code")
            if type(system) is str and type(code) is str:
                if lab_codes is not None and code not in lab_codes and code.strip() not in lab_codes:
                    continue
                lab_def = t.lab(system, code)
                if lab_def is not None:
                    return lab_def, c
    return None, None


# Analytes the rules read only as numbers (iron studies, B12, MMA): a worded answer is a result that
# cannot be read. Others may answer in words or codes that count (hCG 'positive' with a POS flag).
NUMERIC_ONLY = frozenset({"ferritin", "tsat", "iron", "tibc", "b12", "mma"})


def _lab_head(res: dict, t: Any, scope: ReadScope) -> tuple[Any, dict, str, datetime | None] | None:
    """(lab definition, its coding, status, date) of a lab any rule reads, or None."""
    lab_def, coding = _lab_coding(res.get("code"), t, scope.lab_codes)
    if lab_def is None or lab_def.analyte not in scope.analytes:
        return None  # not a lab any rule reads (hemoglobin, MCV, creatinine are context only)
    status = res.get("status")
    if status not in FINAL_OBSERVATION and status not in PENDING_OBSERVATION:
        return None  # cancelled, entered-in-error, unknown: never evidence
    date = (
        parse_date(res.get("effectiveDateTime"))
        or parse_date(
            (res.get("effectivePeriod") or {}).get("start")
            if isinstance(res.get("effectivePeriod"), dict)
            else None
        )
        or parse_date(res.get("effectiveInstant"))
        or parse_date(res.get("issued"))
    )
    too_old = scope.horizon is not None and date is not None and date < scope.horizon
    if too_old and lab_def.analyte not in scope.keep_old:
        return None  # older than every look-back window: no rule can use it
    return lab_def, coding, status, date


def _blank_lab(ref: str, lab_def: Any, coding: dict, date: datetime | None, interp=frozenset()) -> LabFact:
    return LabFact(
        ref=ref,
        analyte=lab_def.analyte,
        system=coding["system"],
        code=coding["code"],
        display=_text(coding.get("display")),
        value=None,
        unit=lab_def.canonical_unit,
        raw_value=None,
        raw_unit=None,
        comparator=None,
        date=date,
        interpretation=interp,
    )


def _rejected_observation(res: dict, ref: str, t: Any, facts: Facts, scope: ReadScope) -> None:
    """A final lab that failed FHIR validation: its value is never used, but the result exists, so it
    is an unread lab (no rule may say "no ferritin in 12 months" because of it)."""
    head = _lab_head(res, t, scope) if isinstance(res, dict) else None
    if head is not None and head[2] in FINAL_OBSERVATION:
        fact = _blank_lab(ref, head[0], head[1], head[3])
        fact.unreadable = "invalid"
        facts.unread_labs.append(fact)


def _observation(res: dict, ref: str, t: Any, facts: Facts, scope: ReadScope) -> None:
    head = _lab_head(res, t, scope)
    if head is None:
        return
    lab_def, coding, status, date = head
    interp = (
        frozenset(
            c.get("code")
            for i in (res.get("interpretation") or [])
            if isinstance(i, dict)
            for c in _codings(i)
            if isinstance(c.get("code"), str)
        )
        if isinstance(res.get("interpretation"), list)
        else frozenset()
    )
    fact = _blank_lab(ref, lab_def, coding, date, interp)
    read = _read_value(res, fact, t, facts.warnings, lab_def)
    final = status in FINAL_OBSERVATION
    if final and read and fact.value is None and lab_def.analyte in NUMERIC_ONLY:
        # A numeric analyte answered in words ('hemolysed', 'see comment'): a result that exists but
        # cannot be compared, never a value and never "no result".
        fact.unreadable, fact.raw_value = "value", (fact.text or "")[:20] or None
        read = False
    if not read:
        if final and fact.unreadable is not None:
            facts.sources[ref] = res
            facts.unread_labs.append(fact)
        elif not final:
            facts.pending_labs.append(fact)  # under way, with or without a value yet
        return
    facts.sources[ref] = res
    (facts.labs if final else facts.pending_labs).append(fact)


def _unitless_is_canonical(lab_def: Any) -> bool:
    """Whether a value sent without a unit is read in the analyte's canonical unit: not when the LOINC
    code itself is of the other kind of quantity (glucose 15074-8 and magnesium 2601-3 are
    [Moles/volume], their canonical unit mg/dL is a mass): a bare 5.2 there is 5.2 mmol/L, never mg/dL."""
    display = getattr(lab_def, "display", "") or ""
    molar_unit = "mol/" in (lab_def.canonical_unit or "")
    return not (("[Moles/" in display and not molar_unit) or ("[Mass/" in display and molar_unit))


def _read_value(res: dict, fact: LabFact, t: Any, warnings: list[str], lab_def: Any = None) -> bool:
    qty = res.get("valueQuantity")
    if isinstance(qty, dict):
        raw = qty.get("value")
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            warnings.append(f"{fact.ref}: {fact.analyte} value is not a number; not used")
            fact.unreadable = "value"
            fact.raw_value = raw[:20] if isinstance(raw, str) else None
            return False
        comparator = qty.get("comparator")
        unit_code, unit_text = qty.get("code"), qty.get("unit")
        return _convert(fact, float(raw), comparator, unit_code, unit_text, t, warnings, lab_def)
    if isinstance(res.get("valueInteger"), int) and not isinstance(res.get("valueInteger"), bool):
        return _convert(fact, float(res["valueInteger"]), None, None, None, t, warnings, lab_def)
    if isinstance(res.get("valueCodeableConcept"), dict):
        concept = res["valueCodeableConcept"]
        fact.coded = tuple(
            (c["system"], c["code"])
            for c in _codings(concept)
            if isinstance(c.get("system"), str) and isinstance(c.get("code"), str)
        )
        fact.text = _text(concept.get("text"))
        return bool(fact.coded or fact.text)
    if isinstance(res.get("valueString"), str):
        m = _NUMBER.match(res["valueString"])
        if m:
            return _convert(fact, float(m.group(2)), m.group(1), None, None, t, warnings, lab_def)
        fact.text = res["valueString"]
        return True
    return False  # no value (dataAbsentReason, components only): nothing to read


def _convert(fact, raw, comparator, unit_code, unit_text, t, warnings, lab_def: Any = None) -> bool:
    if not math.isfinite(raw):
        warnings.append(f"{fact.ref}: {fact.analyte} value is not a finite number; not used")
        return False
    fact.raw_value = int(raw) if raw == int(raw) and abs(raw) < 2**53 else raw
    fact.raw_unit = (
        unit_text if isinstance(unit_text, str) else unit_code if isinstance(unit_code, str) else None
    )
    if raw < 0:  # no analyte the rules read can be negative: a data-entry or interface error
        warnings.append(f"{fact.ref}: {fact.analyte} value is negative; not used")
        fact.unreadable = "value"
        return False
    fact.comparator = comparator if comparator in ("<", "<=", ">", ">=") else None
    units = [u for u in (unit_code, unit_text) if isinstance(u, str) and u.strip()]
    # Judged only for a value without a unit (the lab's definition is read for those only).
    if not units and lab_def is not None and not _unitless_is_canonical(lab_def):
        # No unit, and the code's own kind of quantity is not the canonical unit's: not guessed.
        warnings.append(f"{fact.ref}: no unit given for a {fact.analyte} code in other units; value not used")
        fact.unreadable = "unit"
        return False
    if not units:
        units = [fact.unit or ""]  # no unit given: read as the canonical unit (e.g. '%' for TSAT)
    for unit in units:
        value = t.convert(fact.analyte, raw, unit)
        if value is not None:
            fact.value = value
            return True
    warnings.append(f"{fact.ref}: unit '{units[0][:20]}' not recognised for {fact.analyte}; value not used")
    fact.unreadable = "unit"
    return False


# --- medications ---------------------------------------------------------------------------------


def _medication_index(resources: list[dict]) -> dict[str, dict]:
    """Medications of the input by 'Medication/<id>' and by 'urn:uuid:<id>' (transaction/collection
    Bundles such as Synthea's reference entries by their urn:uuid fullUrl, which equals the id)."""
    index: dict[str, dict] = {}
    for r in resources:
        if type(r) is dict and r.get("resourceType") == "Medication" and isinstance(r.get("id"), str):
            index[f"Medication/{r['id']}"] = r
            index[f"urn:uuid:{r['id']}"] = r
    return index


def _resolve_medication(res: dict, medications: dict[str, dict]) -> tuple[dict | None, str | None]:
    ref = res.get("medicationReference")
    if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
        return None, None
    target = ref["reference"]
    if target.startswith("#"):
        for c in res.get("contained") or []:
            if isinstance(c, dict) and c.get("resourceType") == "Medication" and c.get("id") == target[1:]:
                return c, "contained"
        return None, None
    if target.startswith("urn:uuid:"):
        found = medications.get(target)
        return (found, "bundle") if found is not None else (None, None)
    parts = target.rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    key = "/".join(parts[-2:])
    found = medications.get(key)
    return (found, "bundle") if found is not None else (None, None)


def _end_date(res: dict) -> datetime | None:
    dispense = res.get("dispenseRequest")
    if isinstance(dispense, dict) and isinstance(dispense.get("validityPeriod"), dict):
        end = parse_date(dispense["validityPeriod"].get("end"))
        if end is not None:
            return end
    for dosage in res.get("dosageInstruction") or []:
        if isinstance(dosage, dict) and isinstance(dosage.get("timing"), dict):
            bounds = (dosage["timing"].get("repeat") or {}).get("boundsPeriod")
            if isinstance(bounds, dict) and parse_date(bounds.get("end")):
                return parse_date(bounds.get("end"))
    return None


def _locally_applied(res: dict, medication: dict | None, text: str, t: Any) -> bool:
    """Topical / ophthalmic / otic products have no relevant systemic exposure (rls-clinical.md §1
    "Route"): judged from the route words and SNOMED route codes of terminology/routes.csv, read from
    the product text, ``dosageInstruction.route`` and ``Medication.form``. Used only when the code does
    not name a tabled product with a route (table products carry their own route flag)."""
    by_text = getattr(t, "route_of_text", None)
    by_code = getattr(t, "route_of_code", None)
    if by_text is None or by_code is None:
        return False
    texts = [text]
    codings = []
    for dosage in res.get("dosageInstruction") or []:
        if isinstance(dosage, dict):
            codings += _codings(dosage.get("route"))
            texts.append(
                str((dosage.get("route") or {}).get("text") or "")
                if isinstance(dosage.get("route"), dict)
                else ""
            )
    if medication is not None and isinstance(medication.get("form"), dict):
        codings += _codings(medication["form"])
        texts.append(str(medication["form"].get("text") or ""))
    for c in codings:
        route = by_code(c.get("system"), c.get("code")) if isinstance(c.get("code"), str) else None
        if route is not None and route[1]:
            return True
    return any((by_text(x) or ("", False))[1] for x in texts if x)


def _match_drug(concept: Any, medication: dict | None, t: Any):
    """(ingredients, certainty, coding, route_excluded) of the first tier that matches."""
    for c in _codings(concept):
        system, code = c.get("system"), c.get("code")
        if isinstance(system, str) and isinstance(code, str):
            drug = t.drug_by_code(system, code)
            if drug is not None:
                # Only a product row with a dose form knows its route. An ingredient (IN/PIN), SCDC or ATC
                # substance code names none (timolol 10600 is eye drops as often as tablets): None lets the
                # order's own route and wording decide, as for a product the tables do not list.
                route_excluded = bool(drug.route_excluded) if getattr(drug, "route", "") else None
                return list(drug.ingredients), "code", c, route_excluded
    if medication is not None:
        found = []
        for item in medication.get("ingredient") or []:
            if not isinstance(item, dict):
                continue
            for c in _codings(item.get("itemCodeableConcept")):
                system, code = c.get("system"), c.get("code")
                if isinstance(system, str) and isinstance(code, str):
                    drug = t.drug_by_code(system, code)
                    if drug is not None:
                        found.extend(drug.ingredients)
                        break
        if found:
            return found, "ingredient", None, None
    return None


def _medication_request(
    res: dict, ref: str, draft: bool, medications: dict[str, dict], t: Any, facts: Facts
) -> None:
    status = res.get("status")
    if not isinstance(status, str):
        return
    if draft:
        if status not in ("draft", "active"):
            return  # a cancelled or entered-in-error draft decides nothing
    elif status not in CURRENT_MED_STATUS and status not in ENDED_MED_STATUS:
        return  # draft in the record (not being decided), cancelled, entered-in-error, unknown
    intent = res.get("intent") if isinstance(res.get("intent"), str) else None
    if not draft and intent is not None and intent not in COUNTED_INTENT:
        return
    medication, via = _resolve_medication(res, medications)
    concept = res.get("medicationCodeableConcept")
    if medication is not None:
        concept = medication.get("code")
    texts = [
        _text(concept.get("text")) if isinstance(concept, dict) else None,
        *(_text(c.get("display")) for c in _codings(concept)),
        _text((res.get("medicationReference") or {}).get("display"))
        if isinstance(res.get("medicationReference"), dict)
        else None,
    ]
    text = " / ".join(dict.fromkeys(x for x in texts if x))
    matched = _match_drug(concept, medication, t)
    coding = None
    if matched is None:
        if not text:
            return
        ingredients = list(t.drug_by_text(text))
        if not ingredients:
            return
        certainty, route_excluded = "text", None
    else:
        ingredients, certainty, coding, route_excluded = matched
    if route_excluded is None:
        route_excluded = _locally_applied(res, medication, text, t)
    facts.meds.append(
        MedFact(
            ref=ref,
            status=status,
            intent=intent,
            draft=draft,
            authored=parse_date(res.get("authoredOn")),
            ended=_end_date(res),
            ingredients=ingredients,
            certainty=certainty,
            system=coding.get("system") if coding else None,
            code=coding.get("code") if coding else None,
            display=(_text(coding.get("display")) if coding else None) or text or None,
            route_excluded=route_excluded,
            via_reference=via,
        )
    )
    facts.sources[ref] = res


# --- procedures ----------------------------------------------------------------------------------


def _procedure(res: dict, ref: str, facts: Facts) -> None:
    """Completed surgical procedures (Procedure.category 'Surgical procedure'), when a Bundle has them."""
    if res.get("status") != "completed":
        return
    if not any(c.get("code") == SURGICAL_CATEGORY for c in _codings(res.get("category"))):
        return
    period = res.get("performedPeriod")
    date = parse_date(res.get("performedDateTime")) or (
        parse_date(period.get("end") or period.get("start")) if isinstance(period, dict) else None
    )
    coding = next(iter(_codings(res.get("code"))), {})
    facts.surgeries.append(
        ProcedureFact(
            ref=ref,
            system=coding.get("system") if isinstance(coding.get("system"), str) else None,
            code=coding.get("code") if isinstance(coding.get("code"), str) else None,
            display=_text(coding.get("display")) or _text((res.get("code") or {}).get("text")),
            date=date,
        )
    )
    facts.sources[ref] = res


# --- entry point ---------------------------------------------------------------------------------


def patient_of_reference(reference: str) -> str | None:
    """'Patient/<id>' named by a reference ('Patient/p1', 'https://ehr/fhir/Patient/p1/_history/2'),
    or None when it names no Patient."""
    if "Patient/" not in reference:
        return None
    return "Patient/" + reference.rsplit("Patient/", 1)[1].split("/")[0]


def _patient_ref(res: dict) -> str | None:
    if res.get("resourceType") == "Patient" and isinstance(res.get("id"), str):
        return f"Patient/{res['id']}"
    subject = res.get("subject")
    if isinstance(subject, dict) and isinstance(subject.get("reference"), str):
        return patient_of_reference(subject["reference"])
    return None


def _belongs_elsewhere(res: dict, patient: str) -> bool:
    """True when ``res`` names a patient other than ``patient`` ('Patient/<id>')."""
    subject = res.get("subject")
    if type(subject) is dict and subject.get("reference") == patient:
        return False  # the common case, without parsing the reference
    owner = _patient_ref(res)
    return owner is not None and owner != patient


def resource_refs(resources: list[dict], drafts: list[dict]):
    """(ref, resource) for every resource dict, drafts first. An id-less resource gets a positional
    ref ('Condition/#3', 'draft:MedicationRequest/#0') so one bad sibling never shadows another."""
    for prefix, batch in (("draft:", drafts), ("", resources)):
        for i, res in enumerate(batch):
            if not isinstance(res, dict):
                continue
            rid = res.get("id")
            if isinstance(rid, str) and rid:
                yield f"{res.get('resourceType')}/{rid}", res
            else:
                yield f"{prefix}{res.get('resourceType')}/#{i}", res


def extract(
    resources: list[dict],
    drafts: list[dict],
    t: Any,
    skip: frozenset[str] = frozenset(),
    scope: ReadScope | None = None,
    patient: str | None = None,
) -> Facts:
    """Facts from the record (``resources``) and the draft orders being decided (``drafts``).

    ``skip`` holds refs of resources that failed validation: they contribute nothing. ``patient``
    ('Patient/<id>', the patient the call is about): a resource whose subject names another patient
    is not read (an EHR that mixes records must not put one patient's ferritin on another's card).
    """
    facts = Facts()
    scope = scope or ReadScope()
    t = _memo_for(t)
    medications = _medication_index(resources) | _medication_index(drafts)
    draft_refs: set[str] = set()
    n_drafts = sum(1 for d in drafts if isinstance(d, dict))
    for n, (ref, res) in enumerate(resource_refs(resources, drafts)):
        draft = n < n_drafts
        rtype = res.get("resourceType")
        if patient is not None and _belongs_elsewhere(res, patient):
            facts.warnings.append(f"{ref}: belongs to another patient than the one in context; not used")
            continue
        try:
            if ref in skip:
                if rtype == "Observation":
                    _rejected_observation(res, ref, t, facts, scope)
                elif rtype == "MedicationRequest" and draft:
                    scratch = Facts()
                    _medication_request(res, ref, True, medications, t, scratch)
                    facts.rejected_drafts.extend(scratch.meds)
                continue
            if rtype == "Condition":
                _condition(res, ref, t, facts)
            elif rtype == "Observation":
                _observation(res, ref, t, facts, scope)
            elif rtype == "MedicationRequest":
                if not draft and ref in draft_refs:
                    if res.get("status") in ("active", "on-hold"):
                        facts.continued.add(ref)  # the draft changes a current order: therapy goes on
                    continue  # the same order also in the record: it is being decided
                if draft:
                    draft_refs.add(ref)
                _medication_request(res, ref, draft, medications, t, facts)
            elif rtype == "Procedure":
                _procedure(res, ref, facts)
            elif rtype == "Patient":
                facts.patient = _patient_ref(res) or facts.patient
                gender = res.get("gender")
                facts.gender = gender if isinstance(gender, str) else facts.gender
                continue
        except (TypeError, AttributeError, ValueError, KeyError, ArithmeticError) as exc:
            # Malformed shapes the thin reader did not anticipate: skip the resource, keep going.
            facts.warnings.append(f"{ref}: could not be read ({type(exc).__name__}); skipped")
            continue
        if facts.patient is None:
            facts.patient = _patient_ref(res)
    return facts
