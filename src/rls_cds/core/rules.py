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

from collections.abc import Callable

from rls_cds.core.causes.diagnoses import (
    amyloidosis,
    hereditary,
    lyme_disease,
    parkinsons,
    peripheral_neuropathy,
    rheumatoid_arthritis,
    sjogren_syndrome,
    spinal_nerve_damage,
    stress,
    surgery,
)
from rls_cds.core.causes.iron import iron_deficiency, iron_studies_missing
from rls_cds.core.causes.kidney import kidney_disease
from rls_cds.core.causes.lifestyle import lifestyle
from rls_cds.core.causes.medications import augmentation, drug_induced, drug_withdrawal
from rls_cds.core.causes.metabolic import b12_deficiency, diabetes, hypoglycemia, magnesium_deficiency
from rls_cds.core.causes.pregnancy import pregnancy
from rls_cds.core.findings import (  # re-exported: engine, cards and other parts import them from here
    STRENGTH_ORDER,
    Context,
    Evidence,
    Finding,
    condition_evidence,
    num,
)

__all__ = [
    "ANALYTES_KEPT_OLD",
    "ANALYTES_READ",
    "RULES",
    "STRENGTH_ORDER",
    "Context",
    "Evidence",
    "Finding",
    "condition_evidence",
    "num",
    "run_all",
]

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
    "augmentation": augmentation,
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
