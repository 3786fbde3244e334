"""The hook's thin request decoding (api/decode.py) reads exactly what a whole parse reads.

Every test compares the thin path (msgspec into thin Structs, whole orjson parse for the rest, evidence
validated as sent) with the whole-body path it replaced (orjson into dicts) on the same bytes: same
findings, warnings and cards, for the shipped examples, realistic records and randomly mangled ones.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rls_cds.api.decode import decode_hook_request
from rls_cds.api.errors import ApiError
from rls_cds.api.hooks import _draft_orders
from rls_cds.core.engine import evaluate, render_cards
from rls_cds.core.resources import flatten
from rls_cds.settings import get_settings
from rls_cds.terminology import load_terminology
from tests.core import fhir as F
from tests.core.test_properties import REAL, json_values

EXAMPLES = Path(__file__).resolve().parents[2] / "cds-hooks" / "examples"
HOOK_EXAMPLES = sorted(p for p in EXAMPLES.glob("*.json") if "hook" in json.loads(p.read_text()))


@pytest.fixture(scope="module")
def terminology():
    return load_terminology(path=get_settings().terminology_dir)


def _outcome(terminology, obj: dict, as_sent=None) -> dict:
    """What a hook answers for ``obj`` (the handler's own steps, at a fixed time)."""
    hook = obj["hook"]
    prefetch = obj.get("prefetch") or {}
    resources, _ = flatten([v for v in prefetch.values() if v is not None])
    drafts, draft_warnings = _draft_orders(SimpleNamespace(hook=hook), obj.get("context") or {}, flatten)
    assessment = evaluate(
        resources,
        now=F.NOW,
        terminology=terminology,
        draft_orders=drafts,
        draft_warnings=draft_warnings,
        fingerprint=False,
        as_sent=as_sent,
    )
    return {
        "findings": msgspec.to_builtins(assessment.findings),
        "warnings": assessment.warnings,
        "repairs": assessment.repairs,
        "cards": render_cards(assessment, hook=hook),
    }


def _both(terminology, body: bytes) -> tuple[dict, dict]:
    whole = _outcome(terminology, orjson.loads(body))
    decoded = decode_hook_request(body, 64)
    return whole, _outcome(terminology, decoded.obj, decoded.as_sent)


@pytest.mark.parametrize("path", HOOK_EXAMPLES, ids=lambda p: p.stem)
def test_examples_answer_the_same(terminology, path):
    whole, thin = _both(terminology, path.read_bytes())
    assert thin == whole
    assert whole["cards"] or "nothing" in path.stem or "no-rls" in path.stem


def test_prefetch_resources_are_thin_and_kept_as_sent(terminology):
    record = copy.deepcopy(REAL)
    record[2]["meta"] = {"lastUpdated": "2026-10-01T00:00:00Z"}  # a field no rule reads
    body = orjson.dumps(F.hook_request("patient-view", record))
    decoded = decode_hook_request(body, 64)
    entries = [
        e["resource"] for value in decoded.obj["prefetch"].values() if value for e in value.get("entry", [])
    ]
    ferritin = next(r for r in entries if r.get("id") == "f")
    assert "meta" not in ferritin  # thin: only what the rules read
    assert decoded.as_sent(ferritin) == record[2]  # ... but validated as sent
    whole, thin = _both(terminology, body)
    assert thin == whole and any(f["cause"] == "iron_deficiency" for f in thin["findings"])


def test_invalid_evidence_is_still_dropped(terminology):
    """A ferritin whose unread field is invalid FHIR fails validation as sent, as before."""
    record = copy.deepcopy(REAL)
    record[2]["meta"] = {"lastUpdated": "yesterday"}
    whole, thin = _both(terminology, orjson.dumps(F.hook_request("patient-view", record)))
    assert thin == whole
    assert any("failed FHIR R4 validation" in w for w in thin["warnings"])


def test_resources_the_thin_schema_refuses_are_read_whole(terminology):
    record = copy.deepcopy(REAL)
    record[2]["valueQuantity"]["value"] = "30"  # a string: msgspec refuses it, the core reads leniently
    record.append({"resourceType": "Procedure", "id": "p", "status": "completed"})
    record.append({"resourceType": "Encounter", "id": "enc", "status": "finished"})
    whole, thin = _both(terminology, orjson.dumps(F.hook_request("order-sign", record, drafts=[REAL[5]])))
    assert thin == whole


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "invalid_json"),
        (b'{"hook": "patient-view",', "invalid_json"),
        (b'{"hook": "patient-view"} trailing', "invalid_json"),
        (b'{"hook": "patient-view", "junk": [1, 2,]}', "invalid_json"),
        (b"[1, 2]", "invalid_request"),
        (b'"text"', "invalid_request"),
        (b'{"context": {"a": "\xff"}}', "invalid_json"),
        (b'{"hook": "x", "prefetch": {"\xff": null}}', "invalid_json"),
        (
            b'{"prefetch": {"c": {"resourceType": "Bundle", "entry": [{"resource": '
            b'{"resourceType": "Condition", "id": "\xff"}}]}}}',
            "invalid_json",
        ),
        (b'{"junk": "\xff"}', "invalid_json"),
        (b'{"context": ' + b'{"a": ' * 70 + b"1" + b"}" * 70 + b"}", "json_too_deep"),
        (b'{"junk": ' + b"[" * 5000 + b"]" * 5000 + b"}", "json_too_deep"),
    ],
)
def test_bad_bodies_are_400(body, error):
    with pytest.raises(ApiError) as exc:
        decode_hook_request(body, 64)
    assert exc.value.status == 400 and exc.value.error == error


def test_depth_limit_counts_from_the_top_inside_prefetch():
    deep: dict = {"resourceType": "Observation", "id": "o", "status": "final", "code": 7}
    node = deep
    for _ in range(60):  # entry.resource sits 5 levels down; 60 more exceed 64
        node["x"] = {}
        node = node["x"]
    body = orjson.dumps(
        {
            "hook": "patient-view",
            "prefetch": {"labs": {"resourceType": "Bundle", "entry": [{"resource": deep}]}},
        }
    )
    with pytest.raises(ApiError) as exc:
        decode_hook_request(body, 64)
    assert exc.value.error == "json_too_deep"
    assert decode_hook_request(body, 128).obj["prefetch"]["labs"]["entry"][0]["resource"]["id"] == "o"


SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.data())
def test_mangled_records_answer_the_same(terminology, data):
    record = copy.deepcopy(REAL)
    hook = data.draw(st.sampled_from(["patient-view", "order-sign"]))
    drafts = [copy.deepcopy(REAL[5])] if hook == "order-sign" else []
    request = F.hook_request(hook, record, drafts=drafts)  # holds the very dicts mangled below
    for _ in range(data.draw(st.integers(1, 4))):
        node = data.draw(st.sampled_from(record))
        while True:
            key = data.draw(st.sampled_from(sorted(node)))
            child = node[key]
            if isinstance(child, list) and child and isinstance(child[0], dict):
                child = child[0]
            if isinstance(child, dict) and child and data.draw(st.booleans()):
                node = child
                continue
            node[key] = data.draw(json_values)
            break
    whole, thin = _both(terminology, orjson.dumps(request))
    assert thin == whole


@pytest.mark.parametrize(
    ("prefetch", "expected"), [(b"null", None), (b"[1]", [1]), (b'"x"', "x"), (b"{}", {})]
)
def test_a_prefetch_that_is_not_an_object_is_kept_for_the_handler_to_judge(prefetch, expected):
    decoded = decode_hook_request(b'{"hook": "patient-view", "prefetch": ' + prefetch + b"}", 64)
    assert decoded.obj["prefetch"] == expected and decoded.obj["hook"] == "patient-view"


def test_nesting_past_the_recursion_limit_in_a_mixed_bundle_is_400():
    deep = b'{"a": ' * 990 + b"1" + b"}" * 990
    body = (
        b'{"hook": "patient-view", "prefetch": {"c": {"resourceType": "Bundle", "entry": ['
        b'{"resource": {"resourceType": "Encounter", "id": "e"}},'
        b'{"resource": {"resourceType": "Condition", "id": "c", "note": [' + deep + b"]}}]}}}"
    )
    with pytest.raises(ApiError) as exc:
        decode_hook_request(body, 64)
    assert exc.value.error == "json_too_deep"


def test_an_unreadable_skipped_field_drops_that_resource_only(terminology):
    """A number orjson refuses, in a field no rule reads: the evidence is read by the standard library,
    fails validation, and its siblings still give their cards (no 'core failed', no empty answer)."""
    record = copy.deepcopy(REAL)
    record[2]["note"] = [{"text": "x", "extension": [{"url": "u", "valueDecimal": 1}]}]
    body = orjson.dumps(F.hook_request("patient-view", record)).replace(
        b'"valueDecimal":1', b'"valueDecimal":1e400'
    )
    decoded = decode_hook_request(body, 64)
    outcome = _outcome(terminology, decoded.obj, decoded.as_sent)
    assert any("Observation/f: failed FHIR R4 validation" in w for w in outcome["warnings"])
    assert outcome["cards"]  # the rest of the record still speaks


def test_value_integer_beyond_64_bits_is_read_as_the_whole_parse_reads_it(terminology):
    record = copy.deepcopy(REAL)
    del record[2]["valueQuantity"]
    record[2]["valueInteger"] = 424242
    body = orjson.dumps(F.hook_request("patient-view", record)).replace(b"424242", str(2**70).encode())
    whole, thin = _both(terminology, body)
    assert thin == whole


@pytest.mark.parametrize(
    "abatement",
    [
        {"abatementAge": {"value": 52, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}},
        {"abatementRange": {"low": {"value": 50, "unit": "a"}, "high": {"value": 55, "unit": "a"}}},
        {"abatementString": "resolved in 2024"},
    ],
)
def test_every_abatement_form_is_read_by_the_thin_decode_too(terminology, abatement):
    # An abated condition with no clinicalStatus is over; the thin schema skipped abatementAge and
    # abatementRange, so the hook read it as active where a whole parse did not.
    record = copy.deepcopy(REAL)
    lyme = F.condition(F.ICD10, "A69.20", "Lyme disease, unspecified", rid="lyme", clinical=None)
    record.append({**lyme, **abatement})
    whole, thin = _both(terminology, orjson.dumps(F.hook_request("patient-view", record)))
    assert thin == whole
    assert "lyme_disease" not in {f["cause"] for f in thin["findings"]}
