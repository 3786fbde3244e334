"""LOINC -> analyte and unit conversion to canonical units (µg/L = ng/mL; mmol/L vs mg/dL; ...)."""

from __future__ import annotations

import math

import pytest

LOINC = "http://loinc.org"


@pytest.mark.parametrize(
    ("code", "analyte", "unit"),
    [
        ("2276-4", "ferritin", "ng/mL"),
        ("20567-4", "ferritin", "ng/mL"),  # Mayo reports ferritin under the immunoassay code
        ("2502-3", "tsat", "%"),
        ("2498-4", "iron", "ug/dL"),
        ("2500-7", "tibc", "ug/dL"),
        ("98979-8", "egfr", "mL/min/{1.73_m2}"),
        ("33914-3", "egfr", "mL/min/{1.73_m2}"),  # MDRD, used by Synthea
        ("4548-4", "hba1c", "%"),
        ("2345-7", "glucose", "mg/dL"),
        ("15074-8", "glucose", "mg/dL"),  # molar glucose code still converts to mg/dL
        ("19123-9", "magnesium", "mg/dL"),
        ("2601-3", "magnesium", "mg/dL"),
        ("2132-9", "b12", "pg/mL"),
        ("13964-2", "mma", "nmol/L"),
        ("49051-6", "gestational_age_weeks", "wk"),
        ("49052-4", "gestational_age_days", "d"),
        ("2106-3", "hcg_presence", ""),
        ("72166-2", "smoking_status", ""),
        ("75626-2", "audit_c", "{score}"),
    ],
)
def test_lab_lookup(terminology, code, analyte, unit):
    lab = terminology.lab(LOINC, code)
    assert (lab.loinc, lab.analyte, lab.canonical_unit) == (code, analyte, unit)
    assert terminology.lab("urn:oid:2.16.840.1.113883.6.1", code) == lab


def test_lab_lookup_misses(terminology):
    assert terminology.lab(LOINC, "1234-5") is None
    assert terminology.lab("http://snomed.info/sct", "2276-4") is None
    assert terminology.lab(LOINC, None) is None


@pytest.mark.parametrize("unit", ["ng/mL", "µg/L", "μg/L", "ug/L", "mcg/L", "ng/ml", " ug/l "])
def test_ferritin_mass_units_are_equal(terminology, unit):
    assert terminology.convert("ferritin", 75, unit) == 75.0


@pytest.mark.parametrize(
    ("analyte", "value", "unit", "expected"),
    [
        ("glucose", 3.0, "mmol/L", 54.0),
        ("glucose", 3.9, "mmol/L", 70.2),
        ("glucose", 65, "mg/dL", 65.0),
        ("magnesium", 0.70, "mmol/L", 1.701),
        ("magnesium", 1.4, "mEq/L", 1.701),
        ("magnesium", 1.4, "meq/L", 1.701),
        ("b12", 148, "pmol/L", 200.54),
        ("b12", 250, "ng/L", 250.0),
        ("iron", 10, "umol/L", 55.866),
        ("hba1c", 48, "mmol/mol", 6.543),
        ("hba1c", 6.5, "%", 6.5),
        ("mma", 0.4, "µmol/L", 400.0),
        ("creatinine", 88.4, "µmol/L", 1.0),
        ("gestational_age_weeks", 196, "d", 28.0),
        ("gestational_age_days", 28, "wk", 196.0),
    ],
)
def test_conversions(terminology, analyte, value, unit, expected):
    assert math.isclose(terminology.convert(analyte, value, unit), expected, rel_tol=1e-3)


@pytest.mark.parametrize(
    "unit",
    ["mL/min/{1.73_m2}", "mL/min/1.73m2", "mL/min/1.73 m2", "mL/min/1.73 m²", "ml/min/1.73m^2", "mL/min"],
)
def test_egfr_unit_spellings(terminology, unit):
    assert terminology.convert("egfr", 59, unit) == 59.0


@pytest.mark.parametrize(
    ("analyte", "value", "unit"),
    [
        ("ferritin", 30, "mg/dL"),  # a unit the table does not know is never guessed
        ("ferritin", 30, None),
        ("glucose", 3.0, "mmol/mol"),
        ("nonexistent", 1, "mg/dL"),
        ("ferritin", None, "ng/mL"),
        ("ferritin", float("nan"), "ng/mL"),
        ("ferritin", float("inf"), "ng/mL"),
        ("ferritin", True, "ng/mL"),
        ("ferritin", "thirty", "ng/mL"),
    ],
)
def test_unknown_units_and_values_give_none(terminology, analyte, value, unit):
    assert terminology.convert(analyte, value, unit) is None


def test_numeric_strings_convert(terminology):
    assert terminology.convert("ferritin", "38", "ng/mL") == 38.0


def test_audit_c_without_unit(terminology):
    assert terminology.convert("audit_c", 5, None) == 5.0


def test_all_lab_codes_for_prefetch(terminology):
    codes = terminology.all_lab_codes()
    assert ("http://loinc.org", "2276-4") in codes
    assert ("http://loinc.org", "98979-8") in codes
    assert len(codes) == len(set(codes)) == len(terminology.labs)
    assert all(system == LOINC for system, _ in codes)
