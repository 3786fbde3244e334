"""Causes carried by diagnoses alone (neuropathy, Parkinson's, amyloidosis, Lyme, spinal, RA, Sjogren,
hereditary, stress) and surgery (coded, or a recent surgical Procedure when the tables give a window)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from rls_cds.core.facts import ConditionFact
from rls_cds.core.findings import (
    Context,
    Evidence,
    Finding,
    all_tentative,
    cond_fields,
    condition_evidence,
    day,
    make,
)

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
