"""iron_deficiency and iron_studies_missing (rls-clinical.md §2.1): AASM 2024 ferritin/TSAT bands, TSAT
computed from iron/TIBC of the same draw, the TSAT ceiling, the ESRD rule, 12-month look-back."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from rls_cds.core.facts import ConditionFact, LabFact, MedFact
from rls_cds.core.findings import (
    Context,
    Evidence,
    Finding,
    all_tentative,
    cap,
    clip,
    cond_name,
    condition_evidence,
    day,
    lab_evidence,
    lab_fields,
    lab_text,
    make,
    med_evidence,
    num,
    tidy,
    unread_evidence,
    unreadable_reason,
)

# --- iron ----------------------------------------------------------------------------------------

# Drug classes of terminology/drug_classes.csv (the loader requires both): which ingredients are
# IV-only iron is the tables' call, not this module's.
_IRON_CLASSES = ("iron", "iv_iron")


@dataclass
class IronStatus:
    ferritin: LabFact | None
    tsat: LabFact | None  # measured TSAT
    # TSAT from iron/TIBC of the same draw: (value, iron, TIBC, comparator of the TSAT or '')
    computed: tuple[float, LabFact, LabFact, str] | None
    stale: list[LabFact]
    pending: list[LabFact]
    unread: list[LabFact]  # ferritin/TSAT in the window whose unit could not be converted
    esrd: list[ConditionFact]
    iron_orders: list[MedFact]

    @property
    def tsat_lab(self) -> LabFact | None:
        """The result the TSAT value comes from: the measured TSAT, unless iron/TIBC were drawn later."""
        if self.tsat is not None and (self.computed is None or self.tsat.date >= self.computed[1].date):
            return self.tsat
        return self.computed[1] if self.computed else None

    @property
    def tsat_value(self) -> float | None:
        lab = self.tsat_lab
        if lab is None:
            return None
        return lab.value if lab is self.tsat else self.computed[0]

    @property
    def tsat_comparator(self) -> str:
        """'<' or '>' when the TSAT value is only a bound ('<5' measured, or a TIBC of '>450')."""
        lab = self.tsat_lab
        if lab is None:
            return ""
        return (lab.comparator or "") if lab is self.tsat else self.computed[3]

    def tsat_text(self) -> str:
        return f"{self.tsat_comparator}{num(self.tsat_value)}"

    def read_result(self, analyte: str) -> LabFact | None:
        """The readable result the rules judged for 'ferritin' or 'tsat' (None when there is none)."""
        return self.ferritin if analyte == "ferritin" else self.tsat_lab

    def tsat_evidence(self) -> list[Evidence]:
        lab = self.tsat_lab
        if lab is not None and lab is self.tsat:
            return [lab_evidence(lab)]
        if self.computed:
            value, iron, tibc, comparator = self.computed
            note = f"TSAT {comparator}{num(value)} % computed as iron / TIBC x 100 (same draw)"
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
    unbounded = []  # newer draws whose TSAT exists but cannot be computed
    for iron in irons:  # newest first; the TIBC must come from the same draw (same collection time)
        tibc = tibcs.get(iron.date)
        if tibc is None:
            continue
        comparator = _ratio_comparator(iron, tibc)
        if comparator is None:
            unbounded.append(_unreadable_tsat(iron, tibc))
            continue
        value = _one_decimal(iron.value / tibc.value * 100.0, comparator)
        computed = (value, iron, tibc, comparator)
        break
    relevant = ("ferritin", "tsat", "iron", "tibc")
    current = {id(x) for x in ferritins} | {id(x) for x in tsats}
    stale = sorted(
        (x for x in labs if x.analyte in ("ferritin", "tsat") and id(x) not in current),
        key=lambda x: (x.date is not None, x.date),
        reverse=True,
    )
    pending = ctx.recent((x for x in ctx.facts.pending_labs if x.analyte in relevant), window)
    # Undated ones included: a result without a date may be recent, never "no iron studies" because of it.
    unread = sorted(
        ctx.unread(("ferritin", "tsat"), window) + unbounded,
        key=lambda x: (x.date is not None, x.date),
        reverse=True,
    )
    esrd = [c for c in ctx.facts.by_cause("kidney_disease") if c.qualifier == "esrd" and not c.tentative]
    iron_orders = ctx.orders_of_class(*_IRON_CLASSES)
    status = IronStatus(
        ferritin=ferritins[0] if ferritins else None,
        tsat=tsats[0] if tsats else None,
        computed=computed,
        stale=stale,
        pending=pending,
        unread=unread,
        esrd=esrd,
        iron_orders=iron_orders,
    )
    ctx._cache["iron"] = status
    return status


# How a bound on iron or on TIBC bounds iron / TIBC: an iron below x, or a TIBC above y, puts the
# ratio below x / y ('<='/'>=' stay inclusive).
_IRON_BOUND = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}
_TIBC_BOUND = {">": "<", ">=": "<=", "<": ">", "<=": ">="}


def _ratio_comparator(iron: LabFact, tibc: LabFact) -> str | None:
    """The comparator of iron / TIBC ('' when both are exact), or None when the bounds pull in
    opposite directions (no TSAT can be read from that draw)."""
    bounds = {
        b for b in (_IRON_BOUND.get(iron.comparator or ""), _TIBC_BOUND.get(tibc.comparator or "")) if b
    }
    if not bounds:
        return ""
    if len({b[0] for b in bounds}) > 1:
        return None
    return min(bounds, key=len)  # one strict bound makes the ratio strict


def _one_decimal(value: float, comparator: str) -> float:
    """One decimal, as a lab reports it (19.97 is not "TSAT 20 % < 20"); a bound is rounded outwards,
    so it stays a true bound (<20.04 is <20.1, never <20)."""
    if comparator.startswith("<"):
        return math.ceil(value * 10 - 1e-9) / 10
    if comparator.startswith(">"):
        return math.floor(value * 10 + 1e-9) / 10
    return round(value, 1)


def _unreadable_tsat(iron: LabFact, tibc: LabFact) -> LabFact:
    """The TSAT of a draw whose iron and TIBC bounds pull apart: a result that exists, unread. Shown
    with the values and units as the lab sent them."""
    shown = f"iron {_as_reported(iron)} / TIBC {_as_reported(tibc)}"
    return replace(iron, analyte="tsat", unreadable="bounds", raw_value=shown, raw_unit=None)


def _as_reported(lab: LabFact) -> str:
    value = lab.raw_value if lab.raw_value is not None else lab.value
    unit = lab.raw_unit or lab.unit
    return f"{lab.comparator or ''}{num(value) if isinstance(value, int | float) else value} {unit}".strip()


# Said only when the ferritin is what qualifies: next to ferritin 215 + TSAT 13 % it misleads.
NORMAL_FERRITIN_NOTE = "Lab-normal ferritin values can still meet this RLS threshold. "


def iron_deficiency(ctx: Context) -> list[Finding]:
    found = _iron_deficiency(ctx)
    if any(f.data.get("iron_ordered") for f in found):
        return found
    return found + early_iv_iron(ctx, iron_status(ctx))


def _iron_deficiency(ctx: Context) -> list[Finding]:
    s = iron_status(ctx)
    found = _judge_iron(ctx, s)
    if s.ferritin is None and s.tsat is None and s.computed is None:
        return found  # nothing readable: the diagnosis card or iron_studies_missing names unread results
    newer = _unread_beside(s)
    if not newer:
        return found
    if found:  # judged on an older value while a newer result could not be read: say so, inform only
        return [_with_unread_caveat(f, newer, s) for f in found]
    # e.g. a normal TSAT and an unreadable ferritin: nothing judged, but iron is not assessed either,
    # unless what was read already settles it (TSAT >= 45 %: no iron; ESRD with ferritin >= 200).
    cid = "iron_deficiency"
    tsat, ferritin = s.tsat_value, s.ferritin
    tsat_known = tsat is not None and not _below_only(s.tsat_comparator)
    if tsat_known and tsat >= ctx.threshold(cid, "tsat_iron_not_indicated"):
        newer = [x for x in newer if x.analyte != "ferritin"]
    if s.esrd and tsat_known and tsat >= ctx.threshold(cid, "esrd_tsat_low"):
        newer = [x for x in newer if x.analyte != "ferritin"]  # ESRD rule fails on the TSAT alone
    ferritin_known = ferritin is not None and not _below_only(ferritin.comparator)
    if s.esrd and ferritin_known and ferritin.value >= ctx.threshold(cid, "esrd_ferritin_low"):
        newer = [x for x in newer if x.analyte != "tsat"]
    return [_unread_result_finding(ctx, newer[0], cause=cid)] if newer else []


def _below_only(comparator: str | None) -> bool:
    """'<50': the value is an upper bound only, so it cannot show that a floor is reached."""
    return comparator in ("<", "<=")


def _under(value: float | None, comparator: str | None, limit: float) -> bool:
    """Shows a value below ``limit``: 15 < 20, and '<20' too (the lab says it is under 20)."""
    return value is not None and (value < limit or (comparator == "<" and value <= limit))


def _above_only(comparator: str | None) -> bool:
    """'>5': the value is a lower bound only, so it cannot show that a ceiling is not passed."""
    return comparator in (">", ">=")


def _unread_beside(s: IronStatus) -> list[LabFact]:
    """Unread ferritin/TSAT results that matter next to the values read: any of an analyte with no
    readable value (a normal TSAT says nothing about the ferritin), and ones newer than the readable
    value of their own analyte."""
    out = []
    for lab in s.unread:
        current = s.read_result(lab.analyte)
        if current is None or (lab.date is not None and lab.date > current.date):
            out.append(lab)
    return out


def _with_unread_caveat(f: Finding, newer: list[LabFact], s: IronStatus) -> Finding:
    lab = newer[0]
    name = "ferritin" if lab.analyte == "ferritin" else "TSAT"
    which = f"A newer {name} result" if s.read_result(lab.analyte) is not None else f"A {name} result"
    f.reasoning += (
        f" {which} ({day(lab.date) or 'date unknown'}) could not be read "
        f"({unreadable_reason(lab)}): check it before acting on this card."
    )
    f.evidence = f.evidence + [unread_evidence(x) for x in newer]
    f.actionable = False
    f.data = {**f.data, "unread_newer": [x.ref for x in newer]}
    return f


def _judge_iron(ctx: Context, s: IronStatus) -> list[Finding]:
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
    # A bound shows one side only: '>10' cannot show a value is low, '<50' cannot show it is high.
    f_low = None if f is None or _above_only(s.ferritin.comparator) else f
    tsat_low = None if tsat is None or _above_only(s.tsat_comparator) else tsat
    tsat_unsure = (
        tsat is None
        or (_below_only(s.tsat_comparator) and tsat >= tsat_ceiling)
        or (_above_only(s.tsat_comparator) and tsat < tsat_ceiling)
    )
    f_cmp = s.ferritin.comparator if s.ferritin else None
    evidence = ([lab_evidence(s.ferritin)] if s.ferritin else []) + s.tsat_evidence()
    if s.ferritin is None and tsat is None:
        evidence += [condition_evidence(c) for c in diagnoses]  # labs decide when present
    ftxt = f"Ferritin {lab_text(s.ferritin)} ({day(s.ferritin.date)})" if s.ferritin else "No ferritin"
    data = {"ferritin": f, "tsat": tsat, "esrd": bool(s.esrd)}
    ref = "AASM 2024 (Winkelman et al., J Clin Sleep Med 2025;21:137-152, PMID 39324694)"

    if s.esrd:
        evidence += [condition_evidence(c, "ESRD: the ESRD iron rule applies") for c in s.esrd]
        ferritin_low = _under(f_low, f_cmp, esrd_ferritin)
        if ferritin_low and _under(tsat_low, s.tsat_comparator, esrd_tsat):
            return [
                _iron_finding(
                    ctx,
                    s,
                    summary=f"{ftxt}, TSAT {s.tsat_text()} % in ESRD: consider IV iron sucrose for RLS",
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
        tsat_open = (tsat_low is None and tsat is not None and tsat < esrd_tsat) or (
            _below_only(s.tsat_comparator) and tsat >= esrd_tsat
        )  # '>10' or '<25': on either side of 20 %
        if ferritin_low and (tsat is None or tsat_open):
            known = "no readable TSAT" if tsat is None else f"the TSAT is known only as {s.tsat_text()} %"
            return [
                make(
                    ctx,
                    cid,
                    summary=f"{ftxt} in ESRD: TSAT needed to judge IV iron for RLS",
                    reasoning=f"In ESRD the iron criterion needs ferritin < {num(esrd_ferritin)} ng/mL and "
                    f"TSAT < {num(esrd_tsat)} %; {known} in the look-back window.",
                    action="Measure transferrin saturation (iron panel).",
                    evidence=evidence,
                    actionable=False,
                    data={**data, "band": "esrd_tsat_unknown"},
                )
            ]
        return []

    if tsat is not None and tsat >= tsat_ceiling and not _below_only(s.tsat_comparator):
        if f is not None and f <= iv_max or diagnoses:
            return [
                make(
                    ctx,
                    cid,
                    summary=f"{ftxt} but TSAT {s.tsat_text()} % (>= {num(tsat_ceiling)} %): "
                    "iron not indicated",
                    reasoning=f"Iron therapy for RLS is given only when TSAT < {num(tsat_ceiling)} % "
                    "(RLS Foundation algorithm, Silber 2021; AASM 2024).",
                    action="No iron suggestion; consider other causes.",
                    evidence=evidence,
                    actionable=False,
                    data={**data, "band": "tsat_ceiling"},
                )
            ]
        return []

    low_ferritin = f_low is not None and f_low <= ferritin_max
    low_tsat = _under(tsat_low, s.tsat_comparator, tsat_min)
    if low_ferritin or low_tsat:
        why = []
        if low_ferritin:
            why.append(f"ferritin {f_cmp or ''}{num(f)} ng/mL <= {num(ferritin_max)}")
        if low_tsat:
            why.append(f"TSAT {s.tsat_text()} % < {num(tsat_min)}")
        if low_ferritin:
            fields = lab_fields("Ferritin", s.ferritin)
        else:
            lead = s.tsat_lab
            fields = {"label": "TSAT", "value": s.tsat_text(), "unit": "%", "date": day(lead.date)}
        return [
            _iron_finding(
                ctx,
                s,
                fields=fields,
                reasoning=(
                    f"{cap(' and '.join(why))} meets the AASM 2024 criterion for iron therapy in RLS "
                    f"(ferritin <= {num(ferritin_max)} ng/mL or TSAT < {num(tsat_min)} %, with TSAT < "
                    f"{num(tsat_ceiling)} %). "
                    f"{NORMAL_FERRITIN_NOTE if low_ferritin else ''}"
                    f"{_tsat_to_confirm(s, tsat_ceiling) if tsat_unsure else ''}"
                    f"{_high_ferritin_note(s, iv_max) if not low_ferritin else ''}"
                    f"Source: {ref}."
                ),
                evidence=evidence,
                data={**data, "band": "oral_or_iv"},
            )
        ]
    if f_low is not None and ferritin_max < f_low <= iv_max:
        return [
            _iron_finding(
                ctx,
                s,
                summary=f"{ftxt}: in the IV-iron band for RLS ({num(ferritin_max)}-{num(iv_max)} ng/mL)",
                reasoning=(
                    f"Ferritin above {num(ferritin_max)} and up to {num(iv_max)} ng/mL with TSAT < "
                    f"{num(tsat_ceiling)} %: AASM 2024 suggests IV iron only (oral iron is poorly absorbed "
                    f"at this level). {_tsat_to_confirm(s, tsat_ceiling) if tsat_unsure else ''}"
                    f"Source: {ref}."
                ),
                action="Consider IV iron (e.g. ferric carboxymaltose); oral iron is not expected to help.",
                evidence=evidence,
                data={**data, "band": "iv_only"},
            )
        ]
    if diagnoses and s.ferritin is None and tsat is None:
        tent = all_tentative(diagnoses)
        if "Observation" in ctx.missing:  # labs not read: never say there are none
            summary = f"Iron deficiency coded: {cond_name(diagnoses)}; labs could not be read"
            why = "the labs could not be read, so its current state is unknown."
        elif s.unread:
            reason = unreadable_reason(s.unread[0])
            summary = f"Iron deficiency coded: {cond_name(diagnoses)}; iron study result: {reason}"
            why = f"the latest ferritin/TSAT could not be read ({reason}); judge it by hand."
            evidence.append(unread_evidence(s.unread[0]))
        else:
            summary = f"Iron deficiency coded: {cond_name(diagnoses)}; no ferritin or TSAT in 12 months"
            why = "no recent ferritin or TSAT confirms its current state."
        order_studies = _diagnosis_card_orders_studies(ctx, s, diagnoses)
        if order_studies and s.stale:
            evidence.append(lab_evidence(s.stale[0], "outside the 12-month look-back window"))
        return [
            make(
                ctx,
                cid,
                summary=summary,
                reasoning="An active iron-deficiency diagnosis is a strong, treatable RLS aggravator; " + why,
                action="Check ferritin and TSAT; replete iron if ferritin <= 75 ng/mL or TSAT < 20 %.",
                evidence=evidence,
                actionable=not tent and not s.iron_orders,
                data={**data, "band": "diagnosis_only", "order_studies": order_studies},
            )
        ]
    return []


def _high_ferritin_note(s: IronStatus, iv_max: float) -> str:
    """A low TSAT beside a ferritin above the RLS bands: the guideline criterion is met, but that pair
    is also the picture of inflammation (ferritin is an acute-phase reactant), so say it."""
    if s.ferritin is None or s.ferritin.value is None or s.ferritin.value <= iv_max:
        return ""
    return (
        f"Ferritin {lab_text(s.ferritin)} is above the RLS iron bands: a low TSAT with a high ferritin "
        "often reflects inflammation or chronic disease (ferritin is an acute-phase reactant); consider "
        "that before giving iron. "
    )


def _tsat_to_confirm(s: IronStatus, ceiling: float) -> str:
    if s.tsat_value is None:
        return f"No readable TSAT: confirm it is < {num(ceiling)} %. "
    return f"TSAT is known only as {s.tsat_text()} %: confirm it is < {num(ceiling)} %. "


def _diagnosis_card_orders_studies(ctx: Context, s: IronStatus, diagnoses: list[ConditionFact]) -> bool:
    """A confirmed iron-deficiency diagnosis with no ferritin/TSAT in the window, in an RLS patient
    whose labs were read: its card carries the iron-panel order, and iron_studies_missing stays
    silent (one card per concern, not two saying "no ferritin or TSAT in 12 months")."""
    return (
        ctx.has_rls
        and "Observation" not in ctx.missing
        and not s.pending
        and not s.unread
        and not s.iron_orders
        and not all_tentative(diagnoses)
    )


def _iron_finding(ctx: Context, s: IronStatus, *, data: dict, evidence: list[Evidence], **kw) -> Finding:
    pregnant, weeks, bound = _pregnancy_state(ctx)
    early = _early(pregnant, weeks)
    esrd = bool(s.esrd)
    if s.iron_orders:
        names = ", ".join(
            sorted({i.name for m in s.iron_orders for i in m.ingredients if i.drug_class in _IRON_CLASSES})
        )
        evidence = evidence + [med_evidence(m, [names]) for m in s.iron_orders]
        head = kw.get("summary") or ctx.cause("iron_deficiency").render("summary", **kw.get("fields", {}))
        iv = _iv_iron_names(s.iron_orders)
        if early and iv:  # the one case where the order itself needs a second look
            kw["summary"] = _early_iv_summary(iv)
            kw["action"] = _in_pregnancy(weeks, bound, esrd)
            return make(ctx, "iron_deficiency", evidence=evidence, data={**data, "iron_ordered": True}, **kw)
        kw["summary"] = clip(tidy(head.split(":")[0]) + f": iron already ordered ({names}); recheck levels")
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
    found = make(ctx, "iron_deficiency", evidence=evidence, data=data, **kw)
    if pregnant:
        found.data = {**found.data, "pregnant": True}
        found.reasoning += " These bands are for non-pregnant adults: in pregnancy, see the suggested action."
        if early and data.get("band") in ("iv_only", "esrd"):
            # The IV advice of these bands is not given beside its opposite, nor in the summary.
            found.summary = clip(
                tidy(found.summary.split(":")[0]) + ": in pregnancy, plan iron with the obstetric team"
            )
            found.action = _in_pregnancy(weeks, bound, esrd)
        else:
            found.action = tidy(f"{found.action} {_in_pregnancy(weeks, bound, esrd)}")
    return found


def early_iv_iron(ctx: Context, s: IronStatus) -> list[Finding]:
    """An IV iron order in early pregnancy (or at an unknown week), whatever the labs say: the iron card
    names it when there is one; without one (normal ferritin, no labs) this finding does."""
    pregnant, weeks, bound = _pregnancy_state(ctx)
    orders = [m for m in s.iron_orders if _iv_iron_names([m])]
    if not _early(pregnant, weeks) or not orders:
        return []
    names = _iv_iron_names(orders)
    return [
        make(
            ctx,
            "iron_deficiency",
            summary=_early_iv_summary(names),
            reasoning="IV iron is avoided in the first trimester (limited safety data); it is used from "
            "the second trimester when oral iron is not enough.",
            action=_in_pregnancy(weeks, bound, bool(s.esrd)),
            evidence=[med_evidence(m, names) for m in orders],
            data={"iron_ordered": True, "pregnant": True, "band": "iv_in_early_pregnancy"},
        )
    ]


_SECOND_TRIMESTER_WEEKS = 14


def _early(pregnant: bool, weeks: float | None) -> bool:
    """Pregnant before the second trimester, or at a week nobody knows."""
    return pregnant and (weeks is None or weeks < _SECOND_TRIMESTER_WEEKS)


def _iv_iron_names(orders: list[MedFact]) -> list[str]:
    return sorted({i.name for m in orders for i in m.ingredients if i.drug_class == "iv_iron"})


def _early_iv_summary(names: list[str]) -> str:
    return clip(f"IV iron ({', '.join(names)}) ordered in early pregnancy: confirm the timing")


def _pregnancy_state(ctx: Context) -> tuple[bool, float | None, bool]:
    from rls_cds.core.causes.pregnancy import pregnancy_state  # pregnancy imports this module

    return pregnancy_state(ctx)


def _in_pregnancy(weeks: float | None, bound: bool = False, esrd: bool = False) -> str:
    """The AASM bands are for non-pregnant adults; IV iron is not given in the first trimester."""
    when = "week unknown" if weeks is None else f"{'at least ' if bound else ''}{num(weeks)} weeks"
    teams = "the nephrology and obstetric teams" if esrd else "the obstetric team"
    if weeks is not None and weeks >= _SECOND_TRIMESTER_WEEKS:
        return (
            f"Pregnant ({when}): decide oral or IV iron with {teams} (IV iron is used from the second "
            "trimester)."
        )
    if esrd:  # oral iron does little in dialysis: no "prefer oral iron" here
        return f"Pregnant ({when}): decide iron with {teams}; IV iron is avoided in the first trimester."
    return (
        f"Pregnant ({when}): prefer oral iron; IV iron is avoided in the first trimester. Decide with "
        f"{teams}."
    )


def iron_studies_missing(ctx: Context) -> list[Finding]:
    if not ctx.has_rls or "Observation" in ctx.missing:
        return []  # never conclude "no iron studies" from labs we could not read
    s = iron_status(ctx)
    if s.ferritin is not None or s.tsat is not None or s.computed is not None:
        return []
    if s.pending:
        return []  # a preliminary/registered result: the studies are under way
    diagnoses = ctx.facts.by_cause("iron_deficiency")
    if s.unread:  # a result exists: never "no ferritin in 12 months", never "order one"
        return [] if diagnoses else [_unread_result_finding(ctx, s.unread[0])]
    if diagnoses and _diagnosis_card_orders_studies(ctx, s, diagnoses):
        return []  # the iron_deficiency card of the coded diagnosis orders the studies
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


def _as_sent(lab: LabFact) -> str:
    """'3 mg/dL ' for a result whose unit was not recognised; '' when there is no value to show."""
    if isinstance(lab.raw_value, int | float):
        return f"{num(lab.raw_value)} {lab.raw_unit or ''} ".replace("  ", " ")
    return f"'{lab.raw_value}' " if isinstance(lab.raw_value, str) else ""


def _unread_result_finding(ctx: Context, lab: LabFact, cause: str = "iron_studies_missing") -> Finding:
    name = "Ferritin" if lab.analyte == "ferritin" else "TSAT"
    finding = make(
        ctx,
        cause,
        summary=f"{name} {_as_sent(lab)}({day(lab.date) or 'date unknown'}): "
        f"{unreadable_reason(lab)}; "
        "judge iron stores by hand",
        reasoning=(
            f"A {'ferritin' if lab.analyte == 'ferritin' else 'TSAT'} result exists "
            f"{'in the last 12 months' if lab.date is not None else 'without a date'}, "
            f"but the service could not read it ({unreadable_reason(lab)}), so it was "
            "not compared with the AASM 2024 thresholds (ferritin <= 75 ng/mL or TSAT < 20 %, iron only "
            "while TSAT < 45 %; in ESRD ferritin < 200 ng/mL with TSAT < 20 %)."
        ),
        action="Read the result in the EHR; give iron if it meets the AASM 2024 thresholds.",
        evidence=[unread_evidence(lab)],
        actionable=False,
        strength="informational",
        data={"unread_result": lab.ref},
    )
    finding.background = ""  # the cause's text says "neither a ferritin nor a TSAT result": not so here
    return finding
