"""Facts -> findings: one function per cause id of DESIGN.md §3.

Thresholds and look-back windows come from the cause definitions in ``terminology/causes.yaml``
(``CauseDef.thresholds`` / ``lookback_days``); the wording of every finding names the value, unit,
date or drug it rests on. A rule never concludes absence from data it could not read
(``ctx.missing``), counts only final labs inside their look-back window, and treats
provisional/differential diagnoses as weaker (never ``actionable``).

Strength comes from the cause definition, refined where the reference grades sub-cases
differently (ESRD strong vs CKD 3-4 moderate vs a single low eGFR weak; per-drug-class strength).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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
ANALYTES_READ = frozenset(
    {
        "ferritin",
        "tsat",
        "iron",
        "tibc",
        "egfr",
        "hba1c",
        "glucose",
        "magnesium",
        "b12",
        "mma",
        "hcg",
        "hcg_presence",
        "gestational_age_weeks",
        "gestational_age_days",
        "smoking_status",
        "audit_c",
    }
)
# Kept even when older than every window: "last ferritin/TSAT was on <date>" in iron_studies_missing.
ANALYTES_KEPT_OLD = frozenset({"ferritin", "tsat"})

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

    def class_title(self, drug_class: str) -> str:
        titles = getattr(self.t, "drug_classes", None) or {}
        entry = titles.get(drug_class) if isinstance(titles, dict) else None
        title = getattr(entry, "title", entry) if entry is not None else None
        return str(title) if title else drug_class.replace("_", " ")

    @property
    def has_rls(self) -> bool:
        return bool(self.facts.by_cause("rls"))


# --- formatting helpers --------------------------------------------------------------------------


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
    return Evidence(
        resource=lab.ref,
        system=lab.system,
        code=lab.code,
        display=lab.display or lab.analyte,
        value=lab.value if lab.value is not None else lab.text,
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
    """First letter upper-case, the rest untouched (units such as ng/mL keep their case)."""
    return text[:1].upper() + text[1:]


def clip(text: str, limit: int = 139) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _tidy(text: str) -> str:
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
        summary = _tidy(cause.render("summary", **values))
    if action is None:
        action = _tidy(cause.render("action", **values))
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


# --- iron ----------------------------------------------------------------------------------------


@dataclass
class IronStatus:
    ferritin: LabFact | None
    tsat: LabFact | None  # measured TSAT
    computed: tuple[float, LabFact, LabFact] | None  # TSAT from iron/TIBC of the same draw
    stale: list[LabFact]
    pending: list[LabFact]
    esrd: list[ConditionFact]
    iron_orders: list[MedFact]

    @property
    def tsat_value(self) -> float | None:
        if self.tsat is not None and (self.computed is None or self.tsat.date >= self.computed[1].date):
            return self.tsat.value
        return self.computed[0] if self.computed else None

    def tsat_evidence(self) -> list[Evidence]:
        if self.tsat is not None and (self.computed is None or self.tsat.date >= self.computed[1].date):
            return [lab_evidence(self.tsat)]
        if self.computed:
            value, iron, tibc = self.computed
            note = f"TSAT {num(value)} % computed as iron / TIBC x 100 (same draw)"
            return [lab_evidence(iron, note), lab_evidence(tibc, note)]
        return []


def iron_status(ctx: Context) -> IronStatus:
    if "iron" in ctx._cache:
        return ctx._cache["iron"]
    window = ctx.lookback("iron_deficiency", "ferritin")
    labs = ctx.facts.labs
    ferritins = ctx.recent((x for x in labs if x.analyte == "ferritin" and x.value is not None), window)
    tsats = ctx.recent((x for x in labs if x.analyte == "tsat" and x.value is not None), window)
    irons = ctx.recent((x for x in labs if x.analyte == "iron" and x.value is not None), window)
    tibcs = {x.date: x for x in labs if x.analyte == "tibc" and x.value is not None and x.value > 0}
    computed = None
    for iron in irons:  # newest first; the TIBC must come from the same draw (same collection time)
        tibc = tibcs.get(iron.date)
        if tibc is not None:
            computed = (iron.value / tibc.value * 100.0, iron, tibc)
            break
    relevant = ("ferritin", "tsat", "iron", "tibc")
    current = {id(x) for x in ferritins} | {id(x) for x in tsats}
    stale = sorted(
        (x for x in labs if x.analyte in ("ferritin", "tsat") and id(x) not in current),
        key=lambda x: (x.date is not None, x.date),
        reverse=True,
    )
    pending = ctx.recent((x for x in ctx.facts.pending_labs if x.analyte in relevant), window)
    esrd = [c for c in ctx.facts.by_cause("kidney_disease") if c.qualifier == "esrd" and not c.tentative]
    iron_orders = [
        m
        for m in ctx.facts.meds
        if (m.draft or m.status in ("active", "on-hold"))
        and any(i.drug_class == "iron" for i in m.ingredients)
    ]
    status = IronStatus(
        ferritin=ferritins[0] if ferritins else None,
        tsat=tsats[0] if tsats else None,
        computed=computed,
        stale=stale,
        pending=pending,
        esrd=esrd,
        iron_orders=iron_orders,
    )
    ctx._cache["iron"] = status
    return status


def iron_deficiency(ctx: Context) -> list[Finding]:
    s = iron_status(ctx)
    cid = "iron_deficiency"
    ferritin_max = ctx.threshold(cid, "ferritin_max")
    iv_max = ctx.threshold(cid, "ferritin_iv_only_max")
    tsat_min = ctx.threshold(cid, "tsat_low")
    tsat_ceiling = ctx.threshold(cid, "tsat_iron_not_indicated")
    esrd_ferritin = ctx.threshold(cid, "esrd_ferritin_low")
    esrd_tsat = ctx.threshold(cid, "esrd_tsat_low")
    diagnoses = ctx.facts.by_cause(cid)
    f = s.ferritin.value if s.ferritin else None
    tsat = s.tsat_value
    evidence = ([lab_evidence(s.ferritin)] if s.ferritin else []) + s.tsat_evidence()
    if s.ferritin is None and tsat is None:
        evidence += [condition_evidence(c) for c in diagnoses]  # labs decide when present
    ftxt = f"Ferritin {lab_text(s.ferritin)} ({day(s.ferritin.date)})" if s.ferritin else "No ferritin"
    data = {"ferritin": f, "tsat": tsat, "esrd": bool(s.esrd)}
    ref = "AASM 2024 (Winkelman et al., J Clin Sleep Med 2025;21:137-152, PMID 39324694)"

    if s.esrd:
        evidence += [condition_evidence(c, "ESRD: the ESRD iron rule applies") for c in s.esrd]
        if f is not None and f < esrd_ferritin and tsat is not None and tsat < esrd_tsat:
            return [
                _iron_finding(
                    ctx,
                    s,
                    summary=f"{ftxt}, TSAT {num(tsat)} % in ESRD: consider IV iron sucrose for RLS",
                    reasoning=(
                        f"In ESRD, ferritin < {num(esrd_ferritin)} ng/mL with TSAT < {num(esrd_tsat)} % "
                        f"meets the iron criterion ({ref}); ferritin is raised by CKD and inflammation, "
                        "so the general <= 75 ng/mL threshold does not apply."
                    ),
                    action="Consider IV iron sucrose (conditional AASM 2024 suggestion in ESRD); recheck "
                    "ferritin and TSAT after repletion.",
                    evidence=evidence,
                    data={**data, "band": "esrd"},
                )
            ]
        if f is not None and f < esrd_ferritin and tsat is None:
            return [
                make(
                    ctx,
                    cid,
                    summary=f"{ftxt} in ESRD: TSAT needed to judge IV iron for RLS",
                    reasoning=f"In ESRD the iron criterion needs ferritin < {num(esrd_ferritin)} ng/mL and "
                    f"TSAT < {num(esrd_tsat)} %; no TSAT in the look-back window.",
                    action="Measure transferrin saturation (iron panel).",
                    evidence=evidence,
                    actionable=False,
                    data={**data, "band": "esrd_tsat_unknown"},
                )
            ]
        return []

    if tsat is not None and tsat >= tsat_ceiling:
        if f is not None and f <= iv_max or diagnoses:
            return [
                make(
                    ctx,
                    cid,
                    summary=f"{ftxt} but TSAT {num(tsat)} % (>= {num(tsat_ceiling)} %): iron not indicated",
                    reasoning=f"Iron therapy for RLS is given only when TSAT < {num(tsat_ceiling)} % "
                    "(RLS Foundation algorithm, Silber 2021; AASM 2024).",
                    action="No iron suggestion; consider other causes.",
                    evidence=evidence,
                    actionable=False,
                    data={**data, "band": "tsat_ceiling"},
                )
            ]
        return []

    if (f is not None and f <= ferritin_max) or (tsat is not None and tsat < tsat_min):
        why = []
        if f is not None and f <= ferritin_max:
            why.append(f"ferritin {num(f)} ng/mL <= {num(ferritin_max)}")
        if tsat is not None and tsat < tsat_min:
            why.append(f"TSAT {num(tsat)} % < {num(tsat_min)}")
        if f is not None and f <= ferritin_max:
            fields = lab_fields("Ferritin", s.ferritin)
        else:
            lead = s.tsat if s.tsat is not None else s.computed[1]
            fields = {"label": "TSAT", "value": num(tsat), "unit": "%", "date": day(lead.date)}
        return [
            _iron_finding(
                ctx,
                s,
                fields=fields,
                reasoning=(
                    f"{cap(' and '.join(why))} meets the AASM 2024 criterion for iron therapy in RLS "
                    f"(ferritin <= {num(ferritin_max)} ng/mL or TSAT < {num(tsat_min)} %, with TSAT < "
                    f"{num(tsat_ceiling)} %). Lab-normal ferritin values can still meet this RLS threshold. "
                    f"{'' if tsat is not None else f'No TSAT: confirm it is < {num(tsat_ceiling)} %. '}"
                    f"Source: {ref}."
                ),
                evidence=evidence,
                data={**data, "band": "oral_or_iv"},
            )
        ]
    if f is not None and ferritin_max < f <= iv_max:
        return [
            _iron_finding(
                ctx,
                s,
                summary=f"{ftxt}: in the IV-iron band for RLS ({num(ferritin_max)}-{num(iv_max)} ng/mL)",
                reasoning=(
                    f"Ferritin above {num(ferritin_max)} and up to {num(iv_max)} ng/mL with TSAT < "
                    f"{num(tsat_ceiling)} %: AASM 2024 suggests IV iron only (oral iron is poorly absorbed "
                    f"at this level). {'TSAT was not measured: confirm it first. ' if tsat is None else ''}"
                    f"Source: {ref}."
                ),
                action="Consider IV iron (e.g. ferric carboxymaltose); oral iron is not expected to help.",
                evidence=evidence,
                data={**data, "band": "iv_only"},
            )
        ]
    if diagnoses and s.ferritin is None and tsat is None:
        tent = all_tentative(diagnoses)
        return [
            make(
                ctx,
                cid,
                summary=f"Iron deficiency coded: {cond_name(diagnoses)}; no ferritin or TSAT in 12 months",
                reasoning="An active iron-deficiency diagnosis is a strong, treatable RLS aggravator; no "
                "recent ferritin or TSAT confirms its current state.",
                action="Check ferritin and TSAT; replete iron if ferritin <= 75 ng/mL or TSAT < 20 %.",
                evidence=evidence,
                actionable=not tent and not s.iron_orders,
                data={**data, "band": "diagnosis_only"},
            )
        ]
    return []


def _iron_finding(ctx: Context, s: IronStatus, *, data: dict, evidence: list[Evidence], **kw) -> Finding:
    if s.iron_orders:
        names = ", ".join(
            sorted({i.name for m in s.iron_orders for i in m.ingredients if i.drug_class == "iron"})
        )
        evidence = evidence + [med_evidence(m, [names]) for m in s.iron_orders]
        head = kw.get("summary") or ctx.cause("iron_deficiency").render("summary", **kw.get("fields", {}))
        kw["summary"] = clip(_tidy(head.split(":")[0]) + f": iron already ordered ({names}); recheck levels")
        kw["action"] = (
            "Iron therapy is already ordered: recheck ferritin and TSAT about 12 weeks after starting."
        )
        return make(
            ctx,
            "iron_deficiency",
            evidence=evidence,
            actionable=False,
            data={**data, "iron_ordered": True},
            **kw,
        )
    return make(ctx, "iron_deficiency", evidence=evidence, data=data, **kw)


def iron_studies_missing(ctx: Context) -> list[Finding]:
    if not ctx.has_rls or "Observation" in ctx.missing:
        return []  # never conclude "no iron studies" from labs we could not read
    s = iron_status(ctx)
    if s.ferritin is not None or s.tsat is not None or s.computed is not None:
        return []
    if s.pending:
        return []  # a preliminary/registered result: the studies are under way
    months = round(ctx.lookback("iron_deficiency", "ferritin").days / 30.4)
    evidence = [condition_evidence(c, "RLS diagnosis") for c in ctx.facts.by_cause("rls")[:1]]
    last = s.stale[0] if s.stale else None
    if last is not None:
        evidence.append(lab_evidence(last, f"outside the {months}-month look-back window"))
    summary = (
        f"RLS: last ferritin/TSAT {day(last.date)} is over {months} months old; order iron studies"
        if last is not None and last.date is not None
        else None  # the cause's own summary (causes.yaml)
    )
    return [
        make(
            ctx,
            "iron_studies_missing",
            summary=summary,
            reasoning=(
                "AASM 2024 (good-practice statement 1): test ferritin and transferrin saturation in every "
                "patient with clinically significant RLS, ideally in the morning without iron for 24 h. "
                f"Neither result exists in the last {months} months."
            ),
            evidence=evidence,
            data={"last_result": day(last.date) if last else None},
        )
    ]


# --- kidney --------------------------------------------------------------------------------------


def _egfr_run(ctx: Context) -> tuple[LabFact | None, list[LabFact]]:
    """(latest eGFR in the window, the run of consecutive values < 60 ending at it, oldest first)."""
    limit = ctx.threshold("kidney_disease", "egfr_low")
    window = ctx.lookback("kidney_disease", "egfr")
    all_egfr = sorted(
        (x for x in ctx.facts.labs if x.analyte == "egfr" and x.value is not None and x.date is not None),
        key=lambda x: (x.date, x.ref),
    )
    latest = ctx.recent(all_egfr, window)
    if not latest:
        return None, []
    last = latest[0]
    run: list[LabFact] = []
    for lab in reversed(all_egfr[: all_egfr.index(last) + 1]):
        if lab.value >= limit:
            break
        run.append(lab)
    return last, list(reversed(run))


def _egfr_stage(value: float) -> str:
    for bound, stage in ((15, "G5"), (30, "G4"), (45, "G3b"), (60, "G3a")):
        if value < bound:
            return stage
    return "G1-G2"


def kidney_disease(ctx: Context) -> list[Finding]:
    cid = "kidney_disease"
    conds = [c for c in ctx.facts.by_cause(cid)]
    confirmed = [c for c in conds if not c.tentative]
    esrd = [c for c in confirmed if c.qualifier == "esrd"]
    ckd = [c for c in confirmed if c.qualifier in ("ckd3plus", "uremia")]
    other = [c for c in conds if c not in esrd and c not in ckd]
    last, run = _egfr_run(ctx)
    persist = timedelta(days=ctx.threshold(cid, "egfr_persistence_days"))
    limit = ctx.threshold(cid, "egfr_low")
    egfr_ckd = bool(run) and (run[-1].date - run[0].date) >= persist
    reduced_only = bool(run) and not egfr_ckd
    gaba = [
        m
        for m in ctx.facts.meds
        if (m.draft or m.status in ("active", "on-hold"))
        and any(i.drug_class == "gabapentinoid" for i in m.ingredients)
    ]
    evidence = [condition_evidence(c) for c in esrd + ckd + other]
    evidence += [lab_evidence(x) for x in (run[:1] + run[-1:] if len(run) > 1 else run)]
    if not evidence:
        return []

    if esrd:
        kind = "esrd"
        summary = _tidy(ctx.cause(cid).render("summary", **cond_fields(esrd)))
    elif ckd or egfr_ckd:
        kind = "ckd3plus"
        if ckd:
            summary = _tidy(ctx.cause(cid).render("summary", **cond_fields(ckd)))
        else:
            summary = (
                f"eGFR {num(run[-1].value)} ({day(run[-1].date)}) < {num(limit)} for over "
                f"{persist.days // 30} months: CKD {_egfr_stage(run[-1].value)}, linked to RLS"
            )
    elif reduced_only:
        kind = "reduced_egfr"
        summary = (
            f"Reduced eGFR {num(run[-1].value)} ({day(run[-1].date)}): not CKD unless it persists 3 months"
        )
    else:
        kind = "stage_unknown"
        summary = f"Kidney disease coded: {cond_name(other)} (stage not >= 3 / not confirmed)"

    reasoning = {
        "esrd": "ESRD and dialysis carry a high RLS prevalence (strong evidence); in ESRD the iron "
        "criterion is ferritin < 200 ng/mL with TSAT < 20 %.",
        "ckd3plus": f"CKD stage 3 or worse (eGFR < {num(limit)} mL/min/1.73 m2 for more than 3 months, KDIGO "
        "2012) is associated with RLS (moderate evidence).",
        "reduced_egfr": f"Only {len(run)} eGFR value(s) below {num(limit)} spanning less than 3 months: "
        "KDIGO requires persistence over 3 months before calling it CKD.",
        "stage_unknown": "A kidney diagnosis without a stage >= 3 (or not confirmed): noted only.",
    }[kind]
    action = "Note the association with RLS."
    actionable = False
    if gaba and (esrd or ckd or egfr_ckd or (last is not None and last.value < limit)):
        names = sorted({i.name for m in gaba for i in m.ingredients if i.drug_class == "gabapentinoid"})
        evidence += [med_evidence(m, names) for m in gaba]
        action = (
            f"Renal dose check: {', '.join(names)} is renally cleared; adjust the dose to creatinine "
            "clearance per the product label."
        )
        actionable = True
        summary = clip(f"{cap(', '.join(names))} with eGFR/CKD: check renal dose. " + summary, 139)
    return [
        make(
            ctx,
            cid,
            summary=summary,
            reasoning=reasoning,
            action=action,
            evidence=evidence,
            actionable=actionable,
            strength=ctx.cause(cid).strength_for(kind),
            data={
                "kind": kind,
                "latest_egfr": last.value if last else None,
                "gabapentinoid": bool(gaba),
            },
        )
    ]


# --- generic diagnosis-based causes --------------------------------------------------------------


def _diagnosis_rule(
    cid: str, *, reasoning: str, also: Callable[[Context], list[ConditionFact]] | None = None
) -> Callable[[Context], list[Finding]]:
    """A cause carried by diagnoses only: summary and action are the cause's templates."""

    def rule(ctx: Context) -> list[Finding]:
        conds = ctx.facts.by_cause(cid) + (also(ctx) if also else [])
        if not conds:
            return []
        tent = all_tentative(conds)
        fields = cond_fields(conds)
        if tent:
            fields["label"] += " (unconfirmed)"
        return [
            make(
                ctx,
                cid,
                fields=fields,
                reasoning=reasoning,
                evidence=[condition_evidence(c) for c in conds],
                actionable=False if tent else None,
                strength="weak" if tent and ctx.cause(cid).strength in ("strong", "moderate") else None,
            )
        ]

    rule.__name__ = cid
    return rule


def _neuropathy_also(ctx: Context) -> list[ConditionFact]:
    # Amyloidosis (E85.1) and Sjogren with PNS involvement (M35.06) also mean neuropathy.
    return [c for c in ctx.facts.conditions if c.qualifier == "also_neuropathy"]


peripheral_neuropathy = _diagnosis_rule(
    "peripheral_neuropathy",
    reasoning="Peripheral neuropathy (including diabetic polyneuropathy) is a recognised secondary cause "
    "of RLS (moderate evidence). Neuropathic pain and RLS differ: RLS urges are relieved by movement.",
    also=_neuropathy_also,
)
parkinsons = _diagnosis_rule(
    "parkinsons",
    reasoning="RLS is more frequent in Parkinson's disease (moderate evidence). Levodopa and dopamine "
    "agonists are not aggravators, but augmentation can occur on long-term dopaminergic therapy.",
)
amyloidosis = _diagnosis_rule(
    "amyloidosis",
    reasoning="Amyloidosis (especially with neuropathy) is a listed secondary cause of RLS (weak evidence).",
)
lyme_disease = _diagnosis_rule(
    "lyme_disease",
    reasoning="Lyme disease is reported as an RLS association (weak evidence).",
)
spinal_nerve_damage = _diagnosis_rule(
    "spinal_nerve_damage",
    reasoning="Radiculopathy, spinal cord injury and back-surgery sequelae are reported in secondary RLS "
    "(weak evidence).",
)
rheumatoid_arthritis = _diagnosis_rule(
    "rheumatoid_arthritis",
    reasoning="RA is listed among RLS associations; a serology study found neuropathy and low iron, not "
    "rheumatologic disease, to be the real secondary causes (weak evidence).",
)
sjogren_syndrome = _diagnosis_rule(
    "sjogren_syndrome",
    reasoning="Sjogren syndrome is listed among RLS associations (weak evidence); neuropathy may mediate it.",
)
hereditary = _diagnosis_rule(
    "hereditary",
    reasoning="A family history of nervous-system disease is documented; primary RLS is often familial. "
    "The code is not specific to RLS.",
)
stress = _diagnosis_rule(
    "stress",
    reasoning="Stress is reported to worsen RLS symptoms (informational).",
)
_surgery_codes = _diagnosis_rule(
    "surgery",
    reasoning="Surgery (and its sequelae) is reported to trigger or worsen RLS (informational).",
)


def surgery(ctx: Context) -> list[Finding]:
    """Coded surgery context, or a completed surgical Procedure inside the cause's 'procedure' window.

    Procedures are read only when the input carries them (a Bundle; prefetch asks for the three core
    resource types) and only when causes.yaml gives the window (``lookback_days.procedure``)."""
    found = _surgery_codes(ctx)
    window = ctx.cause("surgery").lookback_days.get("procedure")
    if found or not window or not ctx.facts.surgeries:
        return found
    lo, hi = ctx.now - timedelta(days=int(window)), ctx.now + timedelta(days=1)
    recent = sorted(
        (p for p in ctx.facts.surgeries if p.date is not None and lo <= p.date <= hi),
        key=lambda p: (p.date, p.ref),
        reverse=True,
    )
    if not recent:
        return []
    p = recent[0]
    return [
        make(
            ctx,
            "surgery",
            fields={"label": f"Recent surgery: {p.display or p.code or 'procedure'}", "date": day(p.date)},
            reasoning="Surgery is reported to trigger or worsen RLS (informational); completed within the "
            f"last {int(window)} days.",
            evidence=[
                Evidence(resource=x.ref, system=x.system, code=x.code, display=x.display, date=day(x.date))
                for x in recent
            ],
        )
    ]


# --- diabetes ------------------------------------------------------------------------------------


def diabetes(ctx: Context) -> list[Finding]:
    cid = "diabetes"
    conds = ctx.facts.by_cause(cid) + [c for c in ctx.facts.conditions if c.qualifier == "also_diabetes"]
    limit = ctx.threshold(cid, "hba1c_min")
    a1c = ctx.recent(
        (x for x in ctx.facts.labs if x.analyte == "hba1c" and x.value is not None),
        ctx.lookback(cid, "hba1c"),
    )
    high = a1c[0] if a1c and a1c[0].value >= limit else None
    if not conds and high is None:
        return []
    evidence = [condition_evidence(c) for c in conds] + ([lab_evidence(high)] if high else [])
    fields = cond_fields(conds) if conds else lab_fields("HbA1c", high)
    tent = all_tentative(conds) and high is None
    return [
        make(
            ctx,
            cid,
            fields=fields,
            reasoning=(
                (f"Latest HbA1c {num(high.value)} % ({day(high.date)}). " if high and conds else "")
                + "Diabetes is associated with RLS (moderate evidence), partly through neuropathy. "
                + (
                    f"HbA1c >= {num(limit)} % is in the diabetes range (ADA); confirm with a repeat test. "
                    if high and not conds
                    else ""
                )
            ).strip(),
            evidence=evidence,
            actionable=False if tent else None,
            data={"hba1c": high.value if high else None},
        )
    ]


# --- pregnancy -----------------------------------------------------------------------------------


def _weeks_from_code(c: ConditionFact) -> float | None:
    code = c.code.upper()
    if code.startswith("Z3A.") and code[4:].isdigit():
        weeks = int(code[4:])
        return 43.0 if weeks == 49 else float(weeks)  # Z3A.49: greater than 42 weeks
    if c.qualifier == "third_trimester":
        return 28.0  # "third trimester" says at least 28 weeks 0 days on the day it was coded
    return None


def pregnancy(ctx: Context) -> list[Finding]:
    cid = "pregnancy"
    third = ctx.threshold(cid, "third_trimester_weeks_min")
    term_max = ctx.threshold(cid, "max_gestation_weeks")
    post_days = ctx.threshold(cid, "postpartum_resolution_days")
    now = ctx.now
    conds = ctx.facts.by_cause(cid) + [
        c for c in ctx.facts.conditions if c.qualifier == "also_pregnancy" and c.cause != cid
    ]
    estimates: list[
        tuple[float | None, datetime | None, Evidence]
    ] = []  # (weeks today, pregnancy start, evidence)
    postpartum: list[ConditionFact] = []
    for c in conds:
        if c.qualifier == "postpartum":
            postpartum.append(c)
            continue
        weeks_then = _weeks_from_code(c)
        if c.date is None:
            estimates.append((None, None, condition_evidence(c, "undated: gestational age unknown")))
            continue
        elapsed = (now - c.date).days / 7.0
        if weeks_then is None:
            # Pregnant on that day, week unknown: over once older than the episode window.
            if now - c.date > ctx.lookback(cid, "pregnancy_condition"):
                continue
            estimates.append((None, c.date, condition_evidence(c)))
        else:
            today = weeks_then + elapsed
            if today > term_max:
                continue
            estimates.append(
                (
                    today,
                    c.date - timedelta(weeks=weeks_then),
                    condition_evidence(c, f"{num(weeks_then)} weeks on that date"),
                )
            )
    for lab in ctx.facts.labs:
        if (
            lab.analyte not in ("gestational_age_weeks", "gestational_age_days")
            or lab.value is None
            or lab.date is None
        ):
            continue
        weeks_then = lab.value / 7.0 if lab.analyte == "gestational_age_days" else lab.value
        today = weeks_then + (now - lab.date).days / 7.0
        if today > term_max:
            continue
        estimates.append(
            (
                today,
                lab.date - timedelta(weeks=weeks_then),
                lab_evidence(lab, f"gestational age today ~{num(round(today, 1))} weeks"),
            )
        )
    for lab in ctx.recent(
        (x for x in ctx.facts.labs if x.analyte in ("hcg_presence", "hcg")), ctx.lookback(cid, "hcg")
    ):
        if _hcg_positive(lab):
            estimates.append((None, lab.date, lab_evidence(lab, "positive pregnancy test")))
    # Delivery ends an episode: a postpartum record newer than the pregnancy evidence.
    delivered = max((c.date for c in postpartum if c.date is not None), default=None)
    if delivered is not None:
        estimates = [e for e in estimates if e[1] is None or e[1] > delivered]
    if estimates:
        known = [e for e in estimates if e[0] is not None]
        weeks = max((e[0] for e in known), default=None)
        evidence = [e[2] for e in estimates]
        start = min((e[1] for e in estimates if e[1] is not None), default=None)
        if weeks is not None and weeks >= third:
            ferritin_since = start is not None and any(
                x.analyte == "ferritin" and x.date is not None and x.date >= start for x in ctx.facts.labs
            )
            # The iron-studies card already asks for ferritin when there is none in 12 months: one ask.
            covered = bool(iron_studies_missing(ctx))
            checked = ferritin_since or covered or "Observation" in ctx.missing
            return [
                make(
                    ctx,
                    cid,
                    summary=f"Pregnant, ~{int(weeks)} weeks (3rd trimester): RLS peaks, ends after delivery",
                    reasoning="RLS affects about a quarter to a third of women in the third trimester "
                    "(Manconi "
                    "2004; Dunietz 2017) and usually resolves within about 4 weeks after delivery. Iron "
                    "deficiency is common in pregnancy.",
                    action=("Check ferritin (none measured during this pregnancy). " if not checked else "")
                    + "Expect resolution within about 4 weeks after delivery; most RLS drugs are avoided "
                    "in pregnancy.",
                    evidence=evidence,
                    actionable=not checked,
                    strength="strong",
                    data={"gestational_weeks": round(weeks, 1), "ferritin_checked": checked},
                )
            ]
        return [
            make(
                ctx,
                cid,
                summary=(
                    f"Pregnant, ~{int(weeks)} weeks: RLS risk rises in the third trimester"
                    if weeks is not None
                    else "Pregnancy documented (trimester unknown): RLS is common in late pregnancy"
                ),
                reasoning="Pregnancy, especially the third trimester, is a strong but transient RLS trigger.",
                action="Note; check ferritin during pregnancy; expect resolution after delivery.",
                evidence=evidence,
                actionable=False,
                strength="moderate",
                data={"gestational_weeks": round(weeks, 1) if weeks is not None else None},
            )
        ]
    recent_post = [
        c for c in postpartum if c.date is not None and (now - c.date) <= timedelta(days=post_days)
    ]
    if recent_post:
        return [
            make(
                ctx,
                cid,
                summary=f"Postpartum ({day(recent_post[0].date)}): pregnancy RLS usually ends in ~4 weeks",
                reasoning="Pregnancy-related RLS usually resolves within about 4 weeks after delivery; RLS "
                "persisting beyond that is not pregnancy-related.",
                action="Reassess RLS after the postpartum period; check ferritin.",
                evidence=[condition_evidence(c) for c in recent_post],
                actionable=False,
                strength="moderate",
            )
        ]
    return []


def _hcg_positive(lab: LabFact) -> bool:
    if lab.interpretation & {"POS", "DET", "A", "H", "HH"}:
        return True  # the lab's own call (quantitative hCG cut-offs vary by assay)
    if lab.analyte == "hcg":
        return False
    positive = {("http://snomed.info/sct", "10828004")}
    if any(c in positive for c in lab.coded):
        return True
    text = (lab.text or "").strip().lower()
    return text in ("positive", "pos", "detected", "reactive")


# --- medications ---------------------------------------------------------------------------------


def ing_key(i: Any) -> str:
    """Identity of an ingredient across IN/PIN rows (a PIN maps to its IN; unverified RxCUIs by name)."""
    return i.base_rxcui or i.rxcui or i.name.lower()


def _aggravators(m: MedFact) -> list[Any]:
    return [i for i in m.ingredients if i.role == "aggravator"]


def drug_induced(ctx: Context) -> list[Finding]:
    cid = "drug_induced"
    groups: dict[tuple, list[MedFact]] = {}
    for m in ctx.facts.meds:
        if m.route_excluded:
            continue
        if not (m.draft or m.status in ("active", "on-hold")):
            continue
        agg = _aggravators(m)
        if not agg:
            continue
        # Drafts are judged one by one (each gets its own delete action); active orders of the same
        # drug(s) are one finding.
        key = ("draft", m.ref) if m.draft else ("active", tuple(sorted(ing_key(i) for i in agg)))
        groups.setdefault(key, []).append(m)
    out = []
    for (kind, _), meds in sorted(groups.items(), key=lambda kv: (kv[0][0] != "draft", str(kv[0][1]))):
        agg = {ing_key(i): i for m in meds for i in _aggravators(m)}
        ingredients = sorted(agg.values(), key=lambda i: (STRENGTH_ORDER.get(i.strength, 9), i.name))
        names = [i.name for i in ingredients]
        lead = ingredients[0]
        strength = lead.strength
        warn = any(i.indicator == "warning" for i in ingredients)
        alternative = next((i.alternative for i in ingredients if i.alternative), None)
        alt_short = alternative.split(" (")[0] if alternative else None
        classes = sorted({i.drug_class for i in ingredients})
        m0 = meds[0]
        product = m0.display or ", ".join(names)
        in_product = (
            "" if product.lower().startswith(names[0].lower()) and len(names) == 1 else f" (in {product})"
        )
        drug = " + ".join(names)
        certainty = min((m.certainty for m in meds), key=lambda c: ("code", "ingredient", "text").index(c))
        if kind == "draft":
            summary = f"{cap(drug)} order may aggravate RLS" + (
                f"; consider {alt_short}" if alt_short else ""
            )
        else:
            summary = (
                f"Active {drug}{' ' + in_product.strip() if in_product and len(drug) < 40 else ''}"
                " may aggravate RLS" + (f"; consider {alt_short}" if alt_short else "")
            )
        class_titles = ", ".join(ctx.class_title(c) for c in classes)
        reasoning = (
            f"{cap(drug)} ({class_titles}) is listed among drugs that may aggravate "
            f"RLS ({strength} evidence; AASM 2024 names antihistaminergic, serotonergic and antidopaminergic "
            "medications as exacerbating factors)."
        )
        if certainty == "text":
            reasoning += (
                " The drug was recognised by name in the order text only (no code matched): lower certainty."
            )
        elif certainty == "ingredient":
            reasoning += (
                " The product code is not in the tables; it was matched through its ingredient codes."
            )
        fields = {"drug": drug, "drug_class": class_titles, "alternative": alternative or "none known"}
        if alternative:
            action = f"Review the need for {drug}. " + _tidy(ctx.cause(cid).render("action", **fields))
        else:
            action = f"Review the need for {drug} with the prescriber; no simple substitute."
        if "beta_blocker" in classes:
            action += " Never stop a beta-blocker abruptly."
        out.append(
            make(
                ctx,
                cid,
                summary=summary,
                fields=fields,
                reasoning=reasoning,
                action=action,
                evidence=[med_evidence(m, names) for m in meds],
                actionable=warn,
                strength=strength,
                data={
                    "draft": kind == "draft",
                    "orders": [m.ref for m in meds],
                    "ingredients": names,
                    "rxcuis": sorted(i.base_rxcui or i.rxcui for i in ingredients if i.base_rxcui or i.rxcui),
                    "classes": classes,
                    "alternative": alternative,
                    "certainty": certainty,
                },
            )
        )
    return out


def drug_withdrawal(ctx: Context) -> list[Finding]:
    cid = "drug_withdrawal"
    window = ctx.lookback(cid, "stopped_order")
    current = {
        ing_key(i)
        for m in ctx.facts.meds
        if m.draft or m.status in ("active", "on-hold")
        for i in m.ingredients
    }
    found: dict[str, tuple[MedFact, Any, datetime]] = {}
    for m in ctx.facts.meds:
        if m.draft or m.status not in ("stopped", "completed") or m.route_excluded:
            continue
        for i in m.ingredients:
            if not (i.role == "withdrawal" or i.withdrawal) or ing_key(i) in current:
                continue
            # No end date: authoredOn inside the window still proves the stop was recent.
            when = m.ended or m.authored
            if when is None or not (ctx.now - window <= when <= ctx.now + timedelta(days=1)):
                continue
            if ing_key(i) not in found or when > found[ing_key(i)][2]:
                found[ing_key(i)] = (m, i, when)
    if not found:
        return []
    items = sorted(found.values(), key=lambda x: x[1].name)
    names = [i.name for _, i, _ in items]
    return [
        make(
            ctx,
            cid,
            fields={"drug": ", ".join(names), "date": day(max(w for _, _, w in items))},
            reasoning="Withdrawal of vasodilators, sedatives or imipramine is reported to trigger or worsen "
            "RLS "
            f"(weak evidence); stopped within the last {window.days} days with no active replacement.",
            evidence=[med_evidence(m, [i.name], f"stopped/completed by {day(w)}") for m, i, w in items],
            data={"ingredients": names},
        )
    ]


# --- deficiencies and glucose --------------------------------------------------------------------


def _lab_low_rule(
    cid: str, analyte: str, limit_name: str, window_name: str, label: str, reasoning: str
) -> Callable[[Context], list[Finding]]:
    """Low lab (or a matching diagnosis): the latest value in the window decides (any value for
    hypoglycemia); for magnesium the lab's own L/LL flag also counts (rls-clinical.md §2.9)."""

    flags_low = cid == "magnesium_deficiency"

    def rule(ctx: Context) -> list[Finding]:
        conds = ctx.facts.by_cause(cid)
        limit = ctx.threshold(cid, limit_name)
        labs = ctx.recent(
            (x for x in ctx.facts.labs if x.analyte == analyte and x.value is not None),
            ctx.lookback(cid, window_name),
        )
        low = None
        if labs:
            # Hypoglycemia: any low value in the window counts; otherwise the latest value decides.
            candidates = labs if cid == "hypoglycemia" else labs[:1]
            low = min(
                (x for x in candidates if x.value < limit or (flags_low and x.interpretation & {"L", "LL"})),
                key=lambda x: x.value,
                default=None,
            )
        extra = _b12_borderline(ctx, labs) if cid == "b12_deficiency" and low is None else None
        if not conds and low is None and extra is None:
            return []
        evidence = [condition_evidence(c) for c in conds]
        summary, fields = None, cond_fields(conds) if conds else {}
        if low is not None:
            evidence.insert(0, lab_evidence(low))
            fields = lab_fields(label, low)
        elif extra is not None:
            evidence.extend(lab_evidence(x) for x in extra)
            summary = (
                f"{label} {lab_text(extra[0])} borderline, MMA {lab_text(extra[1])}: possible B12 deficiency"
            )
        tent = all_tentative(conds) and low is None and extra is None
        return [
            make(
                ctx,
                cid,
                summary=summary,
                fields=fields,
                reasoning=reasoning,
                evidence=evidence,
                actionable=False if tent else None,
                data={"value": low.value if low else None},
            )
        ]

    rule.__name__ = cid
    return rule


def _b12_borderline(ctx: Context, b12: list[LabFact]) -> list[LabFact] | None:
    if not b12:
        return None
    hi = ctx.threshold("b12_deficiency", "b12_borderline_max")
    if not b12[0].value < hi:
        return None
    mma = ctx.recent(
        (x for x in ctx.facts.labs if x.analyte == "mma" and x.value is not None),
        ctx.lookback("b12_deficiency", "mma"),
    )
    if mma and mma[0].value > ctx.threshold("b12_deficiency", "mma_high"):
        return [b12[0], mma[0]]
    return None


magnesium_deficiency = _lab_low_rule(
    "magnesium_deficiency",
    "magnesium",
    "magnesium_low",
    "magnesium",
    "Magnesium",
    "Low serum magnesium is reported to worsen RLS (weak evidence).",
)
b12_deficiency = _lab_low_rule(
    "b12_deficiency",
    "b12",
    "b12_low",
    "b12",
    "Vitamin B12",
    "Vitamin B12 deficiency causes neuropathy and is reported in secondary RLS (weak evidence). MMA is "
    "falsely high in CKD.",
)
hypoglycemia = _lab_low_rule(
    "hypoglycemia",
    "glucose",
    "glucose_low",
    "glucose",
    "Glucose",
    "Hypoglycemia is reported among RLS triggers (weak evidence); ADA level 1 is < 70 mg/dL.",
)


# --- lifestyle -----------------------------------------------------------------------------------


def lifestyle(ctx: Context) -> list[Finding]:
    cid = "lifestyle"
    conds = ctx.facts.by_cause(cid)
    evidence = [condition_evidence(c) for c in conds]
    kinds = {c.qualifier or "lifestyle" for c in conds}
    smoking = sorted(
        (x for x in ctx.facts.labs if x.analyte == "smoking_status" and x.date is not None),
        key=lambda x: (x.date, x.ref),
        reverse=True,
    )
    if smoking:
        latest = smoking[0]  # the newest status wins: a newer "former smoker" ends an older "current"
        matches = [m for s, c in latest.coded for m in ctx.t.condition_matches(s, c) if m.cause == cid]
        if matches:
            kinds.add(matches[0].qualifier or "tobacco")
            evidence.append(lab_evidence(latest, "smoking status: current use"))
    audit = ctx.recent(
        (x for x in ctx.facts.labs if x.analyte == "audit_c" and x.value is not None),
        ctx.lookback(cid, "audit_c"),
    )
    if audit and audit[0].value >= ctx.threshold(cid, "audit_c_min"):
        kinds.add("alcohol")
        evidence.append(lab_evidence(audit[0], "AUDIT-C score suggests hazardous drinking"))
    for m in ctx.facts.meds:
        if m.draft or m.status not in ("active", "on-hold"):
            continue
        for role in ("caffeine", "alcohol"):
            if any(i.role == role for i in m.ingredients):
                kinds.add(role)
                evidence.append(med_evidence(m, [i.name for i in m.ingredients if i.role == role]))
    kinds.discard("lifestyle")
    if not evidence:
        return []
    order = [k for k in ("alcohol", "caffeine", "tobacco") if k in kinds] or ["lifestyle factor"]
    return [
        make(
            ctx,
            cid,
            fields={
                "label": f"{cap(' and '.join(order))} use",
                "date": max((e.date for e in evidence if e.date), default="date unknown"),
            },
            reasoning="AASM 2024 names alcohol and caffeine as exacerbating factors (moderate evidence); "
            "tobacco is a weaker association. Nicotine replacement is not a reason for concern.",
            evidence=evidence,
            strength=min(
                (ctx.cause(cid).strength_for(k) for k in order),
                key=lambda x: STRENGTH_ORDER.get(x, 9),
            ),
            data={"factors": order},
        )
    ]


# --- registry ------------------------------------------------------------------------------------

RULES: dict[str, Callable[[Context], list[Finding]]] = {
    "iron_deficiency": iron_deficiency,
    "iron_studies_missing": iron_studies_missing,
    "kidney_disease": kidney_disease,
    "peripheral_neuropathy": peripheral_neuropathy,
    "diabetes": diabetes,
    "parkinsons": parkinsons,
    "pregnancy": pregnancy,
    "drug_induced": drug_induced,
    "drug_withdrawal": drug_withdrawal,
    "magnesium_deficiency": magnesium_deficiency,
    "b12_deficiency": b12_deficiency,
    "hypoglycemia": hypoglycemia,
    "amyloidosis": amyloidosis,
    "lyme_disease": lyme_disease,
    "spinal_nerve_damage": spinal_nerve_damage,
    "rheumatoid_arthritis": rheumatoid_arthritis,
    "sjogren_syndrome": sjogren_syndrome,
    "lifestyle": lifestyle,
    "hereditary": hereditary,
    "stress": stress,
    "surgery": surgery,
}


def run_all(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for cause_id, rule in RULES.items():
        if cause_id in ctx.t.causes:
            findings.extend(rule(ctx))
    return findings
