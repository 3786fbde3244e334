"""causes.yaml -> CauseDef, validated: known ids, vocabularies, numeric thresholds, template placeholders."""

from __future__ import annotations

import math
import string
from pathlib import Path

from rls_cds.terminology.model import STRENGTHS, CauseDef
from rls_cds.terminology.tables import SNAKE, Problems, items, read_yaml

# DESIGN.md §3 cause ids (the product's stable public ids) plus the disorder itself.
REQUIRED_CAUSES = (
    "rls",
    "iron_deficiency",
    "iron_studies_missing",
    "kidney_disease",
    "peripheral_neuropathy",
    "diabetes",
    "parkinsons",
    "pregnancy",
    "drug_induced",
    "drug_withdrawal",
    "magnesium_deficiency",
    "b12_deficiency",
    "hypoglycemia",
    "amyloidosis",
    "lyme_disease",
    "spinal_nerve_damage",
    "rheumatoid_arthritis",
    "sjogren_syndrome",
    "lifestyle",
    "hereditary",
    "stress",
    "surgery",
)

# Threshold names the clinical core reads; a cause missing one of them is a load error.
REQUIRED_THRESHOLDS = {
    "iron_deficiency": (
        "ferritin_max",
        "ferritin_iv_only_max",
        "tsat_low",
        "tsat_iron_not_indicated",
        "esrd_ferritin_low",
        "esrd_tsat_low",
    ),
    "kidney_disease": ("egfr_low", "egfr_persistence_days"),
    "diabetes": ("hba1c_min",),
    "pregnancy": ("third_trimester_weeks_min", "max_gestation_weeks", "postpartum_resolution_days"),
    "magnesium_deficiency": ("magnesium_low",),
    "b12_deficiency": ("b12_low", "b12_borderline_max", "mma_high"),
    "hypoglycemia": ("glucose_low", "glucose_very_low"),
    "lifestyle": ("audit_c_min", "audit_c_min_female"),
}
REQUIRED_LOOKBACK = {
    "iron_deficiency": ("ferritin", "tsat"),
    "iron_studies_missing": ("ferritin", "tsat"),
    "kidney_disease": ("egfr",),
    "diabetes": ("hba1c",),
    "hypoglycemia": ("glucose",),
    "magnesium_deficiency": ("magnesium",),
    "b12_deficiency": ("b12", "mma"),
    "drug_withdrawal": ("stopped_order",),
    "pregnancy": ("gestational_age_weeks", "hcg", "pregnancy_condition"),
    "lifestyle": ("smoking_status", "audit_c"),
}
# (cause, lower, upper): lower must be strictly below upper (or equal when the flag says so).
ORDERED_THRESHOLDS = (
    ("iron_deficiency", "ferritin_max", "ferritin_iv_only_max", True),
    ("iron_deficiency", "tsat_low", "tsat_iron_not_indicated", False),
    ("hypoglycemia", "glucose_very_low", "glucose_low", False),
    ("b12_deficiency", "b12_low", "b12_borderline_max", False),
    ("lifestyle", "audit_c_min_female", "audit_c_min", True),
)
# Lookback windows that are not analytes (documented in terminology/README.md).
EXTRA_WINDOWS = ("egfr_persistence", "stopped_order", "pregnancy_condition", "procedure")
TEMPLATE_FIELDS = (
    "label",
    "value",
    "unit",
    "date",
    "drug",
    "drug_class",
    "alternative",
    "threshold",
    "evidence",
    "title",
)
TEMPLATES = ("summary", "detail", "action")
TEXT_KEYS = ("title", "reference_label", "reference_url", "source")
OPTIONAL_KEYS = ("thresholds", "lookback_days", "qualifier_strength", "coverage_note")
KNOWN_KEYS = set(TEXT_KEYS) | set(TEMPLATES) | set(OPTIONAL_KEYS) | {"strength", "actionable"}


def load_causes(path: Path, text: str, analytes: set[str], problems: Problems) -> dict[str, CauseDef]:
    data = read_yaml(path, text, problems)
    if data is None:
        return {}
    name = path.name
    causes_node = data.get("causes")
    if not isinstance(causes_node, dict):
        problems.add(name, data.get("__line__", 1), "expected a 'causes:' mapping")
        return {}
    causes: dict[str, CauseDef] = {}
    for cause_id, node, line in items(causes_node):
        cause = _cause(name, str(cause_id), node, line, analytes, problems)
        if cause is not None:
            causes[cause.id] = cause
    causes_line = data.get("__lines__", {}).get("causes", 1)
    for required in REQUIRED_CAUSES:
        if required not in causes and not any(
            p.message.startswith(f"cause {required!r}") for p in problems.items
        ):
            problems.add(name, causes_line, f"cause {required!r} (DESIGN.md §3) is not defined")
    return causes


def _cause(
    file: str, cid: str, node: object, line: int, analytes: set[str], problems: Problems
) -> CauseDef | None:
    if not SNAKE.match(cid):
        problems.add(file, line, f"cause id {cid!r} must be snake_case")
        return None
    if not isinstance(node, dict):
        problems.add(file, line, f"cause {cid!r}: expected a mapping")
        return None
    before = len(problems.items)
    lines = node.get("__lines__", {})
    for key, _, kline in items(node):
        if key not in KNOWN_KEYS:
            problems.add(file, kline, f"cause {cid!r}: unknown key {key!r}")
    text = {}
    for key in (*TEXT_KEYS, *TEMPLATES):
        value = node.get(key)
        if not isinstance(value, str) or not value.strip():
            what = (
                "must be text" if value is not None and not isinstance(value, str) else "is missing or empty"
            )
            problems.add(file, lines.get(key, line), f"cause {cid!r}: {key} {what}")
            continue
        text[key] = value.strip()
    for key in TEMPLATES:
        if key in text:
            _check_template(file, lines.get(key, line), cid, key, text[key], problems)
    url = text.get("reference_url", "")
    if url and not url.startswith(("https://", "http://")):
        problems.add(
            file, lines.get("reference_url", line), f"cause {cid!r}: reference_url must be an http(s) URL"
        )
    strength = node.get("strength")
    if strength not in STRENGTHS:
        problems.add(
            file,
            lines.get("strength", line),
            f"cause {cid!r}: strength must be one of {', '.join(STRENGTHS)}",
        )
    actionable = node.get("actionable")
    if not isinstance(actionable, bool):
        problems.add(file, lines.get("actionable", line), f"cause {cid!r}: actionable must be true or false")
    thresholds = _numbers(file, cid, node, "thresholds", line, problems, integer=False)
    lookback = _numbers(file, cid, node, "lookback_days", line, problems, integer=True)
    qualifier_strength = _qualifier_strength(file, cid, node, line, problems)
    for key, _, kline in items(
        node.get("lookback_days") if isinstance(node.get("lookback_days"), dict) else {}
    ):
        if key not in analytes and key not in EXTRA_WINDOWS:
            problems.add(
                file,
                kline,
                f"cause {cid!r}: lookback window {key!r} is neither an analyte of labs.csv "
                f"nor one of {', '.join(EXTRA_WINDOWS)}",
            )
    _check_required(file, cid, line, lines, thresholds, lookback, problems)
    if len(problems.items) != before:
        return None
    return CauseDef(
        id=cid,
        title=text["title"],
        strength=str(strength),
        actionable=bool(actionable),
        thresholds=thresholds,
        lookback_days=lookback,
        summary=text["summary"],
        detail=text["detail"],
        action=text["action"],
        reference_label=text["reference_label"],
        reference_url=text["reference_url"],
        source=text["source"],
        qualifier_strength=qualifier_strength,
        coverage_note=str(node.get("coverage_note") or ""),
    )


def _check_template(file: str, line: int, cid: str, key: str, template: str, problems: Problems) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        problems.add(file, line, f"cause {cid!r}: {key} template is malformed ({exc})")
        return
    for f in fields:
        if f not in TEMPLATE_FIELDS:
            problems.add(
                file,
                line,
                f"cause {cid!r}: {key} uses unknown placeholder {{{f}}} "
                f"(known: {', '.join(TEMPLATE_FIELDS)})",
            )


def _numbers(file: str, cid: str, node: dict, key: str, line: int, problems: Problems, integer: bool) -> dict:
    value = node.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(
            file,
            node.get("__lines__", {}).get(key, line),
            f"cause {cid!r}: {key} must be a mapping of name: number",
        )
        return {}
    out: dict = {}
    for name, number, nline in items(value):
        ok = (
            isinstance(number, int | float)
            and not isinstance(number, bool)
            and math.isfinite(number)
            and number >= 0
        )
        if integer:
            ok = ok and float(number).is_integer() and number > 0
        if not SNAKE.match(str(name)) or not ok:
            kind = "a positive whole number of days" if integer else "a finite number >= 0"
            problems.add(
                file,
                nline,
                f"cause {cid!r}: {key}.{name} = {number!r} must be {kind} under a snake_case name",
            )
            continue
        out[str(name)] = int(number) if integer else float(number)
    return out


def _qualifier_strength(file: str, cid: str, node: dict, line: int, problems: Problems) -> dict[str, str]:
    value = node.get("qualifier_strength") or {}
    out: dict[str, str] = {}
    if not isinstance(value, dict):
        problems.add(file, line, f"cause {cid!r}: qualifier_strength must be a mapping")
        return out
    for q, s, qline in items(value):
        if s not in STRENGTHS:
            problems.add(
                file, qline, f"cause {cid!r}: qualifier_strength.{q} must be one of {', '.join(STRENGTHS)}"
            )
            continue
        out[str(q)] = str(s)
    return out


def _check_required(file, cid, line, lines, thresholds, lookback, problems: Problems) -> None:
    for name in REQUIRED_THRESHOLDS.get(cid, ()):
        if name not in thresholds:
            problems.add(
                file,
                lines.get("thresholds", line),
                f"cause {cid!r}: threshold {name!r} is required (the core reads it)",
            )
    for name in REQUIRED_LOOKBACK.get(cid, ()):
        if name not in lookback:
            problems.add(
                file,
                lines.get("lookback_days", line),
                f"cause {cid!r}: lookback_days.{name} is required (the core reads it)",
            )
    for owner, lower, upper, equal_ok in ORDERED_THRESHOLDS:
        if owner == cid and lower in thresholds and upper in thresholds:
            lo, hi = thresholds[lower], thresholds[upper]
            if lo > hi or (lo == hi and not equal_ok):
                problems.add(
                    file,
                    lines.get("thresholds", line),
                    f"cause {cid!r}: threshold {lower} ({lo:g}) must be below {upper} ({hi:g})",
                )
