"""The memo of fhir.resources verdicts (core/validation.py): content-keyed, bounded, thread-safe, and
invisible in what the core answers. Real fhir.resources models throughout; the counters of
``cache_info()`` show whether the model ran (a miss) or the memo answered (a hit)."""

from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import msgspec
import pytest

from rls_cds.core import validation as V
from rls_cds.core.engine import evaluate, render_cards
from rls_cds.settings import Settings
from tests.core import fhir as F
from tests.core.fhir import NOW


@pytest.fixture(autouse=True)
def fresh_cache():
    """Every test starts with an empty memo of the default size, and leaves it that way."""
    V.set_cache_size(0)
    V.set_cache_size(V.DEFAULT_CACHE_SIZE)
    yield
    V.set_cache_size(0)
    V.set_cache_size(V.DEFAULT_CACHE_SIZE)


def _delta(before: V.CacheInfo) -> tuple[int, int]:
    now = V.cache_info()
    return now.hits - before.hits, now.misses - before.misses


def _uncached(resource: dict) -> tuple:
    """The verdict with the memo off: what every cached answer must equal."""
    size = V.cache_info().maxsize
    V.set_cache_size(0)
    try:
        return V.validate(resource)
    finally:
        V.set_cache_size(size)


def test_identical_content_is_validated_once():
    lab = F.ferritin(30, rid="f1")
    before = V.cache_info()
    first = V.validate(lab)
    assert _delta(before) == (0, 1) and first == (True, None, [])
    twin = copy.deepcopy(lab)  # another dict, same content: the key is the content, not the object
    assert V.validate(twin) == first
    assert V.validate(lab) == first
    assert _delta(before) == (2, 1)
    assert V.cache_info().size == 1


def test_a_changed_field_is_validated_again_and_gets_its_own_verdict():
    lab = F.ferritin(30, rid="f1")
    assert V.validate(lab)[0] is True
    bad_status = copy.deepcopy(lab)
    bad_status["status"] = ["final"]  # an array where FHIR has one code
    other_value = copy.deepcopy(lab)
    other_value["valueQuantity"]["value"] = 31
    before = V.cache_info()
    ok, reason, _ = V.validate(bad_status)
    assert ok is False and reason.startswith("status")
    assert V.validate(other_value) == (True, None, [])
    assert _delta(before) == (0, 2)
    assert V.validate(lab) == (True, None, [])  # the original verdict is untouched
    assert _delta(before) == (1, 2)


def test_invalid_verdicts_and_their_reasons_are_remembered():
    lab = F.ferritin(30, rid="bad")
    lab["issued"] = "not-a-date"
    lab["status"] = "final "  # trailing blank: not a FHIR code
    expected = _uncached(lab)
    assert expected[0] is False and "issued" in expected[1] and "status" in expected[1]
    before = V.cache_info()
    assert V.validate(lab) == expected
    assert V.validate(copy.deepcopy(lab)) == expected
    assert _delta(before) == (1, 1)


def test_repair_notes_are_returned_on_hits_too():
    order = F.draft("312941", "sertraline 50 MG Oral Tablet", rid="d1")
    order["category"] = {"coding": [{"code": "outpatient"}]}  # one object instead of an array
    before = V.cache_info()
    first = V.validate(order)
    again = V.validate(copy.deepcopy(order))
    assert first == again
    ok, reason, notes = again
    assert ok is True and reason is None
    assert notes == ["'category' was sent as an object, read as a one-element array"]
    assert _delta(before) == (1, 1)
    # The key is the repaired content: the same order sent correctly shares the verdict, without notes.
    proper = copy.deepcopy(order)
    proper["category"] = [proper["category"]]
    assert V.validate(proper) == (True, None, [])
    assert _delta(before) == (2, 1)
    assert order["category"] == {"coding": [{"code": "outpatient"}]}  # the caller's dict is not changed


def test_the_bound_holds_and_the_least_recently_used_goes_first():
    V.set_cache_size(20)
    labs = [F.ferritin(10 + i, rid=f"f{i}") for i in range(60)]
    for lab in labs:
        V.validate(lab)
    assert V.cache_info().size == 20
    before = V.cache_info()
    assert V.validate(labs[-1])[0] is True  # recent: still there
    assert _delta(before) == (1, 0)
    assert V.validate(labs[0])[0] is True  # evicted long ago: validated again
    assert _delta(before) == (1, 1)
    assert V.cache_info().size == 20
    V.set_cache_size(5)  # shrinking evicts down to the new bound at once
    assert V.cache_info().size == 5 and V.cache_info().maxsize == 5


def test_size_zero_disables_and_clears():
    lab = F.ferritin(30, rid="f1")
    V.validate(lab)
    assert V.cache_info().size == 1
    V.set_cache_size(0)
    assert V.cache_info().size == 0
    before = V.cache_info()
    assert V.validate(lab) == V.validate(lab) == (True, None, [])
    assert _delta(before) == (0, 0) and V.cache_info().size == 0
    for wrong in (-1, 1.5, "10", True):
        with pytest.raises(ValueError):
            V.set_cache_size(wrong)


def test_values_the_key_could_not_tell_apart_are_never_cached():
    # orjson writes None and NaN alike ("null"); fhir.resources accepts the first, refuses the second.
    absent = F.ferritin(30, rid="f1")
    absent["valueQuantity"]["value"] = None
    nan = copy.deepcopy(absent)
    nan["valueQuantity"]["value"] = float("nan")
    dated = F.ferritin(30, rid="f2")
    dated["issued"] = datetime(2026, 10, 1, tzinfo=UTC)  # not JSON: never keyed by its string form
    as_text = copy.deepcopy(dated)
    as_text["issued"] = "2026-10-01T00:00:00+00:00"
    expected = [_uncached(r) for r in (absent, nan, dated)]  # (clears the memo: compute them first)
    assert expected[0] == (True, None, []) and expected[1][0] is False
    assert V.validate(as_text) == (True, None, [])
    before = V.cache_info()
    assert [V.validate(r) for r in (absent, nan, dated)] == expected
    assert [V.validate(r) for r in (nan, absent, dated)] == [expected[1], expected[0], expected[2]]
    assert _delta(before) == (0, 0)  # none of them looked up, none answered from the memo
    assert V.cache_info().size == 1  # only the plain-JSON one


def test_unknown_types_and_non_objects_answer_as_before():
    assert V.validate(["not", "a", "resource"]) == (False, "not a JSON object", [])
    assert V.validate({"resourceType": "NoSuchThing", "id": "x"}) == (False, "unknown resourceType", [])
    assert V.cache_info().size == 0


def test_concurrent_validation_gives_every_thread_the_right_verdict():
    V.set_cache_size(16)  # smaller than the working set: evictions race with lookups
    resources = []
    for i in range(40):
        lab = F.ferritin(20 + i, rid=f"c{i}")
        if i % 3 == 0:
            lab["status"] = f"final  {i}"  # two blanks: not a FHIR code
        resources.append(lab)
    expected = [_uncached(r) for r in resources]
    start = threading.Barrier(6)
    before = V.cache_info()

    def worker(offset: int) -> list[bool]:
        start.wait()
        out = []
        for n in range(400):
            i = (n // 3 + offset * 7) % len(resources)  # each thread asks three times in a row
            out.append(V.validate(resources[i]) == expected[i])
        return out

    with ThreadPoolExecutor(6) as pool:
        results = [ok for batch in pool.map(worker, range(6)) for ok in batch]
    assert all(results) and len(results) == 2400
    hits, misses = _delta(before)
    assert hits > 0 and hits + misses == 2400 and V.cache_info().size <= 16


def _patient_record() -> tuple[list[dict], list[dict]]:
    """A small realistic patient: RLS, low ferritin, an SSRI, one lab failing validation; a draft
    order with the object-for-array deviation (repairs shown on its card)."""
    bad = F.ferritin(12, rid="bad-ferritin", days=5)
    bad["issued"] = "not-a-date"
    record = [
        F.patient(),
        F.rls(rid="rls-1"),
        F.ferritin(40, rid="ferritin-1", days=20),
        F.tsat(14, rid="tsat-1", days=20),
        bad,
        F.med_request("312941", "sertraline 50 MG Oral Tablet", rid="ssri-1"),
    ]
    draft = F.draft("312941", "sertraline 50 MG Oral Tablet", rid="draft-1")
    draft["category"] = {"coding": [{"code": "outpatient"}]}
    return record, [draft]


def _outcome(terminology, hook: str) -> tuple:
    record, drafts = _patient_record()
    a = evaluate(copy.deepcopy(record), now=NOW, terminology=terminology, draft_orders=copy.deepcopy(drafts))
    return msgspec.to_builtins(a), render_cards(a, hook=hook)


@pytest.mark.parametrize("hook", ["patient-view", "order-select"])
def test_an_evaluation_answers_the_same_with_the_memo_on_and_off(terminology, hook):
    V.set_cache_size(0)
    off = _outcome(terminology, hook)
    V.set_cache_size(V.DEFAULT_CACHE_SIZE)
    cold = _outcome(terminology, hook)
    before = V.cache_info()
    warm = _outcome(terminology, hook)
    hits, misses = _delta(before)
    assert hits > 0 and misses == 0  # the second evaluation validated nothing again
    assert off == cold == warm
    assessment, cards = off
    assert any("bad-ferritin" in w and "failed FHIR R4 validation" in w for w in assessment["warnings"])
    assert assessment["repairs"].get("MedicationRequest/draft-1")
    assert cards  # something is shown, so the comparison covers rendered cards too


def test_the_setting_defaults_to_the_core_default_and_is_applied_by_batch_start_up():
    assert Settings.model_fields["validation_cache_size"].default == V.DEFAULT_CACHE_SIZE
    from rls_cds.panels.runs import load_terminology

    load_terminology(Settings(validation_cache_size=7))
    assert V.cache_info().maxsize == 7
