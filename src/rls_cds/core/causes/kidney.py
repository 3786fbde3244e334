"""kidney_disease (rls-clinical.md §2.2): ESRD/dialysis, CKD stage >= 3, eGFR < 60 persisting over 3
months (a single low value is "reduced eGFR"), renal-dose reminder for gabapentinoids."""

from __future__ import annotations

from datetime import timedelta

from rls_cds.core.facts import LabFact
from rls_cds.core.findings import (
    Context,
    Finding,
    cap,
    cond_fields,
    cond_name,
    condition_evidence,
    day,
    lab_evidence,
    make,
    med_evidence,
    num,
    tidy,
)

# --- kidney --------------------------------------------------------------------------------------


def _gabapentinoids(m) -> list[str]:
    return sorted({i.name for i in m.ingredients if i.drug_class == "gabapentinoid"})


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
        if not _below(lab, limit):
            break
        run.append(lab)
    return last, list(reversed(run))


def latest_reduced_egfr(ctx: Context) -> LabFact | None:
    """The latest eGFR in the window when it is known to be below 60 (">59" is not), else None."""
    last, _ = _egfr_run(ctx)
    return last if last is not None and _below(last, ctx.threshold("kidney_disease", "egfr_low")) else None


def egfr_text(lab: LabFact) -> str:
    return f"{lab.comparator or ''}{num(lab.value)}"


def _below(lab: LabFact, limit: float) -> bool:
    """eGFR known to be below ``limit``: a result sent as ">59" (LabCorp style, comparator '>') is a
    normal eGFR, not 59."""
    return lab.value < limit and lab.comparator not in (">", ">=")


def _egfr_stage(lab: LabFact) -> str:
    value = lab.value - (1e-6 if lab.comparator == "<" else 0)  # "<15" is G5, not G4
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
    gaba = ctx.orders_of_class("gabapentinoid")
    evidence = [condition_evidence(c) for c in esrd + ckd + other]
    evidence += [lab_evidence(x) for x in (run[:1] + run[-1:] if len(run) > 1 else run)]
    if not evidence:
        return []

    if esrd:
        kind = "esrd"
        summary = tidy(ctx.cause(cid).render("summary", **cond_fields(esrd)))
    elif ckd or egfr_ckd:
        kind = "ckd3plus"
        if ckd:
            summary = tidy(ctx.cause(cid).render("summary", **cond_fields(ckd)))
        else:
            summary = (
                f"eGFR {egfr_text(run[-1])} ({day(run[-1].date)}) < {num(limit)} for over "
                f"{persist.days // 30} months: CKD {_egfr_stage(run[-1])}, linked to RLS"
            )
    elif reduced_only:
        kind = "reduced_egfr"
        summary = (
            f"Reduced eGFR {egfr_text(run[-1])} ({day(run[-1].date)}): not CKD unless it persists 3 months"
        )
    elif all(c.qualifier == "informational" for c in other):
        kind = "informational"  # R39.2 extrarenal uremia: not a kidney disease, low specificity
        summary = f"{cond_name(other)} coded: not kidney disease itself; noted only"
    else:
        kind = "stage_unknown"
        # Say which: an unconfirmed ESRD is not "a stage below 3", and N18.9 is not "unconfirmed".
        why_noted = "unconfirmed" if other[0].tentative else "stage not given"
        summary = f"Kidney disease coded: {cond_name(other)} ({why_noted}); noted only"

    reasoning = {
        "esrd": "ESRD and dialysis carry a high RLS prevalence (strong evidence); in ESRD the iron "
        "criterion is ferritin < 200 ng/mL with TSAT < 20 %.",
        "ckd3plus": f"CKD stage 3 or worse (eGFR < {num(limit)} mL/min/1.73 m2 for more than 3 months, KDIGO "
        "2012) is associated with RLS (moderate evidence).",
        "reduced_egfr": f"Only {len(run)} eGFR value(s) below {num(limit)} spanning less than 3 months: "
        "KDIGO requires persistence over 3 months before calling it CKD.",
        "informational": "Extrarenal (prerenal) uremia is not a kidney disease and says nothing about CKD "
        "stage; low specificity for RLS: noted only.",
        "stage_unknown": "A kidney diagnosis that is not confirmed (provisional/differential): noted only."
        if other and other[0].tentative
        else "A kidney diagnosis without a stage (stage 3 or worse, ESRD or dialysis counts): noted only.",
    }[kind]
    action = "Note the association with RLS."
    actionable = False
    if gaba and (esrd or ckd or egfr_ckd or (last is not None and _below(last, limit))):
        names = sorted({name for m in gaba for name in _gabapentinoids(m)})
        evidence += [med_evidence(m, _gabapentinoids(m)) for m in gaba]  # each order with its own drug
        action = (
            f"Renal dose check: {' and '.join(names)} {'are' if len(names) > 1 else 'is'} renally cleared; "
            "adjust the dose to creatinine clearance per the product label."
        )
        if esrd and "gabapentin enacarbil" in names:
            action += " Gabapentin enacarbil (Horizant) is not recommended on haemodialysis (product label)."
        if len(names) > 1:
            action += f" {cap(' and '.join(names))} together: two gabapentinoids; check this is intended."
        actionable = True
        # The card's strength of evidence is that of the kidney-RLS link; the dose check is not.
        reasoning += (
            " The renal dose check is a product-label requirement and does not depend on that strength."
        )
        if esrd:
            why = f"ESRD/dialysis ({esrd[0].code})"
        elif ckd:
            why = f"CKD ({ckd[0].code})"
        else:
            why = f"eGFR {egfr_text(last)} ({day(last.date)})"
        summary = f"{cap(' and '.join(names))} with {why}: check the renal dose (renally cleared)"
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
                "gabapentinoid_draft": any(m.draft for m in gaba),  # prescribing hooks show it only then
            },
        )
    ]
