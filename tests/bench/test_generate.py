"""The synthetic-patient generator: deterministic, valid FHIR R4, shaped like EHR data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import generate  # noqa: E402


def test_same_seed_same_patient_and_index_independent():
    a = generate.make_patient(7, "small", seed=3)
    b = generate.make_patient(7, "small", seed=3)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a != generate.make_patient(8, "small", seed=3)
    assert a != generate.make_patient(7, "small", seed=4)


def test_large_patient_sizes_and_every_resource_validates_as_r4():
    patient = generate.make_patient(0, "large", rls=True)
    assert [len(patient[k]) for k in ("Condition", "Observation", "MedicationRequest")] == [50, 500, 80]
    for res in generate.flat(patient):
        get_fhir_model_class(res["resourceType"]).model_validate(res)


def test_codes_look_like_ehr_data():
    resources = [r for i in range(40) for r in generate.flat(generate.make_patient(i, "large"))]
    systems = {
        c["system"] for r in resources if r["resourceType"] == "Condition" for c in r["code"]["coding"]
    }
    assert systems == {generate.ICD10, generate.SCT}
    units = {r["valueQuantity"]["unit"] for r in resources if r["resourceType"] == "Observation"}
    assert {"ng/mL", "µg/L", "mg/dL", "mmol/L", "mL/min/{1.73_m2}", "%"} <= units
    meds = [r for r in resources if r["resourceType"] == "MedicationRequest"]
    assert any("medicationReference" in m and m["contained"][0]["resourceType"] == "Medication" for m in meds)
    assert {m["status"] for m in meds} >= {"active", "stopped"}
    codes = {
        m["medicationCodeableConcept"]["coding"][0]["code"] for m in meds if "medicationCodeableConcept" in m
    }
    assert "312941" in codes  # sertraline 50 MG Oral Tablet (SCD), not the ingredient 36437
    assert {r["status"] for r in resources if r["resourceType"] == "Observation"} >= {"final", "preliminary"}


def test_rls_mix_in_population():
    rls = 0
    for i in range(200):
        conds = generate.make_patient(i, "small")["Condition"]
        rls += any(c["code"]["coding"][0]["code"] in ("G25.81", "32914008") for c in conds)
    assert 40 < rls < 130


def test_order_select_request_has_draft_orders_and_prefetch_split_by_query_codes():
    keys = {
        "patient": "Patient/{{context.patientId}}",
        "conditions": "Condition?patient={{context.patientId}}",
        "medications": "MedicationRequest?patient={{context.patientId}}",
        "observations1": "Observation?patient={{context.patientId}}&code=http://loinc.org|2276-4,http://loinc.org|718-7",
        "observations2": "Observation?patient={{context.patientId}}&code=http://loinc.org|4548-4",
    }
    req = generate.make_request("large", "order-select", prefetch_keys=keys)
    assert req["context"]["selections"] == ["MedicationRequest/draft-1"]
    draft = req["context"]["draftOrders"]["entry"][0]["resource"]
    assert draft["status"] == "draft"
    get_fhir_model_class("Bundle").model_validate(req["context"]["draftOrders"])
    obs1 = [e["resource"] for e in req["prefetch"]["observations1"]["entry"]]
    obs2 = [e["resource"] for e in req["prefetch"]["observations2"]["entry"]]
    assert obs1 and obs2
    assert {generate._loinc(o) for o in obs1} <= {"2276-4", "718-7"}
    assert {generate._loinc(o) for o in obs2} == {"4548-4"}
    assert req["prefetch"]["patient"]["id"] == req["context"]["patientId"]


def test_ndjson_streams_one_file_per_type_with_resolvable_medication_references(tmp_path):
    counts = generate.write_ndjson(tmp_path, 60, seed=2)
    assert set(counts) == {"Patient", "Condition", "Observation", "MedicationRequest", "Medication"}
    lines = {k: (tmp_path / f"{k}.ndjson").read_bytes().splitlines() for k in counts}
    assert {k: len(v) for k, v in lines.items()} == counts
    assert counts["Patient"] == 60 and counts["Medication"] > 0
    med_ids = {orjson.loads(line)["id"] for line in lines["Medication"]}
    refs = {
        m["medicationReference"]["reference"]
        for m in map(orjson.loads, lines["MedicationRequest"])
        if "medicationReference" in m
    }
    external = {r.split("/", 1)[1] for r in refs if r.startswith("Medication/")}
    assert external and external == med_ids
    assert any(r.startswith("#") for r in refs)  # the rest stay contained


@pytest.mark.parametrize(
    "cmd", [["request", "--size", "small", "--hook", "patient-view"], ["bundle", "--size", "small"]]
)
def test_cli_writes_json(tmp_path, cmd):
    out = tmp_path / "out.json"
    assert generate.main([*cmd, "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc.get("hook") == "patient-view" or doc.get("resourceType") == "Bundle"
