"""lifestyle (rls-clinical.md §2.11): current tobacco (diagnoses, latest smoking status), alcohol
(diagnoses, AUDIT-C), caffeine-containing products."""

from __future__ import annotations

from rls_cds.core.findings import (
    STRENGTH_ORDER,
    Context,
    Finding,
    cap,
    condition_evidence,
    lab_evidence,
    make,
    med_evidence,
    num,
)

# --- lifestyle -----------------------------------------------------------------------------------


# US Core smoking-status answers that say the patient does not smoke now: former, never.
_NOT_SMOKING = frozenset({"8517006", "266919005"})


def _says_not_smoking(status) -> bool:
    return any("snomed" in (system or "").lower() and code in _NOT_SMOKING for system, code in status.coded)


def _audit_c_cut_off(ctx: Context) -> tuple[float, str]:
    """AUDIT-C screens positive at 3 in women and 4 in men (Bradley 2007); with gender unknown the higher
    cut-off keeps a lifestyle note from resting on a score that is positive for some patients only."""
    if ctx.facts.gender == "female":
        return ctx.threshold("lifestyle", "audit_c_min_female"), " (the cut-off for women)"
    return ctx.threshold("lifestyle", "audit_c_min"), ""


def lifestyle(ctx: Context) -> list[Finding]:
    cid = "lifestyle"
    conds = ctx.facts.by_cause(cid)
    smoking = sorted(
        (x for x in ctx.facts.labs if x.analyte == "smoking_status" and x.date is not None),
        key=lambda x: (x.date, x.ref),
        reverse=True,
    )
    # The newest status wins (a newer "former smoker" ends an older "current"), and only within the
    # look-back window: a "current smoker" answer from two years ago says nothing about today.
    window = ctx.lookback(cid, "smoking_status")
    latest = smoking[0] if smoking and ctx.now - smoking[0].date <= window else None
    if latest is not None and _says_not_smoking(latest):
        # A recent "former" or "never" status supersedes an older tobacco diagnosis ("unknown" does not).
        conds = [
            c for c in conds if c.qualifier != "tobacco" or (c.date is not None and c.date > latest.date)
        ]
    evidence = [condition_evidence(c) for c in conds]
    kinds = {c.qualifier or "lifestyle" for c in conds}
    if latest is not None:
        matches = [m for s, c in latest.coded for m in ctx.t.condition_matches(s, c) if m.cause == cid]
        if matches:
            kinds.add(matches[0].qualifier or "tobacco")
            evidence.append(lab_evidence(latest, "smoking status: current use"))
    audit = ctx.recent(
        (x for x in ctx.facts.labs if x.analyte == "audit_c" and x.value is not None),
        ctx.lookback(cid, "audit_c"),
    )
    cut, whom = _audit_c_cut_off(ctx)
    if audit and audit[0].value >= cut:
        kinds.add("alcohol")
        evidence.append(lab_evidence(audit[0], f"AUDIT-C at or above {num(cut)}{whom}: hazardous drinking"))
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
