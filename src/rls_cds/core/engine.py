"""The clinical core's entry points: ``evaluate`` (resources -> Assessment) and ``render_cards``.

Pure: no I/O, no clock (``now`` is a parameter), no state beyond the terminology passed in. The
hooks, the background re-evaluation and the nightly batch all call these, so a patient gets the
same answer whichever path reaches them.

Pipeline: thin facts from every resource (``facts.extract``: one index lookup per coding) -> rules
-> fhir.resources validation of the resources that became evidence only -> if any of them is
invalid, it is dropped with a warning (type/id/field, no values) and the rules run again without it,
so its siblings are still used. ``strict=True`` validates every resource first (diagnosis mode).
"""

from __future__ import annotations

import contextlib
import hashlib
import weakref
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson

from rls_cds.core.cards import render_cards
from rls_cds.core.facts import Facts, ReadScope, extract, patient_of_reference, resource_refs
from rls_cds.core.resources import flatten
from rls_cds.core.rules import (
    ANALYTES_KEPT_OLD,
    ANALYTES_READ,
    Context,
    Evidence,
    Finding,
    condition_evidence,
    run_all,
)
from rls_cds.core.validation import validate

__all__ = ["Assessment", "Evidence", "Finding", "evaluate", "render_cards"]

DATA_KINDS = frozenset({"Condition", "Observation", "MedicationRequest"})
_MAX_PASSES = 4  # validation failures among evidence are rare; bound the re-runs anyway
DRAFT_CONTAINER = "context.draftOrders"  # key in Assessment.repairs: lenient readings of the container


class Assessment(msgspec.Struct, kw_only=True):
    findings: list[Finding]
    warnings: list[str]
    table_version: str
    fingerprint: str
    now: str
    patient: str | None = None
    has_rls: bool = False
    rls_evidence: list[Evidence] = []
    missing: list[str] = []
    repairs: dict[str, list[str]] = {}


def _as_resources(resources: Any) -> tuple[list[dict], list[str]]:
    if resources is None:
        return [], []
    if isinstance(resources, dict):
        return flatten(resources)
    out: list[dict] = []
    nested: list[Any] = []
    for r in (
        resources
        if isinstance(resources, Iterable) and not isinstance(resources, str | bytes)
        else [resources]
    ):
        if isinstance(r, dict) and isinstance(r.get("resourceType"), str) and r["resourceType"] != "Bundle":
            out.append(r)
        else:
            nested.append(r)
    warnings: list[str] = []
    if nested:
        more, warnings = flatten(nested)
        out.extend(more)
    return out, warnings


def _fingerprint(version: str, facts: Facts, missing: frozenset[str]) -> str:
    """Hash of what the rules read (not the raw JSON): unchanged facts = unchanged fingerprint."""
    h = hashlib.sha256(version.encode())
    h.update(orjson.dumps(sorted(missing)))
    for c in sorted(facts.conditions, key=lambda c: (c.ref, c.cause, c.qualifier or "")):
        h.update(orjson.dumps([c.ref, c.cause, c.qualifier, c.code, c.display, c.date, c.tentative]))
    tagged = [
        (kind, lab)
        for kind, labs in (
            ("final", facts.labs),
            ("pending", facts.pending_labs),
            ("unread", facts.unread_labs),
        )
        for lab in labs
    ]
    for kind, lab in sorted(tagged, key=lambda x: (x[1].ref, x[1].analyte, x[0])):
        h.update(
            orjson.dumps(
                [
                    kind,
                    lab.ref,
                    lab.analyte,
                    lab.value,
                    lab.date,
                    lab.coded,
                    lab.text,
                    sorted(lab.interpretation),
                    lab.unreadable,
                    lab.raw_unit,
                    repr(lab.raw_value),  # as sent; repr: 1e30 must not overflow the hash input
                    lab.code,
                    lab.display,
                    lab.comparator,
                ]
            )
        )
    for m in sorted(facts.meds, key=lambda m: (m.ref, m.draft)):
        h.update(
            orjson.dumps(
                [
                    m.ref,
                    m.status,
                    m.intent,
                    m.draft,
                    m.authored,
                    m.ended,
                    m.certainty,
                    m.route_excluded,
                    [(i.rxcui, i.name) for i in m.ingredients],
                ]
            )
        )
    h.update(orjson.dumps(sorted(facts.continued)))
    h.update(orjson.dumps(facts.gender))
    for p in sorted(facts.surgeries, key=lambda p: p.ref):
        h.update(orjson.dumps([p.ref, p.code, p.date]))
    return h.hexdigest()[:32]


# Per terminology object (weakly held: derived from the loaded index, gone with it): the longest
# look-back and the LOINC codes of the analytes read. Recomputing them cost ~8 us per evaluation,
# an eighth of the fixed per-patient cost of a batch.
_SCOPE_PARTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _scope_parts(terminology: Any) -> tuple[int, frozenset[str] | None]:
    try:
        return _SCOPE_PARTS[terminology]
    except (KeyError, TypeError):
        pass
    days = [int(d) for c in terminology.causes.values() for d in (c.lookback_days or {}).values()]
    codes = getattr(terminology, "lab_codes_for", None)
    parts = (max(days, default=3650), frozenset(codes(ANALYTES_READ)) if codes is not None else None)
    with contextlib.suppress(TypeError):  # an object that cannot be weakly referenced: no memo
        _SCOPE_PARTS[terminology] = parts
    return parts


def _read_scope(terminology: Any, now: datetime) -> ReadScope:
    """Labs older than the longest look-back window of any cause cannot matter: skip them early."""
    max_days, lab_codes = _scope_parts(terminology)
    horizon = now - timedelta(days=max_days + 1)
    return ReadScope(analytes=ANALYTES_READ, horizon=horizon, keep_old=ANALYTES_KEPT_OLD, lab_codes=lab_codes)


def read_scope(terminology: Any, now: datetime) -> ReadScope:
    """What ``evaluate`` reads at all (analytes, look-back horizon): the panel batch drops the rest
    while mapping, before it is shipped to the reduce."""
    return _read_scope(terminology, now)


def _patient_ref_of(patient: str | None) -> str | None:
    """'Patient/<id>' from an id, 'Patient/<id>' or an absolute reference: the same reading the
    resources' subjects get (facts._patient_ref), so the two compare like for like."""
    if not isinstance(patient, str) or not patient.strip():
        return None
    pid = patient.strip()
    return patient_of_reference(pid) or f"Patient/{pid}"


def _evidence_refs(findings: list[Finding], rls: list[Any]) -> set[str]:
    refs = {e.resource for f in findings for e in f.evidence}
    refs.update(c.ref for c in rls)
    return refs


def evaluate(
    resources: Any,
    *,
    now: datetime,
    terminology: Any,
    draft_orders: Any = (),
    missing: Iterable[str] = frozenset(),
    strict: bool = False,
    validate_evidence: bool = True,
    draft_warnings: Iterable[str] = (),
    fingerprint: bool = True,
    as_sent: Callable[[dict], dict | None] | None = None,
    patient: str | None = None,
) -> Assessment:
    """Evaluate every cause rule for one patient's resources (see module doc).

    ``validate_evidence=False`` is for callers whose input was already type-checked while decoding
    (the panel batch decodes NDJSON into msgspec Structs); ``strict`` still validates everything.
    ``draft_warnings``: what ``flatten`` said about the draftOrders container (a Bundle without
    ``type``...): recorded, and shown on the cards about those drafts. ``fingerprint=False`` leaves
    ``Assessment.fingerprint`` empty, for callers that store nothing (a panel run without a store:
    hashing the facts is ~8 % of a batch evaluation). ``as_sent``: for callers that decoded resources
    thin (the hook API), the whole resource as sent, or None; evidence is validated whole.
    ``patient``: the id of the patient the call is about; resources of any other patient are ignored
    (with a warning)."""
    if not isinstance(now, datetime):
        raise TypeError("now must be a datetime")
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    record, warnings = _as_resources(resources)
    drafts, container_warnings = _as_resources(draft_orders)
    container_warnings += [w for w in draft_warnings if isinstance(w, str)]
    container_notes = [
        w.replace("input", DRAFT_CONTAINER, 1) if w.startswith("input") else w for w in container_warnings
    ]
    warnings += container_notes
    missing_kinds = frozenset(k for k in missing if isinstance(k, str))

    skip: set[str] = set()
    checked: dict[str, bool] = {}
    repairs: dict[str, list[str]] = {}
    if drafts and container_notes:
        repairs[DRAFT_CONTAINER] = container_notes

    def check(ref: str, resource: dict) -> None:
        whole = as_sent(resource) if as_sent is not None else None
        ok, reason, notes = validate(resource if whole is None else whole)
        checked[ref] = ok
        if notes:
            repairs[ref] = notes
            warnings.append(f"{ref}: read leniently ({'; '.join(notes)})")
        if not ok:
            skip.add(ref)
            warnings.append(f"{ref}: failed FHIR R4 validation ({reason}); not used")

    if strict:
        for ref, res in resource_refs(record, drafts):
            check(ref, res)

    scope = _read_scope(terminology, now)
    patient_ref = _patient_ref_of(patient)
    for _ in range(_MAX_PASSES):
        facts = extract(record, drafts, terminology, frozenset(skip), scope, patient_ref)
        ctx = Context(facts=facts, now=now, t=terminology, missing=missing_kinds)
        findings = run_all(ctx)
        rls = facts.by_cause("rls")
        if not validate_evidence:
            break
        pending = [
            ref for ref in _evidence_refs(findings, rls) if ref not in checked and ref in facts.sources
        ]
        for ref in sorted(pending):
            check(ref, facts.sources[ref])
        if not any(not checked[ref] for ref in pending):
            break
    else:
        # Pathological input (invalid evidence replaced by more invalid evidence, pass after pass):
        # never cite a resource that failed or skipped validation.
        trusted = {ref for ref, ok in checked.items() if ok}
        findings = [f for f in findings if all(e.resource in trusted for e in f.evidence)]
        warnings.append("some findings were withheld: their evidence kept failing FHIR validation")

    warnings.extend(facts.warnings)
    for f in findings:
        for e in f.evidence:
            if e.resource in repairs:
                e.note = "; ".join(
                    x for x in (e.note, "read leniently: " + "; ".join(repairs[e.resource])) if x
                )
    return Assessment(
        findings=findings,
        warnings=list(dict.fromkeys(warnings)),
        table_version=str(getattr(terminology, "version", "")),
        fingerprint=_fingerprint(str(getattr(terminology, "version", "")), facts, missing_kinds)
        if fingerprint
        else "",
        now=now.isoformat(),
        patient=facts.patient,
        has_rls=bool(rls),
        rls_evidence=[condition_evidence(c) for c in rls],
        missing=sorted(missing_kinds),
        repairs={
            k: v for k, v in repairs.items() if k in _evidence_refs(findings, rls) or k == DRAFT_CONTAINER
        },
    )
