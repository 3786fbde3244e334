"""One patient's thin resources -> the clinical core's assessment -> what the run keeps of it.

The batch calls the same ``rls_cds.core.engine.evaluate`` as the hooks and the background
re-evaluation, so a patient gets the same findings whichever path reaches them.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import msgspec


class Outcome:
    """What the run keeps of one assessment. ``findings`` (JSON-shaped, for the store and write-back)
    is built only when asked for: a local run without a store needs the worklist entries only."""

    __slots__ = ("_raw", "_findings", "actionable", "causes", "fingerprint", "table_version", "warnings")

    def __init__(self, raw: list, fingerprint: str | None, table_version: str | None, warnings: int = 0):
        self._raw = raw
        self._findings: list[dict] | None = None
        self.actionable = [
            {
                "cause": _get(f, "cause"),
                "strength": _get(f, "strength"),
                "summary": _get(f, "summary"),
                "action": _get(f, "action"),
                "evidence": [_evidence(e) for e in _get(f, "evidence") or ()],
            }  # fmt: skip
            for f in raw
            if _get(f, "actionable")
        ]
        self.causes = sorted({str(_get(f, "cause")) for f in raw})
        self.fingerprint = fingerprint
        self.table_version = table_version
        self.warnings = warnings

    @property
    def findings(self) -> list[dict]:
        if self._findings is None:
            self._findings = [f if isinstance(f, dict) else msgspec.to_builtins(f) for f in self._raw]
        return self._findings


def _evidence(e: Any) -> dict:
    """What a worklist reader opens: the resource, and its value and date when it has them."""
    out = {"resource": _get(e, "resource")}
    for name in ("display", "value", "unit", "date"):
        value = _get(e, name)
        if value is not None:
            out[name] = value
    return out


def _get(finding: Any, name: str) -> Any:
    return finding.get(name) if isinstance(finding, dict) else getattr(finding, name, None)


def _evaluate_fn(fingerprints: bool):
    import inspect

    from rls_cds.core.engine import evaluate

    # Thin batch resources are type-checked by msgspec while decoding (fhir/thin.py): skip the
    # evidence re-validation when the engine offers it (architecture.md, "Batch input").
    params = inspect.signature(evaluate).parameters
    options = {"validate_evidence": False} if "validate_evidence" in params else {}
    if not fingerprints and "fingerprint" in params:
        options["fingerprint"] = False  # nothing is stored: the fingerprint would never be read
    return functools.partial(evaluate, **options) if options else evaluate


class Evaluator:
    """``fingerprints=False`` for runs that store no assessment (Outcome.fingerprint stays empty)."""

    def __init__(self, terminology: Any, now: datetime, fingerprints: bool = True):
        self.terminology = terminology
        self.now = now
        self._evaluate = _evaluate_fn(fingerprints)

    def __call__(self, resources: list[dict], missing: frozenset[str] = frozenset()) -> Outcome:
        assessment = self._evaluate(resources, now=self.now, terminology=self.terminology, missing=missing)
        return Outcome(
            list(assessment.findings),
            getattr(assessment, "fingerprint", None),
            getattr(assessment, "table_version", None),
            len(getattr(assessment, "warnings", ()) or ()),
        )
