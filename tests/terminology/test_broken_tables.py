"""Broken fixture tables (copies written to tmp_path): each raises TerminologyError naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from rls_cds.terminology import TerminologyError, load_terminology

SRC = "test fixture"


def append(tables: Path, name: str, row: str) -> int:
    """Append one row; return its line number."""
    path = tables / name
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text += "\n"
    path.write_text(text + row + "\n", encoding="utf-8")
    return text.count("\n") + 1


def replace(tables: Path, name: str, old: str, new: str) -> int:
    """Replace the first occurrence of ``old``; return the line where it starts."""
    path = tables / name
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


def broken(tables: Path) -> TerminologyError:
    with pytest.raises(TerminologyError) as info:
        load_terminology(tables)
    return info.value


APPENDED = [
    ("conditions.csv", f"restless_arms,icd10cm,G25.82,exact,,x,{SRC},", "unknown cause id 'restless_arms'"),
    ("conditions.csv", f"kidney_disease,icd10cm,N18-4,exact,,x,{SRC},", "malformed ICD-10-CM code"),
    ("conditions.csv", f"rls,snomed,32914009,exact,,x,{SRC},", "Verhoeff"),
    ("conditions.csv", f"rls,snomed,32914008,prefix,,x,{SRC},", "only defined for ICD-10-CM"),
    ("conditions.csv", f"kidney_disease,icd10cm,N18.4,exact,esrd,x,{SRC},", "conflicts with line"),
    ("conditions.csv", f"kidney_disease,icd10cm,N18.4,exact,ckd3plus,x,{SRC},", "duplicate of line"),
    (
        "conditions.csv",
        "kidney_disease,icd10cm,N17.9,exact,,Acute kidney failure,,",
        "every row must name its source",
    ),
    ("conditions.csv", f"kidney_disease,icd10cm,N17.9,family,,x,{SRC},", "match 'family'"),
    ("conditions.csv", f"kidney_disease,loinc,2276-4,exact,,x,{SRC},", "must be ICD-10-CM or SNOMED CT"),
    ("labs.csv", f"2276-5,ferritin,iron_deficiency,Ferritin,{SRC},", "mod-10 check digit"),
    ("labs.csv", f"24373-3,ferritn,iron_deficiency,Ferritin,{SRC},", "no units in units.csv"),
    ("labs.csv", f"2276-4,tsat,iron_deficiency,Ferritin,{SRC},", "conflicts with"),
    ("labs.csv", f"24373-3,ferritin,iron_deficit,Ferritin,{SRC},", "unknown cause id"),
    ("units.csv", f"ferritin,ng/dL,no,abc,,{SRC}", "must be a finite number > 0"),
    ("units.csv", f"ferritin,ng/dL,no,0,,{SRC}", "must be a finite number > 0"),
    ("units.csv", f"ferritin,mcg/L,no,1000,,{SRC}", "conflicts with line"),  # mcg/L == ug/L after normalising
    ("units.csv", f"ferritin,pmol/L,yes,1,,{SRC}", "second canonical unit"),
    ("units.csv", f"glucose,mmol/dL,yes,2,,{SRC}", "factor 1"),
    ("units.csv", f"glucose,mmol/dL,perhaps,2,,{SRC}", "must be yes or no"),
    ("units.csv", "potassium,mmol/L,no,1,,", "source is empty"),
    (
        "medications.csv",
        f"999001,SCD,mystery 5 MG Oral Tablet,mysterium,,,,,,,,,,oral,no,{SRC},",
        "'mysterium' is not",
    ),
    ("medications.csv", f"999002,IN,mysterium,,villain,ssri,,,,,,,,,,{SRC},", "role 'villain'"),
    (
        "medications.csv",
        f"36437,IN,sertraline2,,aggravator,ssri,,,,,,,,,,{SRC},",
        "RxCUI 36437 already defined",
    ),
    ("medications.csv", f"999003,IN,mysterium,,aggravator,gabapentoid,,,,,,,,,,{SRC},", "unknown drug_class"),
    ("medications.csv", f"999004,IN,mysterium,,aggravator,ssri,,loud,,,,,,,,{SRC},", "indicator 'loud'"),
    ("medications.csv", f"999005,PIN,mysterium hcl,,aggravator,ssri,,,,,,,,,,{SRC},", "must name its IN"),
    (
        "medications.csv",
        f"999006,SCD,sertraline 1 MG Oral Tablet,sertraline,aggravator,,,,,,,,,oral,no,{SRC},",
        "leave them empty",
    ),
    (
        "medications.csv",
        f"999007,SCD,sertraline 1 MG Eye Drops,sertraline,,,,,,,,,,ophthalmic,no,{SRC},",
        "contradicts routes.csv",
    ),
    (
        "medications.csv",
        f"999008,SCD,sertraline 1 MG,sertraline,,,,,,,,,,intrathecal,no,{SRC},",
        "not a route",
    ),
    ("medications.csv", f"12AB,IN,mysterium,,aggravator,ssri,,,,,,,,,,{SRC},", "malformed RxNorm"),
    ("medications.csv", f"999009,IN,mysterium,,aggravator,ssri,,,,,N06AB9,,,,,{SRC},", "malformed ATC"),
    (
        "medications.csv",
        f"999010,IN,gabapentin xr,,aggravator,gabapentinoid,,,,,,,,,,{SRC},",
        "contradicts class",
    ),
    ("drug_classes.csv", f"mystery,Mystery,aggravator,moderate,loud,,N06AB,{SRC},", "indicator 'loud'"),
    ("drug_classes.csv", f"ssri,Again,aggravator,moderate,warning,,N06AB,{SRC},", "defined twice"),
    ("routes.csv", f"gel,,topical,maybe,{SRC}", "must be yes or no"),
    ("routes.csv", f",6064005,topical,yes,{SRC}", "already defined"),
    ("routes.csv", f"gel,6064005,topical,yes,{SRC}", "exactly one"),
    ("routes.csv", f",6064006,topical,yes,{SRC}", "Verhoeff"),
    ("routes.csv", f"patch,,topical,no,{SRC}", "excluded on one row and not on another"),
    ("routes.csv", f"topical,,topical,yes,{SRC}", "already defined"),
    ("routes.csv", f",,ophthalmic,yes,{SRC},S01", "already defined"),
    ("routes.csv", f",,topical,yes,{SRC},D4", "malformed ATC code"),
    ("routes.csv", f"gel,,topical,yes,{SRC},D05", "exactly one"),
    ("routes.csv", f",,topical,no,{SRC},D05", "excluded on one row and not on another"),
]


@pytest.mark.parametrize(("name", "row", "fragment"), APPENDED, ids=[f"{n}:{f}" for n, _, f in APPENDED])
def test_broken_row_names_file_and_line(tables, name, row, fragment):
    line = append(tables, name, row)
    err = broken(tables)
    assert (err.file, err.line) == (name, line), err
    assert fragment in err.message
    assert f"{name}:{line}:" in str(err)


YAML_EDITS = [
    ("ferritin_max: 75 ", "ferritin_max: seventy-five ", "ferritin_max"),
    ("ferritin_max: 75 ", "ferritin_max: -5 ", "finite number >= 0"),
    ("ferritin_max: 75 ", "ferritin_max: 120 ", "must be below ferritin_iv_only_max"),
    ("glucose: 30", "glucose: 0", "positive whole number of days"),
    ("glucose: 30", "glucose: 7.5", "positive whole number of days"),
    ("glucose: 30", "glucos: 30", "neither an analyte"),
    (
        "Magnesium deficiency\n    strength: weak",
        "Magnesium deficiency\n    strength: feeble",
        "strength must be",
    ),
    ("actionable: true", "actionable: sometimes", "actionable must be true or false"),
    ('"{label} {value} {unit} ({date}): iron', '"{patient} {value} ({date}): iron', "placeholder {patient}"),
    ('summary: "{drug} ({drug_class})', 'summary: "{drug ({drug_class})', "template is malformed"),
    ('reference_url: "https://pubmed', 'reference_url: "ftp://pubmed', "http(s) URL"),
    ("    title: Iron deficiency\n", "    title: Iron deficiency\n    colour: red\n", "unknown key 'colour'"),
    ("      tsat_low: 20 ", "      tsat_lo: 20 ", "threshold 'tsat_low' is required"),
    ("      hba1c_min: 6.5", "      hba1c_min: 6.5\n      hba1c_min: 7", "duplicate key 'hba1c_min'"),
]


@pytest.mark.parametrize(("old", "new", "fragment"), YAML_EDITS, ids=[f for _, _, f in YAML_EDITS])
def test_broken_causes_yaml_names_line(tables, old, new, fragment):
    line = replace(tables, "causes.yaml", old, new)
    err = broken(tables)
    assert err.file == "causes.yaml"
    assert fragment in err.message, err
    # the reported line is the edited line or its enclosing key (within the edited block)
    assert line - 3 <= err.line <= line + new.count("\n") + 1, (line, err)


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        (
            "    lookback_days:\n      glucose: 30",
            "    lookback_days: [30]",
            "lookback_days must be a mapping",
        ),
        (
            "  hypoglycemia:\n",
            "  hypoglycemia: 5\n  hypoglycemia_notes:\n",
            "'hypoglycemia': expected a mapping",
        ),
        ("    title: Lyme disease", "    title: 5", "title must be text"),
        ("  amyloidosis:", "  Amyloid-osis:", "must be snake_case"),
    ],
)
def test_wrong_yaml_shapes_are_reported_not_crashed(tables, old, new, fragment):
    replace(tables, "causes.yaml", old, new)
    err = broken(tables)
    assert err.file == "causes.yaml" and fragment in str(err), err


def test_missing_design_cause(tables):
    text = (tables / "causes.yaml").read_text(encoding="utf-8")
    start = text.index("  surgery:\n")
    (tables / "causes.yaml").write_text(text[:start], encoding="utf-8")
    err = broken(tables)
    assert err.file == "causes.yaml"
    assert "cause 'surgery' (DESIGN.md §3) is not defined" in err.message


def test_yaml_syntax_error(tables):
    line = replace(tables, "causes.yaml", "  stress:\n", "  stress:\n    title: [unclosed\n")
    err = broken(tables)
    assert err.file == "causes.yaml" and "YAML syntax error" in err.message
    assert err.line >= line


def test_missing_file(tables):
    (tables / "labs.csv").unlink()
    err = broken(tables)
    assert err.file == "labs.csv" and "cannot read" in err.message


def test_missing_column(tables):
    replace(tables, "labs.csv", "loinc,analyte,", "loinc,analyt,")
    err = broken(tables)
    assert (err.file, err.line) == ("labs.csv", 1) and "missing column(s): analyte" in err.message


def test_every_problem_is_reported(tables):
    first = append(tables, "conditions.csv", f"nope,icd10cm,G25.81,exact,,x,{SRC},")
    second = append(tables, "labs.csv", f"2276-5,ferritin,iron_deficiency,Ferritin,{SRC},")
    err = broken(tables)
    where = {(p.file, p.line) for p in err.problems}
    assert {("conditions.csv", first), ("labs.csv", second)} <= where
    assert "(and 1 more problem)" in str(err)


def test_comment_and_blank_rows_are_ignored(tables):
    append(tables, "conditions.csv", "# kidney_disease,icd10cm,N18-4,exact,,commented out,,")
    append(tables, "conditions.csv", ",,,,,,,")
    assert load_terminology(tables).condition_matches("icd10cm", "N18.4")


def test_fixed_table_loads_again(tables):
    line = append(
        tables, "conditions.csv", f"kidney_disease,icd10cm,N17.9,exact,,Acute kidney failure,{SRC},"
    )
    t = load_terminology(tables)
    assert [m.cause for m in t.condition_matches("icd10cm", "N17.9")] == ["kidney_disease"]
    assert line > 200


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("\niv_iron,", "\n# iv_iron,", "drug_class 'iv_iron' is read by the rules and must be defined"),
        ("\ngabapentinoid,", "\ngabapentinoids,", "drug_class 'gabapentinoid' is read by the rules"),
        # augmentation reads these two: renamed, the rule would stop without a word
        ("\ndopamine_agonist,", "\ndopamine_agonists,", "drug_class 'dopamine_agonist' is read by the rules"),
        ("\nlevodopa,", "\nlevodopa_carbidopa,", "drug_class 'levodopa' is read by the rules"),
        (
            "\niron,Oral iron preparations (RLS treatment),rls_treatment,",
            "\niron,Oral iron preparations (RLS treatment),aggravator,",
            "drug_class 'iron' is read by the rules as 'rls_treatment', not 'aggravator'",
        ),
    ],
)
def test_classes_the_rules_read_cannot_be_renamed_or_turned(tables, old, new, fragment):
    replace(tables, "drug_classes.csv", old, new)
    err = broken(tables)
    assert any(p.file == "drug_classes.csv" and fragment in p.message for p in err.problems), err
