"""Shared fixtures for the clinical-core tests: the real terminology tables, and a runner."""

from __future__ import annotations

import pytest

from rls_cds.core.engine import evaluate, render_cards
from rls_cds.settings import get_settings
from rls_cds.terminology import load_terminology
from tests.core.fhir import NOW


@pytest.fixture(scope="session")
def terminology():
    return load_terminology(path=get_settings().terminology_dir)


class Run:
    """evaluate() + render_cards() with the real tables; helpers to look at the outcome."""

    def __init__(self, terminology):
        self.t = terminology

    def __call__(self, resources, drafts=(), missing=frozenset(), now=NOW, strict=False):
        return evaluate(
            resources, now=now, terminology=self.t, draft_orders=list(drafts), missing=missing, strict=strict
        )

    def cards(self, resources, hook="patient-view", drafts=(), **kw):
        return render_cards(self(resources, drafts=drafts, **kw), hook=hook)


@pytest.fixture(scope="session")
def run(terminology) -> Run:
    return Run(terminology)


def causes(assessment) -> set[str]:
    return {f.cause for f in assessment.findings}


def finding(assessment, cause: str):
    found = [f for f in assessment.findings if f.cause == cause]
    assert found, f"no {cause} finding; got {sorted(causes(assessment))}"
    assert len(found) == 1, f"{len(found)} {cause} findings"
    return found[0]


def card_causes(cards) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]
