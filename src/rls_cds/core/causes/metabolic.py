"""diabetes (diagnosis or HbA1c), and the low-lab causes: magnesium, vitamin B12 (with MMA), glucose."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from rls_cds.core.causes.kidney import egfr_text, latest_reduced_egfr
from rls_cds.core.facts import LabFact
from rls_cds.core.findings import (
    Context,
    Finding,
    all_tentative,
    cond_fields,
    condition_evidence,
    day,
    lab_evidence,
    lab_fields,
    lab_text,
    make,
    num,
    unread_evidence,
    unreadable_reason,
)

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
        summary, action, fields = None, None, cond_fields(conds) if conds else {}
        why = reasoning
        if low is not None:
            note = None
            if cid == "hypoglycemia":
                very_low = ctx.threshold(cid, "glucose_very_low")
                level = 2 if low.value < very_low and (low.comparator or "") != ">" else 1
                note = (
                    f"ADA level 2 (< {num(very_low)} mg/dL): clinically significant hypoglycemia"
                    if level == 2
                    else f"ADA level 1 ({num(very_low)}-{num(limit - 1)} mg/dL)"
                )
                why += f" This value is {note.split(':')[0]}."
            elif flags_low and not low.value < limit:
                note = f"flagged low by the lab ({', '.join(sorted(low.interpretation & {'L', 'LL'}))})"
            evidence.insert(0, lab_evidence(low, note))
            fields = lab_fields(label, low)
        elif extra is not None and len(extra) == 1:  # borderline, no MMA: the reference's next step
            evidence.append(lab_evidence(extra[0], "borderline (200-300 pg/mL); no MMA drawn with it"))
            summary = f"{label} {lab_text(extra[0])} borderline: check methylmalonic acid (MMA)"
            action = "Check methylmalonic acid: MMA > 400 nmol/L supports B12 deficiency (high in CKD)."
        elif extra is not None and extra[1].unreadable:
            reason = unreadable_reason(extra[1])
            evidence += [
                lab_evidence(extra[0], "borderline (200-300 pg/mL)"),
                unread_evidence(extra[1], f"MMA result: {reason}; judge it by hand"),
            ]
            summary = f"{label} {lab_text(extra[0])} borderline; MMA result: {reason}; judge by hand"
            action = "Read the MMA result in the EHR: MMA > 400 nmol/L supports B12 deficiency."
        elif extra is not None:
            evidence.extend(lab_evidence(x) for x in extra)
            summary = (
                f"{label} {lab_text(extra[0])} borderline, MMA {lab_text(extra[1])}: possible B12 deficiency"
            )
        tent = all_tentative(conds) and low is None and extra is None
        informative = None
        if cid == "b12_deficiency":
            summary, action, why, informative = _b12_with_mma(ctx, low, extra, evidence, summary, action, why)
        return [
            make(
                ctx,
                cid,
                summary=summary,
                action=action,
                fields=fields,
                reasoning=why,
                evidence=evidence,
                actionable=False if tent or informative else None,
                data={"value": low.value if low else None},
            )
        ]

    rule.__name__ = cid
    return rule


def _b12_with_mma(ctx: Context, low, extra, evidence: list, summary, action, reasoning: str):
    """What an MMA result adds to a B12 card: a normal MMA beside a low B12 argues against tissue
    deficiency (the card informs); a high MMA in a patient with reduced kidney function may be the
    kidneys' (the card names it). Returns (summary, action, reasoning, inform only)."""
    limit = ctx.threshold("b12_deficiency", "mma_high")
    beside = _paired_mma(ctx, low) if low is not None else None
    state = _mma_state(beside, limit) if beside is not None else None
    if state == "high":
        evidence.append(lab_evidence(beside, "raised MMA: supports B12 deficiency"))
    coded = any(not c.tentative for c in ctx.facts.by_cause("b12_deficiency"))
    if state == "normal" and not coded:  # a coded diagnosis (pernicious anaemia...) is not second-guessed
        evidence.append(lab_evidence(beside, "normal MMA: argues against tissue B12 deficiency"))
        summary = f"B12 {lab_text(low)} low but MMA {lab_text(beside)} normal: deficiency not confirmed"
        reasoning += (
            f" The MMA ({num(beside.value)} nmol/L, {day(beside.date)}) is not raised (> {num(limit)} "
            "supports deficiency), which argues against tissue B12 deficiency; judge the low B12 clinically."
        )
        return summary, "Judge clinically; repeat B12 if in doubt.", reasoning, True
    high_mma = state == "high" or (extra is not None and len(extra) == 2 and not extra[1].unreadable)
    kidney = _reduced_kidney_function(ctx) if high_mma else None
    if kidney:
        reasoning += f" MMA is also raised by reduced kidney function, which this patient has ({kidney})."
    return summary, action, reasoning, False


# An MMA tells about a B12 drawn with it: within a month either way (later ones may follow replacement).
_MMA_PAIRING = timedelta(days=30)


def _paired_mma(ctx: Context, b12: LabFact) -> LabFact | None:
    """The newest MMA in the window drawn within a month of this B12, or None."""
    mma = ctx.recent(
        (x for x in ctx.facts.labs if x.analyte == "mma" and x.value is not None),
        ctx.lookback("b12_deficiency", "mma"),
    )
    return next((x for x in mma if abs(x.date - b12.date) <= _MMA_PAIRING), None)


def _mma_state(lab: LabFact, limit: float) -> str | None:
    """'high' (> limit, also '>400'), 'normal' (<= limit, also '<100'), or None when a bound cannot tell."""
    comparator = lab.comparator or ""
    if comparator.startswith(">"):
        return "high" if lab.value > limit or (comparator == ">" and lab.value >= limit) else None
    if comparator.startswith("<"):
        return "normal" if lab.value <= limit else None
    return "high" if lab.value > limit else "normal"


def _reduced_kidney_function(ctx: Context) -> str | None:
    """A word on the patient's reduced kidney function (CKD 3+/ESRD coded, or a latest eGFR < 60)."""
    for c in ctx.facts.by_cause("kidney_disease"):
        if c.qualifier in ("esrd", "ckd3plus", "uremia") and not c.tentative:
            return f"{c.display or c.code} ({c.code})"
    egfr = latest_reduced_egfr(ctx)  # the kidney rule's own reading (">59" is a normal eGFR)
    return f"eGFR {egfr_text(egfr)} on {day(egfr.date)}" if egfr is not None else None


def _b12_borderline(ctx: Context, b12: list[LabFact]) -> list[LabFact] | None:
    if not b12:
        return None
    hi = ctx.threshold("b12_deficiency", "b12_borderline_max")
    if not b12[0].value < hi:
        return None
    paired = _paired_mma(ctx, b12[0])
    if paired is None:
        # Borderline and no MMA: check it (rls-clinical.md §2.9), unless one is under way. One that
        # exists but cannot be read (unit, value, no date) is named, to be judged by hand.
        window = ctx.lookback("b12_deficiency", "mma")
        if ctx.recent((x for x in ctx.facts.pending_labs if x.analyte == "mma"), window):
            return None
        unread = ctx.unread(("mma",), window)
        return [b12[0], unread[0]] if unread else [b12[0]]
    if _mma_state(paired, ctx.threshold("b12_deficiency", "mma_high")) == "high":
        return [b12[0], paired]
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
