"""Which thin resources can matter to a rule: those whose codes (or, for drugs, text) the terminology knows.

Everything else in a Bulk export (blood counts, lipid panels, everyday drugs, unrelated problems) is
counted and dropped right after decoding, so the facts kept per patient stay small. Labs the tables
know but no rule reads (hemoglobin, MCV, creatinine, BUN: ``core.rules.ANALYTES_READ``) are dropped
too: the core skips them without a trace (no fact, warning or fingerprint input). The lookups are
memoised per (system, code): an export repeats the same few thousand codes millions of times.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rls_cds.core.facts import parse_date
from rls_cds.core.rules import ANALYTES_READ
from rls_cds.fhir import thin


class Relevance:
    def __init__(self, terminology: Any):
        self.t = terminology
        self._cond: dict[tuple, bool] = {}
        self._lab: dict[tuple, bool] = {}
        self.lab_cache = self._lab  # read directly by the map's hot loop
        self.condition_cache = self._cond
        self._drug: dict[tuple, bool] = {}
        self._text: dict[str, bool] = {}

    # --- code lookups (memoised) ----------------------------------------------------------
    def condition_code(self, system: str | None, code: str | None) -> bool:
        key = (system, code)
        hit = self._cond.get(key)
        if hit is None:
            hit = bool(system and code and self.t.condition_matches(system, code))
            self._cond[key] = hit
        return hit

    def lab_code(self, system: str | None, code: str | None) -> str:
        """The analyte of a lab a rule reads; "" (falsy) for any other code."""
        key = (system, code)
        hit = self._lab.get(key)
        if hit is None:
            lab = self.t.lab(system, code) if system and code else None
            hit = lab.analyte if lab is not None and lab.analyte in ANALYTES_READ else ""
            self._lab[key] = hit
        return hit

    def _drug_code(self, system: str | None, code: str | None) -> bool:
        key = (system, code)
        hit = self._drug.get(key)
        if hit is None:
            hit = bool(system and code and self.t.drug_by_code(system, code) is not None)
            self._drug[key] = hit
        return hit

    def _drug_text(self, text: str | None) -> bool:
        if not text:
            return False
        hit = self._text.get(text)
        if hit is None:
            hit = bool(self.t.drug_by_text(text))
            self._text[text] = hit
        return hit

    # --- per resource ---------------------------------------------------------------------
    def condition(self, res: thin.Condition) -> bool:
        code = res.code
        return code is not None and any(self.condition_code(c.system, c.code) for c in code.coding)

    def observation(self, res: thin.Observation) -> bool:
        return res.code is not None and any(self.lab_code(c.system, c.code) for c in res.code.coding)

    def concept(self, concept: thin.Concept | None) -> bool:
        """A drug concept: by code; by text (or coding display) only when no code is known."""
        if concept is None:
            return False
        if any(self._drug_code(c.system, c.code) for c in concept.coding):
            return True
        if self._drug_text(concept.text):
            return True
        return any(self._drug_text(c.display) for c in concept.coding)

    def medication(self, res: thin.Medication | thin.Contained) -> bool:
        if self.concept(res.code):
            return True
        return any(self.concept(i.itemCodeableConcept) for i in res.ingredient)

    def medication_request(self, res: thin.MedicationRequest) -> bool | None:
        """True/False, or None when it depends on a Medication resource elsewhere in the export."""
        if res.medicationCodeableConcept is not None:
            return self.concept(res.medicationCodeableConcept)
        ref = res.medicationReference.reference if res.medicationReference is not None else None
        if ref and ref.startswith("#"):
            med = next((c for c in res.contained if c.id == ref[1:]), None)
            return med is not None and self.medication(med)
        if ref:
            return None
        return self._drug_text(res.medicationReference.display if res.medicationReference else None)

    def keep(self, res: thin.Resource) -> bool | None:
        """Keep for evaluation? Patients always; None = decide when the Medication is known."""
        if isinstance(res, thin.Observation):
            return self.observation(res)
        if isinstance(res, thin.Condition):
            return self.condition(res)
        if isinstance(res, thin.MedicationRequest):
            return self.medication_request(res)
        if isinstance(res, thin.Medication):
            return self.medication(res)
        return True


class LabHorizon:
    """Labs dated before the longest look-back of any cause (``core.engine.read_scope``) are skipped
    by the core without a trace, except the analytes it keeps to say "last checked on ...": the
    map drops them too. The date is the one the core reads (``core.facts._observation``): the first
    of effectiveDateTime, effectivePeriod.start, effectiveInstant, issued that parses."""

    __slots__ = ("before", "keep_old")

    def __init__(self, terminology: Any, now: datetime):
        from rls_cds.core.engine import read_scope

        scope = read_scope(terminology, now)
        self.before = scope.horizon
        self.keep_old = scope.keep_old

    def too_old(self, res: thin.Observation, analyte: str) -> bool:
        if self.before is None or analyte in self.keep_old:
            return False
        period = res.effectivePeriod
        date = (
            parse_date(res.effectiveDateTime)
            or parse_date(period.start if period is not None else None)
            or parse_date(res.effectiveInstant)
            or parse_date(res.issued)
        )
        return date is not None and date < self.before
