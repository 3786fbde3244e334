"""docs/clinical-content.md's per-cause tables are the terminology tables, regenerated, not retyped."""

from __future__ import annotations

import csv
import re

from tests.ops import clinical_content
from tests.ops.deployment import REPO

DOC = (REPO / "docs" / "clinical-content.md").read_text(encoding="utf-8")


def test_generated_block_matches_the_tables():
    assert clinical_content.updated_document(DOC) == DOC, (
        "terminology/ changed: run `.venv/bin/python -m tests.ops.clinical_content` and commit the guide"
    )


def test_every_cause_has_a_section():
    import yaml

    causes = yaml.safe_load((REPO / "terminology" / "causes.yaml").read_text())["causes"]
    for cause in causes:
        assert f"### `{cause}` — " in DOC, cause


def test_no_code_in_the_guide_is_missing_from_the_tables():
    known = set()
    for name, column in (("conditions.csv", "code"), ("labs.csv", "loinc"), ("medications.csv", "rxcui")):
        with (REPO / "terminology" / name).open(encoding="utf-8") as fh:
            known |= {row[column] for row in csv.DictReader(fh) if row[column]}
    block = DOC.split(clinical_content.BEGIN, 1)[1]
    codes = set(re.findall(r"\|\s*`([A-Z0-9][A-Z0-9.\-]*)`", block))  # first code cell of table rows
    codes |= set(re.findall(r"`(\d{3,})`", block))  # product codes listed inline
    invented = {c for c in codes if c not in known and not c.islower()}
    assert not invented, sorted(invented)[:20]
