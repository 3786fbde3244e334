"""`rls-cds terminology check` and `export --fhir` (in-process through the real CLI entry point)."""

from __future__ import annotations

import json

import pytest
from fhir.resources.R4B.valueset import ValueSet

from rls_cds.cli import main
from rls_cds.terminology.valuesets import validate_valueset

from .conftest import TABLES
from .test_broken_tables import append


def test_check_prints_per_cause_counts(capsys):
    assert main(["terminology", "check", "--path", str(TABLES)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line and line.split()[0].islower()}
    for cause in ("rls", "iron_deficiency", "kidney_disease", "drug_induced", "surgery", "lifestyle"):
        assert cause in rows
    # columns: cause strength ICD-10-CM SNOMED LOINC RxNorm excluded
    assert rows["rls"][1:] == ["informational", "1", "2", "0", "0", "0"]
    assert int(rows["drug_induced"][5]) > 100
    assert int(rows["kidney_disease"][6]) == 2  # N18.1 and N18.2
    assert "no problems" in out


def test_check_reports_every_problem_and_fails(tables, capsys):
    line = append(tables, "conditions.csv", "restless_arms,icd10cm,G25.82,exact,,x,fixture,")
    line2 = append(tables, "units.csv", "ferritin,ng/dL,no,-1,,fixture")
    assert main(["terminology", "check", "--path", str(tables)]) == 1
    err = capsys.readouterr().err
    assert f"conditions.csv:{line}: unknown cause id 'restless_arms'" in err
    assert f"units.csv:{line2}:" in err
    assert "2 problem(s)" in err


def test_export_writes_valid_valuesets(tmp_path, capsys):
    out = tmp_path / "vs"
    assert main(["terminology", "export", "--fhir", str(out), "--path", str(TABLES)]) == 0
    files = sorted(out.glob("ValueSet-*.json"))
    assert len(files) >= 40
    by_id = {}
    for f in files:
        data = json.loads(f.read_text(encoding="utf-8"))
        ValueSet.model_validate(data)
        by_id[data["id"]] = data
    assert "skipped cause surgery: no codes" in capsys.readouterr().out

    def codes(vs, system):
        return {
            c["code"]
            for inc in vs["compose"]["include"]
            if inc["system"] == system
            for c in inc.get("concept", [])
        }

    rx = "http://www.nlm.nih.gov/research/umls/rxnorm"
    drug = by_id["rls-cause-drug-induced"]
    assert {"36437", "312941", "328670"} <= codes(drug, rx)
    assert not {"25480", "310430", "187832", "1101333", "42347", "993541"} & codes(drug, rx)
    kidney = by_id["rls-cause-kidney-disease"]
    excluded = {f["value"] for ex in kidney["compose"]["exclude"] for f in ex["filter"]}
    assert excluded == {"N18.1", "N18.2"}
    families = {f["value"] for inc in kidney["compose"]["include"] for f in inc.get("filter", [])}
    assert families == {"N18.3"}
    assert "98979-8" in codes(kidney, "http://loinc.org")
    gaba = by_id["rls-class-gabapentinoid"]
    assert {"25480", "1101333", "187832", "310430", "1482820"} <= codes(gaba, rx)
    assert all(vs["status"] == "active" and vs["version"] for vs in by_id.values())


@pytest.mark.parametrize(
    "bad",
    [
        {"resourceType": "ValueSet", "status": "bogus"},  # required binding (publication-status)
        {"resourceType": "ValueSet"},  # status missing
        {
            "resourceType": "ValueSet",
            "status": "active",
            "id": "rls-cause_iron",
        },  # '_' is not allowed in an id
        {
            "resourceType": "ValueSet",
            "status": "active",
            "compose": {"include": [{"concept": [{"display": "x"}]}]},
        },
    ],
)
def test_invalid_valueset_is_rejected(bad):
    with pytest.raises(ValueError):
        validate_valueset(bad)


def test_export_refuses_broken_tables(tables, tmp_path):
    append(tables, "labs.csv", "2276-5,ferritin,iron_deficiency,Ferritin,fixture,")
    assert main(["terminology", "export", "--fhir", str(tmp_path / "vs"), "--path", str(tables)]) == 1
    assert not (tmp_path / "vs").exists()
