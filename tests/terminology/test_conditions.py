"""Condition codes -> causes: ICD-10-CM families, exclusions, qualifiers, SNOMED, system/code spellings."""

from __future__ import annotations

import pytest

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"


def causes(t, system, code):
    return {m.cause: m.qualifier for m in t.condition_matches(system, code)}


@pytest.mark.parametrize(
    ("code", "qualifier"),
    [
        ("N18.4", "ckd3plus"),
        ("N18.5", "ckd3plus"),
        ("N18.30", "ckd3plus"),
        ("N18.32", "ckd3plus"),
        ("N18.3", "ckd3plus"),  # legacy (pre-FY2021) bare N18.3
        ("N18.6", "esrd"),
        ("Z99.2", "esrd"),
        ("N18.9", "stage_unknown"),
        ("N19", "uremia"),
    ],
)
def test_kidney_codes_and_qualifiers(terminology, code, qualifier):
    assert causes(terminology, ICD, code) == {"kidney_disease": qualifier}


@pytest.mark.parametrize("code", ["N18.1", "N18.2", "D63.1"])
def test_ckd_stage_1_2_and_anemia_of_ckd_match_nothing(terminology, code):
    assert terminology.condition_matches(ICD, code) == []


@pytest.mark.parametrize("spelling", ["N18.4", "N184", "n18.4", " n184 "])
@pytest.mark.parametrize("system", [ICD, "urn:oid:2.16.840.1.113883.6.90", "icd10cm", ICD + "/"])
def test_icd10_spellings_and_system_uris(terminology, system, spelling):
    assert causes(terminology, system, spelling) == {"kidney_disease": "ckd3plus"}


def test_diabetic_neuropathy_counts_for_neuropathy_and_diabetes(terminology):
    assert causes(terminology, ICD, "E11.42") == {"peripheral_neuropathy": "also_diabetes", "diabetes": None}
    assert causes(terminology, SCT, "368581000119106") == {
        "peripheral_neuropathy": "also_diabetes",
        "diabetes": "via_neuropathy",
    }


def test_diabetes_family_and_negative_controls(terminology):
    assert causes(terminology, ICD, "E11.9") == {"diabetes": None}
    assert causes(terminology, ICD, "E13.10") == {"diabetes": None}  # any child of the E13 category
    assert causes(terminology, ICD, "E11.649") == {"diabetes": None, "hypoglycemia": None}
    assert terminology.condition_matches(ICD, "R73.03") == []  # prediabetes
    assert terminology.condition_matches(ICD, "O24.410") == []  # gestational diabetes


def test_most_specific_row_wins_exclusion_under_family(terminology):
    assert causes(terminology, ICD, "M06.9") == {"rheumatoid_arthritis": None}
    assert causes(terminology, ICD, "M06.89") == {"rheumatoid_arthritis": None}  # through the M06 family
    assert terminology.condition_matches(ICD, "M06.4") == []  # inflammatory polyarthropathy is not RA
    assert terminology.condition_matches(ICD, "G21.11") == []  # drug-induced parkinsonism
    assert causes(terminology, ICD, "G20") == {"parkinsons": None}
    assert causes(terminology, ICD, "G20.A1") == {"parkinsons": None}


def test_exact_rows_do_not_match_children(terminology):
    # Z33.1 is an exact row; a made-up child must not inherit it.
    assert causes(terminology, ICD, "Z33.1") == {"pregnancy": "trimester_unknown"}
    assert terminology.condition_matches(ICD, "Z33.19") == []


def test_pregnancy_qualifiers(terminology):
    assert causes(terminology, ICD, "Z3A.28") == {"pregnancy": "third_trimester"}
    assert causes(terminology, ICD, "Z3A.49") == {"pregnancy": "third_trimester"}
    assert causes(terminology, ICD, "O99.353") == {"pregnancy": "third_trimester"}
    assert causes(terminology, ICD, "Z39.2") == {"pregnancy": "postpartum"}
    assert causes(terminology, SCT, "72892002") == {"pregnancy": "trimester_unknown"}
    # Weeks below 28 (and "not specified", "< 8 weeks"): pregnant, trimester read from the week.
    for code in ("Z3A.00", "Z3A.01", "Z3A.08", "Z3A.20", "Z3A.27"):
        assert causes(terminology, ICD, code) == {"pregnancy": "trimester_unknown"}, code


def test_tobacco_current_vs_remission_and_history(terminology):
    assert causes(terminology, ICD, "F17.210") == {"lifestyle": "tobacco"}
    assert causes(terminology, SCT, "449868002") == {"lifestyle": "tobacco"}
    assert causes(terminology, ICD, "F10.20") == {"lifestyle": "alcohol"}
    assert causes(terminology, SCT, "308374001") == {"lifestyle": "caffeine"}
    for code in ("F17.211", "F17.201", "Z87.891"):
        assert terminology.condition_matches(ICD, code) == []


@pytest.mark.parametrize(
    "system",
    [
        SCT,
        "https://snomed.info/sct",
        "urn:oid:2.16.840.1.113883.6.96",
        "http://snomed.info/sct/731000124108/version/20240301",
    ],
)
def test_snomed_rls_and_system_variants(terminology, system):
    assert causes(terminology, system, "32914008") == {"rls": None}


def test_snomed_rls_in_pregnancy_is_both(terminology):
    assert causes(terminology, SCT, "1052284009") == {
        "rls": "also_pregnancy",
        "pregnancy": "trimester_unknown",
    }


def test_icd_rls_and_secondary_neuropathy(terminology):
    assert causes(terminology, ICD, "G25.81") == {"rls": None}
    assert causes(terminology, ICD, "E85.1") == {
        "amyloidosis": "also_neuropathy",
        "peripheral_neuropathy": "secondary",
    }
    assert causes(terminology, ICD, "M35.06") == {
        "sjogren_syndrome": "also_neuropathy",
        "peripheral_neuropathy": "secondary",
    }
    assert causes(terminology, ICD, "M35.0A") == {"sjogren_syndrome": None}


def test_match_reports_row_and_source(terminology):
    [m] = terminology.condition_matches(ICD, "E13.10")
    assert (m.code, m.match) == ("E13", "prefix")
    assert m.source and m.display


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (None, "N18.4"),
        (ICD, None),
        (ICD, ""),
        ("http://example.org/local", "N18.4"),
        ("http://loinc.org", "2276-4"),
    ],
)
def test_unknown_system_or_empty_code_matches_nothing(terminology, system, code):
    assert terminology.condition_matches(system, code) == []


def test_snomed_codes_are_not_confused_with_icd(terminology):
    assert terminology.condition_matches(SCT, "N18.4") == []
    assert terminology.condition_matches(ICD, "32914008") == []
