"""Batch-oriented core options: the terminology lookup memo shared by evaluations (one per terminology
object, bounded, gone with its terminology) and evaluate(fingerprint=False)."""

from __future__ import annotations

import gc
import weakref

from rls_cds.core import facts
from rls_cds.settings import get_settings
from rls_cds.terminology import load_terminology


def test_one_memo_per_terminology_released_with_it():
    t = load_terminology(path=get_settings().terminology_dir)
    memo = facts._memo_for(t)
    assert facts._memo_for(t) is memo
    assert memo.lab("http://loinc.org", "2276-4").analyte == "ferritin"
    other = load_terminology(path=get_settings().terminology_dir)
    assert facts._memo_for(other) is not memo  # a reloaded terminology starts afresh
    alive = weakref.ref(t)
    del t, memo
    gc.collect()
    assert alive() is None


def test_memo_stops_remembering_at_its_bound(terminology, monkeypatch):
    monkeypatch.setattr(facts, "MEMO_MAX", 3)
    memo = facts._Memo(terminology)
    for i in range(10):
        assert memo.drug_by_text(f"no such drug {i}") == terminology.drug_by_text(f"no such drug {i}")
        assert memo.lab("http://loinc.org", f"0000-{i}") is None
    assert len(memo._text) == len(memo._lab) == 3
    assert memo.lab("http://loinc.org", "2276-4").analyte == "ferritin"  # still answered, not stored


def test_fingerprint_can_be_skipped_without_changing_findings(terminology):
    from datetime import UTC, datetime

    import msgspec

    from rls_cds.core.engine import evaluate

    resources = [
        {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"},
        {
            "resourceType": "Observation",
            "id": "f1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2276-4"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-05-01",
            "valueQuantity": {"value": 20, "unit": "ng/mL", "code": "ng/mL"},
        },
    ]
    now = datetime(2026, 6, 1, tzinfo=UTC)
    full = evaluate(resources, now=now, terminology=terminology)
    bare = evaluate(resources, now=now, terminology=terminology, fingerprint=False)
    assert len(full.fingerprint) == 32 and bare.fingerprint == ""
    assert full.findings and msgspec.to_builtins(bare.findings) == msgspec.to_builtins(full.findings)
