"""Per-patient searches against a server that answers 200 with JSON that is not a resource: the
patient goes to the error report and the run ends. A scripted loopback server, a real Redis, a real
`rls-cds worker` and `panel run --wait`."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.panel_runs import run_panel_once
from tests.support.scripted_http import ScriptedHandler, serving

pytestmark = pytest.mark.slow


class Handler(ScriptedHandler):
    def do_GET(self):
        url = urlsplit(self.path)
        if url.path.endswith("/Group/versioned"):
            refs = [
                "Patient/g1/_history/2",
                "https://ehr.example/fhir/Patient/g2",
                "Patient/g1",
                "Practitioner/d1",
            ]
            return self._json(
                {"resourceType": "Group", "member": [{"entity": {"reference": r}} for r in refs]}
            )
        if "/Patient/" in url.path:
            return self._json({"resourceType": "Patient", "id": url.path.rsplit("/", 1)[1]})
        if parse_qs(url.query).get("patient") == ["odd-b"] and url.path.endswith("/Observation"):
            return self._json([])  # a gateway's idea of "no results"
        if parse_qs(url.query).get("patient") == ["odd-c"] and url.path.endswith("/Condition"):
            return self._json({"resourceType": "Bundle", "type": "searchset", "entry": 5})
        return self._json({"resourceType": "Bundle", "type": "searchset", "entry": []})


@pytest.fixture
def odd_server():
    with serving(Handler) as base:
        yield base


def test_a_search_answered_with_a_json_array_is_a_patient_error_not_an_endless_task(tmp_path, odd_server):
    # bundle.get(...) on a list raised AttributeError: the unit failed on every redelivery, for ever.
    # A Bundle whose 'entry' is a number failed the same way one level down.
    panel = {"fhir_server": odd_server, "patients": ["odd-a", "odd-b", "odd-c"], "strategy": "search"}
    report, out = run_panel_once(tmp_path, "odd", panel)
    assert "did not finish" not in out.stderr, out.stderr[-2000:]
    assert report["status"] == "completed_with_errors"
    assert report["counts"]["patients_assessed"] == 1
    reasons = {e["patient"]: e["reason"] for e in report["errors"]}
    assert set(reasons) == {"odd-b", "odd-c"}
    assert "not a FHIR resource" in reasons["odd-b"] and "entry or link is not a list" in reasons["odd-c"]


def test_group_members_are_read_as_the_core_reads_references(odd_server):
    # 'Patient/g1/_history/2' was member "2": g1 counted as outside the panel, "2" reported missing.
    import requests

    from rls_cds.panels.search import group_members

    with requests.Session() as session:
        assert group_members(session, odd_server, "versioned", 5.0) == ["g1", "g2"]
