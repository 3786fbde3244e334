"""Curated terminology: the tables under `terminology/`, validated and indexed by (system, code).

    from rls_cds.terminology import load_terminology, Terminology, TerminologyError
    t = load_terminology(path)          # raises TerminologyError(file, line, message)

The contract lives in docs/architecture.md ("Terminology"); the table formats in terminology/README.md.
"""

from __future__ import annotations

from rls_cds.terminology.codes import (
    ATC,
    ICD10CM,
    LOINC,
    RXNORM,
    SNOMED,
    normalize_code,
    normalize_system,
)
from rls_cds.terminology.errors import TerminologyError
from rls_cds.terminology.index import Terminology, load_terminology
from rls_cds.terminology.model import (
    CauseDef,
    ConditionMatch,
    DrugConcept,
    DrugIngredient,
    LabDef,
)

__all__ = [
    "ATC",
    "ICD10CM",
    "LOINC",
    "RXNORM",
    "SNOMED",
    "CauseDef",
    "ConditionMatch",
    "DrugConcept",
    "DrugIngredient",
    "LabDef",
    "Terminology",
    "TerminologyError",
    "load_terminology",
    "normalize_code",
    "normalize_system",
]
