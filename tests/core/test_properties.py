"""Property tests: random, mangled or truncated FHIR never raises out of flatten / evaluate / render."""

from __future__ import annotations

import copy

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rls_cds.core.engine import evaluate, render_cards
from rls_cds.core.resources import flatten, read_input
from tests.core import fhir as F

HOOKS = ("patient-view", "order-select", "order-sign", "medication-prescribe")
TYPES = [
    "Condition",
    "Observation",
    "MedicationRequest",
    "Medication",
    "Patient",
    "Bundle",
    "Procedure",
    7,
    None,
]
FIELD_NAMES = [
    "resourceType", "id", "code", "coding", "system", "value", "valueQuantity", "valueString", "unit",
    "status",
    "intent", "clinicalStatus", "verificationStatus", "effectiveDateTime", "authoredOn", "entry", "resource",
    "medicationReference", "reference", "contained", "ingredient", "itemCodeableConcept", "category",
    "dosageInstruction", "route", "interpretation", "subject", "onsetDateTime", "performedDateTime", "text",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e30, -1e30, 1e308, 0.1 + 0.2]),  # JSON-writable (other tests dump these as bodies)
    st.sampled_from(["G25.81", "2276-4", "312941", "http://loinc.org", F.ICD10, F.RXNORM, "ng/mL",
                     "µg/L", "active", "final", "draft", "2026-10-01", "2026-13-45T99:00Z", "#m1",
                     "Medication/m1", ""]),
    st.text(max_size=12),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(FIELD_NAMES), children, max_size=5),
    ),
    max_leaves=30,
)
resources = st.builds(
    lambda rtype, body: {**body, "resourceType": rtype} if isinstance(body, dict) else body,
    st.sampled_from(TYPES),
    json_values,
)

REAL = [
    F.patient(),
    F.rls(rid="r"),
    F.ferritin(30, rid="f"),
    F.tsat(12, rid="t"),
    F.egfr(40, rid="e"),
    F.med_request("312941", "sertraline 50 MG Oral Tablet", rid="m"),
    F.with_reference(
        F.med_request(None, "x", rid="ref"),
        F.medication("m1", [{"system": F.RXNORM, "code": "349332"}]),
        contained=True,
    ),
    F.condition(F.ICD10, "Z3A.30", "30 weeks", rid="preg", onset_days=3),
]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _evaluate_all_hooks(terminology, record, drafts=()):
    a = evaluate(record, now=F.NOW, terminology=terminology, draft_orders=drafts)
    for hook in HOOKS:
        cards = render_cards(a, hook=hook)
        orjson.dumps(cards)  # always JSON-serialisable
        assert all(len(c["summary"]) < 140 for c in cards)
    return a


@SETTINGS
@given(st.lists(resources, max_size=8), st.lists(resources, max_size=3))
def test_random_resources_never_raise(terminology, record, drafts):
    flat, _ = flatten(record)
    _evaluate_all_hooks(terminology, flat, drafts)


@SETTINGS
@given(json_values)
def test_flatten_and_read_input_never_raise_on_any_json(value):
    flatten(value)
    read_input(value)


@SETTINGS
@given(st.data())
def test_mutating_one_field_of_real_resources_never_raises(terminology, data):
    record = copy.deepcopy(REAL)
    for _ in range(data.draw(st.integers(1, 4))):
        target = data.draw(st.sampled_from(record))
        path = [target]
        node = target
        while isinstance(node, dict) and node and data.draw(st.booleans()):
            key = data.draw(st.sampled_from(sorted(node)))
            path.append((node, key))
            node = node[key]
            if isinstance(node, list) and node:
                node = node[0]
        if len(path) > 1:
            parent, key = path[-1]
            parent[key] = data.draw(json_values)
    _evaluate_all_hooks(terminology, record, [data.draw(st.sampled_from(record))])


@SETTINGS
@given(st.integers(min_value=0, max_value=10_000))
def test_truncated_json_never_raises(terminology, cut):
    body = orjson.dumps(F.hook_request("order-sign", REAL, drafts=[REAL[5]]))
    truncated = body[: cut % (len(body) + 1)]
    flat, warnings = flatten(truncated)
    parsed = read_input(truncated)
    assert flat or warnings or truncated.strip() in (b"",)
    _evaluate_all_hooks(terminology, flat + parsed.resources, parsed.draft_orders)


@SETTINGS
@given(st.data())
def test_any_number_in_any_lab_value_never_raises(terminology, data):
    # A value orjson cannot write as an int64 once made whole (1e30) once broke the facts fingerprint.
    record = copy.deepcopy(REAL)
    number = data.draw(
        st.one_of(
            st.integers(min_value=-(2**80), max_value=2**80),
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from([1e30, -1e30, 2**63, 1e308, 5e-324]),
        )
    )
    for lab in (r for r in record if r["resourceType"] == "Observation"):
        lab["valueQuantity"]["value"] = number
    a = _evaluate_all_hooks(terminology, record)
    assert a.fingerprint
