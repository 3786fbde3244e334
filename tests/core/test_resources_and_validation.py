"""Input shapes (resources.flatten / read_input), evidence-only validation, strict mode."""

from __future__ import annotations

import orjson

from rls_cds.core.resources import flatten, read_input
from tests.core import fhir as F
from tests.core.conftest import causes, finding


def test_flatten_accepts_bundles_of_any_type_nested_lists_and_bytes():
    r1, r2, r3 = F.rls(rid="a"), F.ferritin(30, rid="b"), F.patient()
    nested = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": F.searchset([r2])}]}
    resources, warnings = flatten([F.searchset([r1]), nested, r3])
    assert [r["id"] for r in resources] == ["a", "b", "p1"] and warnings == []
    from_bytes, _ = flatten(orjson.dumps(F.searchset([r1])))
    assert from_bytes == [r1]


def test_flatten_reads_a_hook_request_by_resource_type_not_key_names():
    request = F.hook_request(
        "order-sign", [F.patient(), F.rls(rid="x")], drafts=[F.draft("312941", "sertraline")]
    )
    request["prefetch"] = {"whatever-the-ehr-calls-it": request["prefetch"]["conditions"], "p": F.patient()}
    resources, _ = flatten(request)
    kinds = sorted(r["resourceType"] for r in resources)
    assert kinds == ["Condition", "MedicationRequest", "Patient"]


def test_flatten_skips_junk_with_warnings_that_carry_no_contents():
    bundle = F.searchset([F.rls(rid="ok")])
    bundle["entry"] += [{"resource": "not a resource"}, 42, {"resource": {"no": "type"}}, {"fullUrl": "x"}]
    resources, warnings = flatten(bundle)
    assert [r["id"] for r in resources] == ["ok"]
    assert len(warnings) == 3 and not any("not a resource" in w for w in warnings)


def test_bundle_without_type_is_read_leniently_and_said_so():
    bundle = {"resourceType": "Bundle", "entry": [{"resource": F.rls(rid="r")}]}
    resources, warnings = flatten(bundle)
    assert resources and any("without 'type'" in w for w in warnings)


def test_invalid_json_bytes_are_a_warning():
    assert flatten(b"{not json") == ([], [flatten(b"{not json")[1][0]])
    assert "not valid JSON" in flatten(b"{not json")[1][0]


def test_read_input_splits_record_drafts_and_selections():
    drafts = [F.draft("312941", "sertraline", rid="d1"), F.draft("310430", "gabapentin", rid="d2")]
    request = F.hook_request("order-select", [F.patient(), F.rls()], drafts=drafts)
    request["context"]["selections"] = ["MedicationRequest/d2"]
    parsed = read_input(request)
    assert parsed.hook == "order-select" and parsed.patient_id == "p1"
    assert [d["id"] for d in parsed.draft_orders] == ["d2"]
    assert all(r["resourceType"] != "MedicationRequest" or r["status"] != "draft" for r in parsed.resources)


def test_invalid_evidence_resource_is_skipped_and_siblings_still_used(run):
    broken = F.ferritin(20, rid="broken")
    broken["effectiveDateTime"] = "31/12/2026"  # not a FHIR dateTime: fails R4 validation
    a = run([F.patient(), F.rls(), broken, F.ferritin(30, rid="fine", days=40)])
    f = finding(a, "iron_deficiency")
    assert f.evidence[0].resource == "Observation/fine"
    assert any(w.startswith("Observation/broken: failed FHIR R4 validation") for w in a.warnings)
    assert not any("31/12/2026" in w for w in a.warnings)


def test_non_matching_resources_are_not_validated_unless_strict(run):
    junk = {
        "resourceType": "Observation",
        "id": "junk",
        "status": "final",
        "code": {"text": "x"},
        "valueQuantity": {"value": "NaN"},
    }
    relaxed = run([F.patient(), F.rls(), F.ferritin(30), junk])
    assert not any("junk" in w for w in relaxed.warnings)
    strict = run([F.patient(), F.rls(), F.ferritin(30), junk], strict=True)
    assert any("Observation/junk" in w for w in strict.warnings)
    assert "iron_deficiency" in causes(strict)


def test_observation_value_as_string_with_comparator(run):
    obs = F.ferritin(0, rid="s")
    del obs["valueQuantity"]
    obs["valueString"] = "<10"
    f = finding(run([F.patient(), F.rls(), obs]), "iron_deficiency")
    assert f.data["ferritin"] == 10


def test_resources_without_ids_do_not_shadow_each_other(run):
    a, b = F.ferritin(150, days=100), F.ferritin(20, days=5)
    del a["id"], b["id"]
    assert finding(run([F.patient(), F.rls(), a, b]), "iron_deficiency").data["ferritin"] == 20


def test_missing_conditions_data_never_invents_rls(run):
    a = run([F.patient(), F.ferritin(20)], missing=frozenset({"Condition"}))
    assert not a.has_rls and a.missing == ["Condition"]


def test_validate_evidence_false_trusts_pretyped_batch_input(terminology):
    from rls_cds.core.engine import evaluate

    broken = F.ferritin(20, rid="broken")
    broken["effectiveDateTime"] = "2026-10-01T10:00:00"  # no timezone: invalid FHIR dateTime, readable date
    record = [F.patient(), F.rls(), broken]
    checked = evaluate(record, now=F.NOW, terminology=terminology)
    trusted = evaluate(record, now=F.NOW, terminology=terminology, validate_evidence=False)
    assert "iron_deficiency" not in causes(checked)
    assert finding(trusted, "iron_deficiency").evidence[0].resource == "Observation/broken"
    assert not trusted.warnings


def test_draft_orders_bundle_without_type_is_said_on_the_draft_card(run):
    from rls_cds.core.engine import evaluate, render_cards

    container = {"resourceType": "Bundle", "entry": [{"resource": F.draft("312941", "sertraline", rid="d")}]}
    drafts, draft_warnings = flatten(container)
    a = evaluate(
        [F.patient(), F.rls(), F.ferritin(150), F.tsat(30)],
        now=F.NOW,
        terminology=run.t,
        draft_orders=drafts,
        draft_warnings=draft_warnings,
    )
    assert any(w.startswith("context.draftOrders: Bundle without 'type'") for w in a.warnings)
    card = next(
        c for c in render_cards(a, hook="order-sign") if c["source"]["topic"]["code"] == "drug_induced"
    )
    assert "Bundle without 'type'" in card["detail"]


def test_analytes_read_match_the_rules_and_the_tables(terminology):
    """ANALYTES_READ gates which labs are converted at all: it must cover every analyte a rule names."""
    import re
    from pathlib import Path

    from rls_cds.core import rules

    table_analytes = {lab.analyte for lab in terminology.labs.values()}
    assert table_analytes >= rules.ANALYTES_READ
    source = "\n".join(p.read_text() for p in (Path(rules.__file__).parent / "causes").glob("*.py"))
    named = set(re.findall(r'"([a-z0-9_]+)"', source)) & table_analytes
    assert named <= rules.ANALYTES_READ, named - rules.ANALYTES_READ
    for analyte in rules.ANALYTES_READ:
        assert terminology.lab_codes_for({analyte}), analyte


def test_non_finite_values_from_python_callers_are_reported_not_raised(run):
    inf, nan = F.ferritin(1, rid="inf"), F.ferritin(1, rid="nan")
    inf["valueQuantity"]["value"] = float("inf")
    nan["valueQuantity"]["value"] = float("nan")
    a = run([F.patient(), F.rls(), inf, nan])
    assert "iron_deficiency" not in causes(a)
    assert sum("not a finite number" in w for w in a.warnings) == 2


def test_chain_of_invalid_evidence_never_reaches_a_finding(run):
    # Each newer ferritin is invalid; after every pass an older invalid one would take its place.
    labs = []
    for i in range(8):
        lab = F.ferritin(20 + i, rid=f"bad-{i}", days=10 + i)
        lab["status"] = "final"
        lab["issued"] = "not-a-date"  # invalid FHIR instant, readable otherwise
        labs.append(lab)
    a = run([F.patient(), F.rls(), *labs])
    assert "iron_deficiency" not in causes(a)
    assert all(e.resource.startswith("Condition/") for f in a.findings for e in f.evidence)
    assert any("withheld" in w for w in a.warnings)


def test_every_drug_class_a_rule_names_is_required_by_the_loader(terminology):
    """A class the rules read by name and the loader does not require could be renamed in the tables,
    switching its rule off without an error."""
    import re
    from pathlib import Path

    from rls_cds.core import rules
    from rls_cds.terminology.loader import CLASSES_READ
    from rls_cds.terminology.model import ROLES

    source = "\n".join(p.read_text() for p in (Path(rules.__file__).parent / "causes").glob("*.py"))
    # 'caffeine' and 'alcohol' are roles too, which is how the lifestyle rule reads them
    named = set(re.findall(r'"([a-z0-9_]+)"', source)) & set(terminology.drug_classes) - set(ROLES)
    assert named <= set(CLASSES_READ), named - set(CLASSES_READ)
