"""causes.yaml: every DESIGN.md §3 cause, the reference's thresholds and windows, card templates."""

from __future__ import annotations

import time

import pytest

from rls_cds.terminology import load_terminology
from rls_cds.terminology.causes import REQUIRED_CAUSES
from rls_cds.terminology.valuesets import cause_codes

from .conftest import TABLES

DESIGN_CAUSES = [
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
]


def test_every_design_cause_and_rls_is_defined(terminology):
    assert {"rls", *DESIGN_CAUSES} == set(REQUIRED_CAUSES)
    # Beyond DESIGN.md §3: augmentation (dopaminergic treatment, rls-clinical.md §3), optional in the tables.
    assert set(terminology.causes) == set(REQUIRED_CAUSES) | {"augmentation"}
    for cause in terminology.causes.values():
        assert cause.strength in ("strong", "moderate", "weak", "informational")
        assert cause.reference_url.startswith("https://")
        assert cause.summary and cause.detail and cause.action and cause.reference_label and cause.source


@pytest.mark.parametrize("cause", [c for c in DESIGN_CAUSES if c != "surgery"] + ["rls"])
def test_every_cause_has_codes(terminology, cause):
    assert cause_codes(terminology, cause), f"{cause} has no codes"


def test_local_use_atc_codes_are_not_evidence_of_drug_induced(terminology):
    # routes.csv: D04 and S01 codes are topical / ophthalmic use and never flagged; the value set must agree.
    codes = cause_codes(terminology, "drug_induced").include["http://www.whocc.no/atc"]
    assert "R06AA02" in codes and "C07AA06" in codes  # diphenhydramine, timolol taken systemically
    assert not {"D04AA32", "D04AA10", "D04AX01", "S01ED01"} & set(codes)


def test_surgery_explains_why_it_has_no_codes(terminology):
    assert not cause_codes(terminology, "surgery")
    assert "Procedure" in terminology.causes["surgery"].coverage_note


def test_iron_thresholds(terminology):
    c = terminology.causes["iron_deficiency"]
    assert c.thresholds == {
        "ferritin_max": 75,
        "ferritin_iv_only_max": 100,
        "tsat_low": 20,
        "tsat_iron_not_indicated": 45,
        "esrd_ferritin_low": 200,
        "esrd_tsat_low": 20,
    }
    assert c.lookback_days["ferritin"] == c.lookback_days["tsat"] == 365
    assert (c.strength, c.actionable) == ("strong", True)
    assert terminology.causes["iron_studies_missing"].lookback_days == {"ferritin": 365, "tsat": 365}


def test_other_thresholds_and_windows(terminology):
    causes = terminology.causes
    assert causes["kidney_disease"].thresholds == {"egfr_low": 60, "egfr_persistence_days": 90}
    assert causes["diabetes"].thresholds == {"hba1c_min": 6.5}
    assert causes["pregnancy"].thresholds["third_trimester_weeks_min"] == 28
    assert causes["hypoglycemia"].thresholds == {"glucose_low": 70, "glucose_very_low": 54}
    assert causes["hypoglycemia"].lookback_days == {"glucose": 30}
    assert causes["magnesium_deficiency"].thresholds == {"magnesium_low": 1.7}
    assert causes["drug_withdrawal"].lookback_days == {"stopped_order": 30}


def test_qualifier_strength(terminology):
    kidney = terminology.causes["kidney_disease"]
    assert kidney.strength_for("esrd") == "strong"
    assert kidney.strength_for("ckd3plus") == "moderate"
    assert kidney.strength_for(None) == "strong"
    assert terminology.causes["lifestyle"].strength_for("tobacco") == "weak"
    assert terminology.causes["diabetes"].strength_for("via_neuropathy") == "moderate"


def test_only_strong_or_moderate_causes_are_actionable(terminology):
    for cause in terminology.causes.values():
        if cause.actionable:
            assert cause.strength in ("strong", "moderate"), cause.id


def test_templates_render(terminology):
    c = terminology.causes["iron_deficiency"]
    summary = c.render("summary", label="Ferritin", value="38", unit="ng/mL", date="2026-09-02")
    assert summary == "Ferritin 38 ng/mL (2026-09-02): iron deficiency worsens RLS"
    assert len(summary) < 140
    drug = terminology.causes["drug_induced"].render(
        "summary", drug="sertraline 50 MG Oral Tablet", drug_class="SSRI"
    )
    assert drug == "sertraline 50 MG Oral Tablet (SSRI) may aggravate RLS"
    assert "{" not in terminology.causes["kidney_disease"].render("detail")


def test_version_is_a_stable_content_hash(terminology, tables):
    again = load_terminology(TABLES)
    assert again.version == terminology.version
    assert len(terminology.version) == 16 and int(terminology.version, 16) >= 0
    with (tables / "conditions.csv").open("a", encoding="utf-8") as f:
        f.write("# a comment changes the bytes, so the version\n")
    assert load_terminology(tables).version != terminology.version


def test_loading_is_fast():
    started = time.perf_counter()
    load_terminology(TABLES)
    # Budget 200 ms (measured ~15 ms); a generous bound keeps this honest on a busy shared machine.
    assert time.perf_counter() - started < 1.0
