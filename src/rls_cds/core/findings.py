"""What rules produce (``Finding`` with its ``Evidence``) and the helpers every rule uses to build one:
the evaluation ``Context`` (facts, ``now``, terminology, missing data kinds), thresholds and look-back
windows read from the cause definitions, evidence from facts, and ``make`` (texts from causes.yaml)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import msgspec

from rls_cds.core.facts import ConditionFact, Facts, LabFact, MedFact

# --- output structs (public: the API, workers and panels store and render these) ----------------


class Evidence(msgspec.Struct, omit_defaults=True, kw_only=True):
    resource: str  # 'Observation/abc'
    system: str | None = None
    code: str | None = None
    display: str | None = None
    value: float | str | None = None
    unit: str | None = None
    date: str | None = None  # YYYY-MM-DD
    certainty: str = "code"  # 'code' | 'ingredient' | 'text'
    note: str | None = None


class Finding(msgspec.Struct, kw_only=True):
    cause: str
    strength: str  # 'strong' | 'moderate' | 'weak' | 'informational'
    actionable: bool
    summary: str  # < 140 characters, names the value or drug
    reasoning: str
    action: str
    evidence: list[Evidence]
    data: dict[str, Any] = {}
    title: str = ""
    reference_label: str = ""
    reference_url: str = ""
    background: str = ""  # the cause's detail text (causes.yaml); "{evidence}" marks the evidence list


# Every analyte some rule below reads; other labs (hemoglobin, MCV, creatinine, BUN) are context only
# and are not even converted. Keep in step with the rules (tests/core check each analyte is used).

STRENGTH_ORDER = {"strong": 0, "moderate": 1, "weak": 2, "informational": 3, "insufficient": 4, "none": 5}


@dataclass
class Context:
    facts: Facts
    now: datetime
    t: Any  # Terminology
    missing: frozenset[str]
    _cache: dict[str, Any] = field(default_factory=dict)

    def cause(self, cause_id: str):
        return self.t.causes[cause_id]

    def threshold(self, cause_id: str, name: str) -> float:
        return float(self.cause(cause_id).thresholds[name])

    def lookback(self, cause_id: str, name: str) -> timedelta:
        return timedelta(days=int(self.cause(cause_id).lookback_days[name]))

    def recent(self, labs: Iterable[LabFact], window: timedelta) -> list[LabFact]:
        """Labs dated inside ``window`` before now (a day of clock skew tolerated), newest first."""
        lo, hi = self.now - window, self.now + timedelta(days=1)
        return sorted(
            (lab for lab in labs if lab.date is not None and lo <= lab.date <= hi),
            key=lambda lab: (lab.date, lab.ref),
            reverse=True,
        )

    def unread(self, analytes: Iterable[str], window: timedelta) -> list[LabFact]:
        """Results of ``analytes`` that exist but cannot be read: those in ``window`` (newest first),
        then any without a date (it may well be recent), marked 'undated' unless another reason holds."""
        wanted = frozenset(analytes)
        dated = self.recent((x for x in self.facts.unread_labs if x.analyte in wanted), window)
        return dated + [
            replace(x, unreadable=x.unreadable or "undated")
            for x in (*self.facts.labs, *self.facts.unread_labs)
            if x.analyte in wanted and x.date is None
        ]

    def orders_of_class(self, *drug_classes: str) -> list[Any]:
        """Orders in effect (drafts, active, on-hold) with an ingredient of one of ``drug_classes``."""
        return [
            m
            for m in self.facts.meds
            if m.in_effect and any(i.drug_class in drug_classes for i in m.ingredients)
        ]

    def class_title(self, drug_class: str) -> str:
        titles = getattr(self.t, "drug_classes", None) or {}
        entry = titles.get(drug_class) if isinstance(titles, dict) else None
        title = getattr(entry, "title", entry) if entry is not None else None
        return str(title) if title else drug_class.replace("_", " ")

    @property
    def has_rls(self) -> bool:
        return bool(self.facts.by_cause("rls"))


# --- formatting helpers --------------------------------------------------------------------------


# Why a result that exists could not be read (LabFact.unreadable), as cards say it.
UNREADABLE = {
    "unit": "unit not recognised",
    "value": "value is not a usable number",
    "invalid": "not valid FHIR R4",
    "undated": "no date, so its age is unknown",
    "bounds": "iron and TIBC are opposite limits: no TSAT can be computed",
}


def unreadable_reason(lab: LabFact) -> str:
    return UNREADABLE.get(lab.unreadable or "unit", UNREADABLE["unit"])


def unread_evidence(lab: LabFact, note: str | None = None) -> Evidence:
    """Evidence of a result that could not be read: its value and unit as sent (none was converted)."""
    e = lab_evidence(lab)
    e.value, e.unit = lab.raw_value, lab.raw_unit
    e.note = note or f"{unreadable_reason(lab)}: not compared with the RLS thresholds"
    return e


def num(value: float | None) -> str:
    if value is None:
        return "?"
    if abs(value - round(value)) < 1e-9:
        return str(int(round(value)))
    return (
        f"{value:.2f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:.1f}".rstrip("0").rstrip(".")
    )


def day(dt: datetime | None) -> str | None:
    return dt.date().isoformat() if dt is not None else None


def lab_text(lab: LabFact) -> str:
    cmp = lab.comparator or ""
    unit = f" {lab.unit}" if lab.unit and lab.unit != "%" else (lab.unit or "")
    return f"{cmp}{num(lab.value)}{unit}"


def lab_evidence(lab: LabFact, note: str | None = None) -> Evidence:
    conv = None
    if lab.raw_unit and lab.raw_unit != lab.unit and lab.raw_value is not None:
        conv = f"reported as {lab.raw_value} {lab.raw_unit}"
    notes = "; ".join(x for x in (conv, note) if x) or None
    value: Any = lab.value if lab.value is not None else lab.text
    if lab.comparator and lab.value is not None:
        value = f"{lab.comparator}{num(lab.value)}"  # '<10': the lab's limit, not a value of 10
    return Evidence(
        resource=lab.ref,
        system=lab.system,
        code=lab.code,
        display=lab.display or lab.analyte,
        value=value,
        unit=lab.unit if lab.value is not None else None,
        date=day(lab.date),
        note=notes,
    )


def condition_evidence(c: ConditionFact, note: str | None = None) -> Evidence:
    notes = [note] if note else []
    if c.tentative:
        notes.append("diagnosis not confirmed (provisional/differential)")
    if c.no_status:
        notes.append("no clinicalStatus given; read as active")
    return Evidence(
        resource=c.ref,
        system=c.system,
        code=c.code,
        display=c.display,
        date=day(c.date),
        note="; ".join(notes) or None,
    )


_CERTAINTY_NOTE = {
    "ingredient": "product code not in the tables; matched through the Medication's ingredient codes",
    "text": "no code matched; matched by drug name in the order text (lower certainty)",
}


def med_evidence(m: MedFact, names: list[str], note: str | None = None) -> Evidence:
    notes = ["draft order (being decided)" if m.draft else f"{m.status} order, intent {m.intent or '?'}"]
    if m.certainty in _CERTAINTY_NOTE:
        notes.append(_CERTAINTY_NOTE[m.certainty])
    if m.via_reference:
        notes.append(f"drug read from a {m.via_reference} Medication (medicationReference)")
    if note:
        notes.append(note)
    return Evidence(
        resource=m.ref,
        system=m.system,
        code=m.code,
        display=m.display or ", ".join(names),
        value=", ".join(names),
        date=day(m.authored),
        certainty=m.certainty,
        note="; ".join(notes),
    )


MAX_EVIDENCE_PER_TYPE = 3  # a card lists the few resources that carry it, not the whole history


def dedupe(evidence: list[Evidence]) -> list[Evidence]:
    """One entry per resource, at most MAX_EVIDENCE_PER_TYPE per resource type (first ones kept:
    rules list the deciding evidence first); the last kept entry says how many more there were."""
    seen: set[str] = set()
    kept: dict[str, list[Evidence]] = {}
    extra: dict[str, int] = {}
    out: list[Evidence] = []
    for e in evidence:
        if e.resource in seen:
            continue
        seen.add(e.resource)
        kind = e.resource.split("/", 1)[0]
        if len(kept.setdefault(kind, [])) >= MAX_EVIDENCE_PER_TYPE:
            extra[kind] = extra.get(kind, 0) + 1
            continue
        kept[kind].append(e)
        out.append(e)
    for kind, n in extra.items():
        last = kept[kind][-1]
        last.note = "; ".join(x for x in (last.note, f"and {n} more {kind} resource(s)") if x)
    return out


def cap(text: str) -> str:
    """First letter upper-case, the rest untouched (units such as ng/mL keep their case). A word
    whose second letter is already upper-case is a term spelled that way (eGFR, pH): left alone."""
    if text[1:2].isupper():
        return text
    return text[:1].upper() + text[1:]


def clip(text: str, limit: int = 139) -> str:
    """At most ``limit`` characters, cut at a word boundary with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:(") + "…"


def tidy(text: str) -> str:
    """A filled template with some values left empty: drop '()' and doubled spaces."""
    text = text.replace("()", "").replace("( )", "")
    text = re.sub(r"\s+([:;,.])", r"\1", re.sub(r"[ \t]+", " ", text))
    return text.strip()


def make(
    ctx: Context,
    cause_id: str,
    *,
    reasoning: str,
    evidence: list[Evidence],
    summary: str | None = None,
    action: str | None = None,
    fields: dict[str, Any] | None = None,
    actionable: bool | None = None,
    strength: str | None = None,
    data: dict | None = None,
) -> Finding:
    """A finding of ``cause_id``. Summary and action default to the cause's templates in
    causes.yaml filled with ``fields`` ({label} {value} {unit} {date} {drug} ...); rules pass their
    own wording only for sub-cases one template cannot name (IV-only band, ESRD rule, ...). The
    cause's detail template becomes the card's background, with ``{evidence}`` left for the card."""
    cause = ctx.cause(cause_id)
    values = {k: ("" if v is None else v) for k, v in (fields or {}).items()}
    values.setdefault("title", cause.title)
    if summary is None:
        summary = tidy(cause.render("summary", **values))
    if action is None:
        action = tidy(cause.render("action", **values))
    background = cause.render("detail", **{**values, "evidence": "{evidence}"}).strip()
    return Finding(
        cause=cause_id,
        strength=strength or cause.strength,
        actionable=bool(cause.actionable if actionable is None else actionable),
        summary=clip(cap(summary)),
        reasoning=reasoning,
        action=action,
        evidence=dedupe(evidence),
        data=data or {},
        title=cause.title,
        reference_label=cause.reference_label,
        reference_url=cause.reference_url,
        background=background,
    )


def cond_fields(conds: list[ConditionFact]) -> dict[str, Any]:
    c = conds[0]
    return {"label": f"{c.display or c.code} ({c.code})", "date": day(c.date) or "date unknown"}


def lab_fields(label: str, lab: LabFact) -> dict[str, Any]:
    return {
        "label": label,
        "value": f"{lab.comparator or ''}{num(lab.value)}",
        "unit": lab.unit,
        "date": day(lab.date),
    }


def cond_name(conds: list[ConditionFact]) -> str:
    c = conds[0]
    return f"{c.display or c.code} ({c.code})"


def all_tentative(conds: list[ConditionFact]) -> bool:
    return bool(conds) and all(c.tentative for c in conds)
