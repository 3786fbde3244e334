"""One patient's thin resources -> the clinical core's assessment -> what the run keeps of it.

The batch calls the same ``rls_cds.core.engine.evaluate`` as the hooks and the background
re-evaluation, so a patient gets the same findings whichever path reaches them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec


@dataclass
class Outcome:
    findings: list[dict]  # every finding, JSON-shaped
    actionable: list[dict]  # worklist entries: cause, strength, summary, action
    causes: list[str]  # every cause found (actionable or not)
    fingerprint: str | None
    table_version: str | None
    warnings: int = 0
    extra: dict = field(default_factory=dict)


def _evaluate_fn():
    import inspect

    from rls_cds.core.engine import evaluate

    # Thin batch resources are type-checked by msgspec while decoding (panels/thin.py): skip the
    # evidence re-validation when the engine offers it (architecture.md, "Batch input").
    if "validate_evidence" in inspect.signature(evaluate).parameters:
        return functools.partial(evaluate, validate_evidence=False)
    return evaluate


class Evaluator:
    def __init__(self, terminology: Any, now: datetime):
        self.terminology = terminology
        self.now = now
        self._evaluate = _evaluate_fn()

    def __call__(self, resources: list[dict], missing: frozenset[str] = frozenset()) -> Outcome:
        assessment = self._evaluate(resources, now=self.now, terminology=self.terminology, missing=missing)
        findings = [_builtins(f) for f in assessment.findings]
        actionable = [
            {
                "cause": f.get("cause"),
                "strength": f.get("strength"),
                "summary": f.get("summary"),
                "action": f.get("action"),
            }
            for f in findings
            if f.get("actionable")
        ]
        return Outcome(
            findings=findings,
            actionable=actionable,
            causes=sorted({str(f.get("cause")) for f in findings}),
            fingerprint=getattr(assessment, "fingerprint", None),
            table_version=getattr(assessment, "table_version", None),
            warnings=len(getattr(assessment, "warnings", ()) or ()),
        )


def _builtins(finding: Any) -> dict:
    if isinstance(finding, dict):
        return finding
    return msgspec.to_builtins(finding)
