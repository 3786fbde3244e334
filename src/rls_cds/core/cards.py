"""Findings -> CDS Hooks 2.0 cards for one hook.

Which findings become cards (a deliberate, conservative choice: no false alarms):

- **No RLS diagnosis, no cards.** The services are an RLS work-up and RLS-aware prescribing check.
  "Sertraline may aggravate RLS" shown to a clinician whose patient has no RLS is noise that trains
  people to ignore cards; so is "order ferritin" for someone without RLS. Only an active (or
  recurring), non-refuted RLS Condition opens the gate. The findings are still computed and stored
  (panels and re-evaluation may use them), they are just not shown.
- **patient-view:** every finding for the RLS patient, actionable ones first. Notes are ``info``;
  only actionable findings are ``warning``. Active aggravating medications are named here.
- **order-select / order-sign / medication-prescribe:** the draft orders are what is being decided,
  so a drug card (and the dopaminergic ``augmentation`` note) is shown only for *drafts* (with a
  suggestion to delete them); active orders were already reported on patient-view. Other findings
  appear only when actionable
  (e.g. ferritin 30 ng/mL: "consider iron"; a gabapentinoid draft with reduced kidney function).

Cards are deterministic: the uuid is a uuid5 of the card's own content, so the same input and
``now`` give byte-identical cards. Every emitted FHIR resource is validated with fhir.resources.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from rls_cds.core.rules import STRENGTH_ORDER, Evidence, Finding, num
from rls_cds.core.validation import check_emitted

CARD_NAMESPACE = uuid.UUID("6f0c7a52-3b8e-5d0e-9a55-2c1f1d7c9b10")
CAUSE_SYSTEM = "https://rls-cds.org/fhir/CodeSystem/rls-cause"
OVERRIDE_SYSTEM = "https://rls-cds.org/fhir/CodeSystem/override-reason"
LOINC = "http://loinc.org"
SOURCE_LABEL = "rls-cds"

PRESCRIBING_HOOKS = frozenset({"order-select", "order-sign", "medication-prescribe"})
HOOKS = PRESCRIBING_HOOKS | {"patient-view"}

# What the iron-studies suggestion orders (LOINC order codes).
IRON_STUDY_ORDERS = (
    ("2276-4", "Ferritin [Mass/volume] in Serum or Plasma"),
    ("50190-8", "Iron and Iron binding capacity panel - Serum or Plasma"),
)

_OVERRIDES = {
    "drug_induced": [
        ("benefit-outweighs-risk", "Benefit outweighs the risk of worsening RLS"),
        ("tolerated-before", "Patient has tolerated this drug without RLS worsening"),
        ("will-monitor", "Will monitor RLS symptoms"),
    ],
    "iron_studies_missing": [
        ("ordered-elsewhere", "Iron studies done or ordered elsewhere"),
        ("not-clinically-relevant", "Not clinically relevant for this patient"),
    ],
    "iron_deficiency": [
        ("already-addressed", "Iron status already being addressed"),
        ("not-clinically-relevant", "Not clinically relevant for this patient"),
    ],
}
_DEFAULT_OVERRIDES = [
    ("already-addressed", "Already addressed"),
    ("not-clinically-relevant", "Not clinically relevant for this patient"),
]


def _uuid(content: Any) -> str:
    return str(uuid.uuid5(CARD_NAMESPACE, orjson.dumps(content, option=orjson.OPT_SORT_KEYS).decode()))


# --- detail Markdown -----------------------------------------------------------------------------


def _md(text: Any) -> str:
    """Escape characters that would turn EHR-sent text into Markdown markup."""
    s = str(text)
    for ch in ("\\", "*", "_", "`", "[", "]", "<", ">", "|"):
        s = s.replace(ch, "\\" + ch)
    return s


def _evidence_line(e: Evidence) -> str:
    parts = [f"`{e.resource}`"]
    if e.display:
        parts.append(_md(e.display))
    if e.code:
        parts.append(f"({_md(e.code)})")
    line = " ".join(parts)
    if e.value is not None and e.value != "":
        value = num(e.value) if isinstance(e.value, int | float) else _md(e.value)
        line += f": **{value}{' ' + _md(e.unit) if e.unit else ''}**"
    if e.date:
        line += f" on {e.date}"
    if e.certainty != "code":
        line += f" [matched by {e.certainty}]"
    if e.note:
        line += f" — {_md(e.note)}"
    return "- " + line


def _detail(f: Finding, repairs: dict[str, list[str]]) -> str:
    """Markdown: why (rule-specific, with values), the evidence inside the cause's own detail text
    from causes.yaml (its ``{evidence}`` marker), lenient readings, the action, the reference."""
    lines = [f"**{_md(f.title or f.cause)}** — strength of evidence: {f.strength}.", "", f.reasoning, ""]
    bullets = "\n".join(_evidence_line(e) for e in f.evidence) or "- (none listed)"
    background = f.background or ""
    if "{evidence}" in background:
        lines.append(background.replace("{evidence}", "\n" + bullets))
    else:
        lines += ["**Evidence**", bullets] + (["", background] if background else [])
    lines.append("")
    cited = {e.resource for e in f.evidence}
    if f.data.get("draft"):
        cited.add("context.draftOrders")  # how the draftOrders container itself was read
    lenient = [f"`{ref}`: {'; '.join(notes)}" for ref, notes in sorted(repairs.items()) if ref in cited]
    if lenient:
        lines += ["**Read leniently:** " + " / ".join(lenient), ""]
    lines.append(f"**Suggested action:** {f.action}")
    if f.reference_url:
        lines += ["", f"Reference: [{_md(f.reference_label or f.reference_url)}]({f.reference_url})"]
    return "\n".join(lines)


# --- suggestions ---------------------------------------------------------------------------------


def _iron_order_suggestion(f: Finding, patient: str | None, rls_ref: str | None) -> list[dict]:
    if not patient:
        return []  # a ServiceRequest needs a subject; without one, the card still says what to order
    actions = []
    for code, display in IRON_STUDY_ORDERS:
        resource: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "proposal",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://snomed.info/sct",
                            "code": "108252007",
                            "display": "Laboratory procedure",
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
            "subject": {"reference": patient},
            "reasonCode": [{"text": "Restless legs syndrome: iron status (AASM 2024)"}],
        }
        if rls_ref:
            resource["reasonReference"] = [{"reference": rls_ref}]
        actions.append(
            {"type": "create", "description": f"Order {display}", "resource": check_emitted(resource)}
        )
    label = "Order ferritin and iron panel (iron, TIBC, transferrin saturation)"
    return [
        {
            "label": label,
            "uuid": _uuid(["suggestion", f.cause, patient, label]),
            "isRecommended": True,
            "actions": actions,
        }
    ]


def _delete_draft_suggestion(f: Finding) -> list[dict]:
    """ "Remove the draft" only where the reference names a substitute, and never for a draft that
    continues a drug the patient already takes: one click must not stop therapy abruptly (beta-
    blockers, lithium, antipsychotics have no simple swap; rls-clinical.md §2.7)."""
    refs = f.data.get("orders", [])
    orders = [ref for ref in refs if not ref.endswith("/?") and "#" not in ref]
    alternative = f.data.get("alternative")
    if (
        not orders
        or len(orders) < len(refs)  # a draft without an id could not be removed: the drug would stay
        or not f.data.get("draft")
        or not alternative
        or f.data.get("continues_active")
        or not f.actionable  # information (e.g. RLS only provisional) never comes with a one-click stop
    ):
        return []
    drug = " + ".join(f.data.get("ingredients") or ["this drug"])
    noun = "order" if len(orders) == 1 else "orders"
    label = f"Remove the {drug} {noun} (consider {alternative.split(' (')[0]})"
    return [
        {
            "label": label,
            "uuid": _uuid(["suggestion", f.cause, orders, label]),
            "actions": [
                {"type": "delete", "description": f"Remove the draft {drug} {noun}", "resourceId": orders}
            ],
        }
    ]


# --- cards ---------------------------------------------------------------------------------------


def _card(f: Finding, assessment: Any) -> dict:
    suggestions: list[dict] = []
    if (f.cause == "iron_studies_missing" and not f.data.get("unread_result")) or (
        f.cause == "iron_deficiency" and f.data.get("order_studies")
    ):
        rls = getattr(assessment, "rls_evidence", None) or []
        suggestions = _iron_order_suggestion(f, assessment.patient, rls[0].resource if rls else None)
    elif f.cause == "drug_induced":
        suggestions = _delete_draft_suggestion(f)
    card: dict[str, Any] = {
        "summary": f.summary[:139],
        "detail": _detail(f, getattr(assessment, "repairs", {}) or {}),
        "indicator": "warning" if f.actionable else "info",
        "source": {
            "label": f.reference_label or SOURCE_LABEL,
            "topic": {"system": CAUSE_SYSTEM, "code": f.cause, "display": f.title or f.cause},
        },
        "overrideReasons": [
            {"system": OVERRIDE_SYSTEM, "code": code, "display": display}
            for code, display in _OVERRIDES.get(f.cause, _DEFAULT_OVERRIDES)
        ],
    }
    if f.reference_url:
        card["source"]["url"] = f.reference_url
        card["links"] = [
            {"label": f.reference_label or "Reference", "url": f.reference_url, "type": "absolute"}
        ]
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "at-most-one"
    card["uuid"] = _uuid(card)
    return card


# Findings about the drugs themselves: a draft's is shown while it is being ordered, a current order's on
# patient-view.
_ABOUT_ORDERS = frozenset({"drug_induced", "augmentation"})


def _shown(f: Finding, hook: str) -> bool:
    if hook == "patient-view":
        return not (f.cause in _ABOUT_ORDERS and f.data.get("draft"))
    if f.cause in _ABOUT_ORDERS:
        return bool(f.data.get("draft"))
    if f.cause == "kidney_disease":  # the renal-dose check is about a gabapentinoid being ordered now
        return f.actionable and bool(f.data.get("gabapentinoid_draft"))
    return f.actionable


def render_cards(assessment: Any, hook: str = "patient-view") -> list[dict]:
    """CDS Hooks cards for ``hook`` (see module doc for which findings are shown)."""
    if hook not in HOOKS:
        raise ValueError(f"unknown hook {hook!r}; expected one of {sorted(HOOKS)}")
    if not assessment.has_rls:
        return []
    findings = [f for f in assessment.findings if _shown(f, hook)]
    findings.sort(key=lambda f: (not f.actionable, STRENGTH_ORDER.get(f.strength, 9)))
    return [_card(f, assessment) for f in findings]
