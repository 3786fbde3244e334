"""pregnancy (rls-clinical.md §2.6): gestational age recomputed to ``now``, third trimester from 28+0
weeks, episodes ending at delivery or past term, postpartum resolution within ~4 weeks."""

from __future__ import annotations

from datetime import datetime, timedelta

from rls_cds.core.causes.iron import iron_studies_missing
from rls_cds.core.facts import ConditionFact, LabFact
from rls_cds.core.findings import (
    Context,
    Evidence,
    Finding,
    condition_evidence,
    day,
    lab_evidence,
    make,
    num,
)

# --- pregnancy -----------------------------------------------------------------------------------


def _weeks_from_code(c: ConditionFact) -> float | None:
    code = c.code.upper()
    if code.startswith("Z3A.") and code[4:].isdigit():
        weeks = int(code[4:])
        if weeks == 0:  # Z3A.00 weeks not specified: week unknown
            return None
        if weeks == 1:  # Z3A.01 less than 8 weeks: pregnant then, week unknown (a lower bound from there)
            return None
        return 43.0 if weeks == 49 else float(weeks)  # Z3A.49: greater than 42 weeks
    if c.qualifier == "third_trimester":
        return 28.0  # "third trimester" says at least 28 weeks 0 days on the day it was coded
    return None


def pregnancy(ctx: Context) -> list[Finding]:
    """The pregnancy findings, judged once per evaluation (drug_induced asks too, for antidepressants)."""
    if "pregnancy" not in ctx._cache:
        ctx._cache["pregnancy"] = _pregnancy(ctx)
    return ctx._cache["pregnancy"]


def pregnancy_state(ctx: Context) -> tuple[bool, float | None, bool]:
    """(currently pregnant, gestational weeks today or None, whether those weeks are only a lower
    bound), as this rule read it: the iron and drug rules ask, and must not read pregnancy again."""
    current = [f.data for f in pregnancy(ctx) if "gestational_weeks" in f.data]
    if not current:
        return False, None, False
    known, bound = current[0]["gestational_weeks"], current[0].get("weeks_at_least")
    return True, known if known is not None else bound, known is None and bound is not None


def _pregnancy(ctx: Context) -> list[Finding]:
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
            note = "under 8 weeks on that date" if c.code.upper() == "Z3A.01" else None
            estimates.append((None, c.date, condition_evidence(c, note)))
        else:
            today = weeks_then + elapsed
            if today > max(
                term_max, weeks_then + 1
            ):  # a post-term code (Z3A.42, Z3A.49) is current for a week
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
    if delivered is not None:  # undated evidence cannot be placed after the delivery either
        estimates = [e for e in estimates if e[1] is not None and e[1] > delivered]
    # Pregnant on a date, week unknown: at least the weeks since then today; past term, that is over.
    estimates = [
        e for e in estimates if e[0] is not None or e[1] is None or _weeks_since(now, e[1]) <= term_max
    ]
    if estimates:
        known = [e[0] for e in estimates if e[0] is not None]
        bound = max(
            (max(0.0, _weeks_since(now, e[1])) for e in estimates if e[0] is None and e[1] is not None),
            default=None,
        )
        # A known gestational age wins over a bound (an older test may be from an earlier pregnancy).
        weeks = max(known) if known else bound
        at_least = not known and bound is not None
        evidence = [e[2] for e in estimates]
        start = min((e[1] for e in estimates if e[1] is not None), default=None)
        if weeks is not None and weeks >= third:
            ferritin_since = start is not None and any(
                x.analyte == "ferritin" and x.date is not None and x.date >= start
                for x in (*ctx.facts.labs, *ctx.facts.unread_labs)  # one exists, even if unreadable
            )
            # The iron-studies card already asks for ferritin when there is none in 12 months: one ask.
            covered = bool(iron_studies_missing(ctx))
            checked = ferritin_since or covered or "Observation" in ctx.missing
            # Dated only by an earlier record (a test, a diagnosis): the pregnancy may have ended
            # unrecorded, so the card informs and asks to confirm it.
            dated_only = (
                f" Gestational age is only bounded by a record of {day(start)}: confirm the pregnancy is "
                "ongoing."
                if at_least
                else ""
            )
            return [
                make(
                    ctx,
                    cid,
                    summary=(
                        f"Pregnant, at least {int(weeks)} weeks if ongoing (3rd trimester): RLS peaks"
                        if at_least
                        else f"Pregnant, ~{int(weeks)} weeks (3rd trimester): RLS peaks, usually resolves "
                        "after delivery"
                    ),
                    reasoning="RLS affects about a quarter to a third of women in the third trimester "
                    "(Manconi 2004; Dunietz 2017) and usually resolves within about 4 weeks after delivery. "
                    "Iron deficiency is common in pregnancy." + dated_only,
                    action=("Check ferritin (none measured during this pregnancy). " if not checked else "")
                    + "Expect resolution within about 4 weeks after delivery; most RLS drugs are avoided "
                    "in pregnancy.",
                    evidence=evidence,
                    actionable=not checked and not at_least,
                    strength="moderate" if at_least else "strong",
                    data=_weeks_data(weeks, at_least) | {"ferritin_checked": checked},
                )
            ]
        return [
            make(
                ctx,
                cid,
                summary=(
                    f"Pregnant, ~{int(weeks)} weeks: RLS risk rises in the third trimester"
                    if known
                    else "Pregnancy documented (trimester unknown): RLS is common in late pregnancy"
                ),
                reasoning="Pregnancy, especially the third trimester, is a strong but transient RLS trigger.",
                action="Note; check ferritin during pregnancy; expect resolution after delivery.",
                evidence=evidence,
                actionable=False,
                strength="moderate",
                data=_weeks_data(weeks, at_least),
            )
        ]
    recent_post = [
        c for c in postpartum if c.date is not None and (now - c.date) <= timedelta(days=post_days)
    ]
    if recent_post:
        latest = max(recent_post, key=lambda c: c.date)
        # Z39.2 is the postpartum follow-up visit (usually weeks after delivery), not the delivery.
        visit = latest.code.upper() == "Z39.2"
        since = f"follow-up visit {day(latest.date)}, delivery before it" if visit else day(latest.date)
        ferritin_recent = any(
            x.analyte == "ferritin" and x.date is not None and now - x.date <= timedelta(days=90)
            for x in (*ctx.facts.labs, *ctx.facts.unread_labs)
        )
        return [
            make(
                ctx,
                cid,
                summary=f"Postpartum ({since}): pregnancy RLS usually ends ~4 weeks after delivery",
                reasoning="Pregnancy-related RLS usually resolves within about 4 weeks after delivery; RLS "
                "persisting beyond that is not pregnancy-related.",
                action="Reassess RLS after the postpartum period"
                + ("." if ferritin_recent else "; check ferritin."),
                evidence=[condition_evidence(c) for c in recent_post],
                actionable=False,
                strength=ctx.cause(cid).strength_for("postpartum"),
            )
        ]
    return []


def _weeks_data(weeks: float | None, at_least: bool) -> dict:
    """'gestational_weeks' (known, else None) is in the data of every current-pregnancy finding: other
    rules read it (iron, antidepressants); 'weeks_at_least' is a lower bound from a dated record."""
    known = round(weeks, 1) if weeks is not None and not at_least else None
    return {"gestational_weeks": known, "weeks_at_least": round(weeks, 1) if at_least else None}


def _weeks_since(now: datetime, then: datetime) -> float:
    return (now - then).days / 7.0


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
