"""drug_induced and drug_withdrawal (rls-clinical.md §2.7-2.8): aggravating ingredients of active and
draft orders (never RLS treatments or alternatives; topical routes excluded), recently stopped
vasodilators, sedatives and imipramine."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from rls_cds.core.causes.pregnancy import pregnancy_state
from rls_cds.core.facts import MedFact
from rls_cds.core.findings import (
    STRENGTH_ORDER,
    Context,
    Finding,
    cap,
    condition_evidence,
    day,
    make,
    med_evidence,
    tidy,
)

# --- medications ---------------------------------------------------------------------------------


def ing_key(i: Any) -> str:
    """Identity of an ingredient across IN/PIN rows (a PIN maps to its IN; unverified RxCUIs by name)."""
    return i.base_rxcui or i.rxcui or i.name.lower()


def _aggravators(m: MedFact) -> list[Any]:
    return [i for i in m.ingredients if i.role == "aggravator"]


ANTIDEPRESSANT_CLASSES = frozenset({"ssri", "snri", "tca", "mirtazapine"})
# In pregnancy a switch of these is the obstetric team's decision, so no swap is named: antidepressants
# (stopping or switching carries its own risks) and the dopamine-blocking antiemetics used for nausea and
# vomiting of pregnancy (metoclopramide, promethazine), whose usual alternative (ondansetron) is itself
# weighed against first-trimester data.
_SWITCH_IN_PREGNANCY = {
    **dict.fromkeys(ANTIDEPRESSANT_CLASSES, "antidepressant"),
    "antiemetic_d2": "antiemetic",
}


# Antidepressants also used for neuropathic pain: with neuropathy coded, an antidepressant swap would
# leave the pain untreated; a gabapentinoid treats both (AASM 2024 recommends them for RLS).
_NEUROPATHIC_PAIN_CLASSES = frozenset({"snri", "tca"})
_FOR_NEUROPATHY = (
    "a gabapentinoid for neuropathic pain (pregabalin or gabapentin also treat RLS; adjust to kidney "
    "function), or bupropion if it is for depression"
)


def _alternative(ctx: Context, ingredients: list[Any], classes: list[str]) -> str | None:
    """The substitute the tables name, only when every aggravating ingredient has the same one: for
    fluoxetine + olanzapine, bupropion would replace the antidepressant half only."""
    named = {i.alternative or None for i in ingredients}
    if len(named) != 1 or None in named:
        return None
    if (
        set(classes) <= _NEUROPATHIC_PAIN_CLASSES
        and any(not c.tentative for c in ctx.facts.by_cause("peripheral_neuropathy"))
        and not ctx.orders_of_class("gabapentinoid")  # already on one: the tables' alternative stands
    ):
        return _FOR_NEUROPATHY
    return named.pop()


def _alternative_taken(ctx: Context, alternative: str) -> list[tuple[str, MedFact]]:
    """(name, order) of alternatives the patient already takes or is being ordered (bupropion beside a
    mirtazapine draft, cetirizine beside hydroxyzine): a substitute already in use is no switch to
    offer. The text names examples; any drug of their class counts (levocetirizine for 'loratadine,
    fexofenadine or cetirizine')."""
    text = alternative.lower()
    classes = {
        i.drug_class
        for i in getattr(ctx.t, "ingredients", None) or ()
        if i.role == "alternative" and re.search(rf"\b{re.escape(i.name.lower())}\b", text)
    }
    return [
        (i.name, m)
        for m in ctx.facts.meds
        if m.in_effect and not m.route_excluded
        for i in m.ingredients
        if i.role == "alternative" and i.drug_class in classes
    ]


def drug_induced(ctx: Context) -> list[Finding]:
    cid = "drug_induced"
    rls = ctx.facts.by_cause("rls")
    # rls-clinical.md §1: a provisional/differential diagnosis is weaker evidence. When RLS itself is
    # not confirmed, a drug card informs and names that diagnosis; it does not warn.
    rls_unconfirmed = bool(rls) and all(c.tentative for c in rls)
    pregnant: bool | None = None  # computed once, only if an antidepressant is flagged
    groups: dict[tuple, list[MedFact]] = {}
    # Ingredients the patient already takes (record orders): a draft of one of them continues therapy.
    current = {
        ing_key(i)
        for m in ctx.facts.meds
        if not m.draft and not m.route_excluded and m.status in ("active", "on-hold")
        for i in _aggravators(m)
    }
    # A prescription that ran its course recently (completed within the reference's "recent stop"
    # window), or whose planned end is still ahead: a draft of the same drug renews it, and removing
    # that draft stops the therapy as surely.
    window = ctx.lookback("drug_withdrawal", "stopped_order")
    renewed = {
        ing_key(i): m
        for m in ctx.facts.meds
        if not m.draft
        and not m.route_excluded
        and m.status == "completed"
        and (when := m.ended or m.authored) is not None
        and ctx.now - window <= when
        for i in _aggravators(m)
        if ing_key(i) not in current
    }
    for m in ctx.facts.meds:
        if m.route_excluded:
            continue
        if not m.in_effect:
            continue
        agg = _aggravators(m)
        if not agg:
            continue
        # Orders of the same drug(s) are one finding: active ones, and drafts (a titration drafted as
        # two orders is one card whose delete action names both).
        key = ("draft" if m.draft else "active", tuple(sorted(ing_key(i) for i in agg)))
        groups.setdefault(key, []).append(m)
    out = []
    for (kind, _), meds in sorted(groups.items(), key=lambda kv: (kv[0][0] != "draft", str(kv[0][1]))):
        agg = {ing_key(i): i for m in meds for i in _aggravators(m)}
        ingredients = sorted(agg.values(), key=lambda i: (STRENGTH_ORDER.get(i.strength, 9), i.name))
        names = [i.name for i in ingredients]
        lead = ingredients[0]
        strength = lead.strength
        warn = any(i.indicator == "warning" for i in ingredients)
        classes = sorted({i.drug_class for i in ingredients})
        alternative = _alternative(ctx, ingredients, classes)
        in_pregnancy = False
        switch_kinds = sorted({_SWITCH_IN_PREGNANCY[c] for c in classes if c in _SWITCH_IN_PREGNANCY})
        if switch_kinds:
            pregnant = pregnancy_state(ctx)[0] if pregnant is None else pregnant
            # Name no swap, offer no one-click removal; the card says why.
            in_pregnancy, alternative = pregnant, None if pregnant else alternative
        # The neuropathy wording names two options (a gabapentinoid, or bupropion): it is already
        # withdrawn when a gabapentinoid is in effect, and bupropion alone does not void it.
        taken_orders = (
            _alternative_taken(ctx, alternative) if alternative and alternative != _FOR_NEUROPATHY else []
        )
        taken = sorted({name for name, _ in taken_orders})
        if taken:
            alternative = None
        alt_short = alternative.split(" (")[0] if alternative else None
        # A record order is "already taken"; a substitute drafted in this session is "also being ordered".
        names_taken = " and ".join(taken)
        on_record = any(not o.draft for _, o in taken_orders)
        already = (
            (f"; patient already takes {names_taken}" if on_record else f"; {names_taken} also being ordered")
            if taken
            else ""
        )
        m0 = meds[0]
        product = m0.display or ", ".join(names)
        in_product = (
            "" if product.lower().startswith(names[0].lower()) and len(names) == 1 else f" (in {product})"
        )
        drug = " + ".join(names)
        certainty = min((m.certainty for m in meds), key=lambda c: ("code", "ingredient", "text").index(c))
        if kind == "draft":
            noun = "order" if len(meds) == 1 else f"orders ({len(meds)})"
            summary = f"{cap(drug)} {noun} may aggravate RLS" + (
                f"; consider {alt_short}" if alt_short else already
            )
        else:
            claim = " may aggravate RLS" + (f"; consider {alt_short}" if alt_short else already)
            # An order on hold (held for surgery, a pause) is still an exposure, but not "active".
            state = "On-hold" if all(m.status == "on-hold" for m in meds) else "Active"
            summary = (
                f"{state} {drug}{' ' + in_product.strip() if in_product and len(drug) < 40 else ''}{claim}"
            )
            if len(summary) > 139:  # a long product name must not push the claim out: it is in the evidence
                summary = f"{state} {drug}{claim}"
        class_titles = ", ".join(ctx.class_title(c) for c in classes)
        # The AASM 2024 exacerbating factors cover the moderate classes only; a weak class (lithium,
        # beta-blocker, H2 blocker, anticonvulsant) rests on case reports (rls-clinical.md §2.7, §6).
        basis = (
            "case reports and patient-education lists only"
            if strength == "weak"
            else "AASM 2024 names antihistaminergic, serotonergic and antidopaminergic medications as "
            "exacerbating factors"
        )
        reasoning = (
            f"{cap(drug)} ({class_titles}) is listed among drugs that may aggravate RLS "
            f"({strength} evidence; {basis})."
        )
        renews = kind == "draft" and any(k in renewed for k in agg)
        continues = kind == "draft" and (
            any(k in current for k in agg) or any(m.ref in ctx.facts.continued for m in meds) or renews
        )
        if continues:
            if renews and not any(k in current for k in agg):
                lead = (
                    f"The patient's last {drug} order completed within the last {window.days} days: "
                    "this order renews that therapy"
                )
            else:
                lead = f"The patient already has a current {drug} order: this order continues that therapy"
            reasoning += (
                f" {lead}; plan any change with the prescriber (antidepressants, beta-blockers and lithium "
                "must not be stopped abruptly)."
            )
        if rls_unconfirmed:
            reasoning += (
                " The RLS diagnosis is not confirmed (provisional/differential): weaker grounds for a change."
            )
        if in_pregnancy:
            reasoning += (
                f" The patient is pregnant: weigh any change of {' or '.join(switch_kinds)} with the "
                "obstetric team (stopping or switching carries its own risks)."
            )
        if certainty == "text":
            reasoning += (
                " The drug was recognised by name in the order text only (no code matched): lower certainty."
            )
        elif certainty == "ingredient":
            reasoning += (
                " The product code is not in the tables; it was matched through its ingredient codes."
            )
        fields = {
            "drug": drug,
            "drug_class": class_titles,
            "alternative": alternative
            or (f"already in use ({names_taken})" if taken else "")
            or ("a decision for the prescriber and the obstetric team" if in_pregnancy else "none known"),
        }
        if alternative:
            action = f"Review the need for {drug}. " + tidy(ctx.cause(cid).render("action", **fields))
        elif taken:
            where = (
                f"the patient already takes {names_taken}" if on_record else f"{names_taken} is also ordered"
            )
            action = f"Review the need for {drug}: {where}, the usual alternative."
        else:
            # At order-sign the reader is the prescriber: "with the prescriber" only on patient-view.
            who = ["the prescriber"] if kind == "active" else []
            who += ["the obstetric team"] if in_pregnancy else []
            action = f"Review the need for {drug}" + (f" with {' and '.join(who)}" if who else "")
            action += "." if in_pregnancy else "; no simple substitute."
        if "beta_blocker" in classes:
            action += " Never stop a beta-blocker abruptly."
        if ANTIDEPRESSANT_CLASSES & set(classes) and (kind == "active" or continues):
            if alternative is None:
                taper = "taper it."
            elif alternative == _FOR_NEUROPATHY:
                taper = "taper it (cross-taper if switching to bupropion)."
            else:
                taper = "taper, or cross-taper to the alternative."
            action += " Do not stop an antidepressant abruptly: " + taper
        out.append(
            make(
                ctx,
                cid,
                summary=summary,
                fields=fields,
                reasoning=reasoning,
                action=action,
                evidence=[med_evidence(m, names) for m in meds]
                + [
                    med_evidence(m, [name], "the usual alternative, already in effect")
                    for name, m in taken_orders
                ]
                + [
                    med_evidence(renewed[k], [agg[k].name], "recently completed: the draft renews it")
                    for k in agg
                    if renews and k in renewed
                ]
                + ([condition_evidence(rls[0], "RLS diagnosis")] if rls_unconfirmed else []),
                actionable=warn and not rls_unconfirmed,
                strength=strength,
                data={
                    "draft": kind == "draft",
                    "orders": [m.ref for m in meds],
                    "ingredients": names,
                    "rxcuis": sorted(i.base_rxcui or i.rxcui for i in ingredients if i.base_rxcui or i.rxcui),
                    "classes": classes,
                    "alternative": alternative,
                    "certainty": certainty,
                    "continues_active": continues,
                    "alternative_taken": taken,
                },
            )
        )
    return out + rejected_drafts(ctx)


def rejected_drafts(ctx: Context) -> list[Finding]:
    """Draft orders of an aggravating drug that failed FHIR validation: information that the order
    could not be checked (its drug is known from its code; nothing else of it is trusted)."""
    out = []
    for m in ctx.facts.rejected_drafts:
        agg = _aggravators(m)
        if not agg or m.route_excluded:
            continue
        drug = " + ".join(sorted({i.name for i in agg}))
        classes = ", ".join(ctx.class_title(c) for c in sorted({i.drug_class for i in agg}))
        out.append(
            make(
                ctx,
                "drug_induced",
                summary=f"{cap(drug)} order could not be checked (not valid FHIR R4); it may aggravate RLS",
                fields={
                    "drug": drug,
                    "drug_class": classes,
                    "alternative": "not assessed (the order could not be read)",
                },
                reasoning=(
                    "This draft order failed FHIR R4 validation, so the service did not judge it. "
                    f"Its drug, {drug} ({classes}), is listed among drugs that may aggravate RLS."
                ),
                action=f"Review the need for {drug}; the order as sent could not be read in full.",
                evidence=[med_evidence(m, [i.name for i in agg], "failed FHIR R4 validation: not judged")],
                actionable=False,
                strength="informational",
                data={
                    "draft": True,
                    "orders": [m.ref],
                    "ingredients": [i.name for i in agg],
                    "invalid": True,
                },
            )
        )
    return out


# Drug classes of terminology/drug_classes.csv whose long-term use brings augmentation.
_DOPAMINERGIC = ("dopamine_agonist", "levodopa")


def augmentation(ctx: Context) -> list[Finding]:
    """Dopamine agonists and levodopa treat RLS but worsen it over time (augmentation); AASM 2024 suggests
    against their standard use (rls-clinical.md §3). Information only, and not with Parkinson's disease
    coded: the drug then treats the Parkinson's (§2.5). Drafts and current orders are separate findings:
    the prescribing hooks show the first, patient-view the second."""
    if any(not c.tentative for c in ctx.facts.by_cause("parkinsons")):
        return []
    orders = [m for m in ctx.orders_of_class(*_DOPAMINERGIC) if not m.route_excluded]
    out = []
    for draft in (True, False):
        group = [m for m in orders if m.draft == draft]
        if not group:
            continue
        names = sorted({i.name for m in group for i in m.ingredients if i.drug_class in _DOPAMINERGIC})
        drug = " + ".join(names)
        summary = (
            f"{cap(drug)} order for RLS: AASM 2024 suggests against standard use (augmentation)"
            if draft
            else None
        )
        action = (
            "Prefer a gabapentinoid (gabapentin, pregabalin or gabapentin enacarbil; adjust to kidney "
            "function) unless there is a reason for a dopaminergic drug."
            if draft
            else None
        )
        out.append(
            make(
                ctx,
                "augmentation",
                summary=summary,
                action=action,
                fields={"drug": cap(drug)},
                reasoning=f"{cap(drug)} is a dopaminergic RLS treatment; augmentation is its main long-term "
                "risk, which is why AASM 2024 now prefers gabapentinoids.",
                evidence=[med_evidence(m, names) for m in group],
                data={"draft": draft, "orders": [m.ref for m in group], "ingredients": names},
            )
        )
    return out


def stop_date(m: MedFact, latest: datetime) -> tuple[datetime | None, bool]:
    """(date, exact) of a stopped or completed order's stop. Its end is the stop once it has passed
    (``latest``: now plus a day of clock skew). With no end, or a planned end still ahead (stopped early),
    the record gives none: the stop fell after authoredOn, so an order written inside a window still
    proves a stop inside it, dated "on or after" that day (exact False)."""
    exact = m.ended is not None and m.ended <= latest
    return (m.ended if exact else m.authored), exact


def drug_withdrawal(ctx: Context) -> list[Finding]:
    cid = "drug_withdrawal"
    window = ctx.lookback(cid, "stopped_order")
    current = {ing_key(i) for m in ctx.facts.meds if m.in_effect for i in m.ingredients}
    # rls-clinical.md §2.8 counts a stop "with no active replacement": a current drug of the same class
    # (lorazepam changed to clonazepam, hydralazine stopped beside isosorbide dinitrate) replaces it.
    current_classes = {
        i.drug_class for m in ctx.facts.meds if m.in_effect and not m.route_excluded for i in m.ingredients
    }
    latest = ctx.now + timedelta(days=1)
    found: dict[str, tuple[MedFact, Any, datetime, bool]] = {}
    for m in ctx.facts.meds:
        if m.draft or m.status not in ("stopped", "completed") or m.route_excluded:
            continue
        for i in m.ingredients:
            if not (i.role == "withdrawal" or i.withdrawal) or ing_key(i) in current:
                continue
            if i.drug_class in current_classes:
                continue
            when, exact = stop_date(m, latest)
            if when is None or not (ctx.now - window <= when <= latest):
                continue
            if ing_key(i) not in found or when > found[ing_key(i)][2]:
                found[ing_key(i)] = (m, i, when, exact)
    if not found:
        return []
    items = sorted(found.values(), key=lambda x: x[1].name)
    names = [i.name for _, i, _, _ in items]
    _, _, last, last_exact = max(items, key=lambda x: x[2])
    return [
        make(
            ctx,
            cid,
            fields={"drug": ", ".join(names), "date": day(last) if last_exact else f"or after {day(last)}"},
            reasoning="Withdrawal of vasodilators, sedatives or imipramine is reported to trigger or worsen "
            "RLS "
            f"(weak evidence); stopped within the last {window.days} days with no active replacement.",
            evidence=[
                med_evidence(
                    m,
                    [i.name],
                    f"stopped/completed by {day(w)}"
                    if exact
                    else f"no stop date given: stopped/completed since the order of {day(w)}",
                )
                for m, i, w, exact in items
            ],
            data={"ingredients": names},
        )
    ]
