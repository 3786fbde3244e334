"""rls_cds.fhir.client against the real FHIR server (and the fault proxy in front of it)."""

from __future__ import annotations

import time
import uuid

from rls_cds.fhir.client import fetch_queries
from tests.api import data
from tests.support.fhir_server import transaction
from tests.support.scripted_http import ScriptedHandler, serving


def _deadline(seconds: float) -> float:
    return time.monotonic() + seconds


def test_paging_follows_next_links(fhir_server):
    pid = f"page-{uuid.uuid4().hex[:8]}"
    obs = [data.ferritin(pid, 20 + i, days_ago=i + 1, suffix=str(i)) for i in range(7)]
    fhir_server.load_bundle(transaction([data.patient(pid), *obs]))
    result = fetch_queries(
        fhir_server.base_url,
        {"labs": f"Observation?patient={pid}&_count=2", "patient": f"Patient/{pid}"},
        fhir_server.token,
        _deadline(5),
        2.0,
    )
    assert result.failed == {}
    assert sorted(r["id"] for r in result.bundles["labs"]) == sorted(o["id"] for o in obs)
    assert result.bundles["patient"][0]["id"] == pid


def test_bad_token_is_reported_not_raised(fhir_server):
    result = fetch_queries(fhir_server.base_url, {"c": "Condition?patient=x"}, "wrong", _deadline(5), 2.0)
    assert result.failed == {"c": "http_401"}


def test_hanging_server_is_abandoned_at_the_deadline(fhir_server, fault_proxy):
    fault_proxy.set_mode("hang")
    start = time.monotonic()
    result = fetch_queries(
        fault_proxy.base_url,
        {"a": "Condition?patient=x", "b": "Observation?patient=x"},
        fhir_server.token,
        _deadline(0.6),
        5.0,
    )
    assert time.monotonic() - start < 0.9
    assert set(result.failed) == {"a", "b"}


def test_refused_connection_is_reported(fhir_server, fault_proxy):
    fault_proxy.set_mode("refuse")
    result = fetch_queries(
        fault_proxy.base_url, {"a": "Condition?patient=x"}, fhir_server.token, _deadline(2), 1.0
    )
    assert result.failed == {"a": "connection"}


def test_next_link_to_another_host_is_not_followed(fhir_server, fault_proxy):
    # Through the proxy, sekmet's next links are rewritten to the proxy; called directly at the proxy's
    # base while the links name sekmet's own origin would be foreign. Use the direct server with a
    # base URL spelled differently (localhost vs 127.0.0.1): same machine, different origin.
    pid = f"fl-{uuid.uuid4().hex[:8]}"
    obs = [data.ferritin(pid, 30, suffix=str(i)) for i in range(3)]
    fhir_server.load_bundle(transaction(obs))
    other_origin = fhir_server.base_url.replace("127.0.0.1", "localhost")
    result = fetch_queries(
        other_origin, {"labs": f"Observation?patient={pid}&_count=1"}, fhir_server.token, _deadline(5), 2.0
    )
    assert result.failed == {"labs": "foreign_next_link"}


def test_redirects_are_not_followed(fhir_server, fault_proxy):
    fault_proxy.set_mode("redirect")
    result = fetch_queries(
        fault_proxy.base_url, {"a": "Condition?patient=x"}, fhir_server.token, _deadline(2), 1.0
    )
    assert result.failed == {"a": "http_302"}


class _Odd(ScriptedHandler):
    """A FHIR server answering searches with a Bundle whose 'entry' is a string, and a big Patient."""

    def do_GET(self):  # noqa: N802 - http.server's name
        if "/Patient/" in self.path:
            return self._json({"resourceType": "Patient", "id": "p1", "text": {"div": "x" * 5000}})
        return self._json({"resourceType": "Bundle", "type": "searchset", "entry": "unreadable"})


def test_an_unreadable_bundle_or_an_oversized_answer_is_a_failed_query(monkeypatch):
    from rls_cds.fhir import client

    monkeypatch.setattr(client, "MAX_PAGE_BYTES", 4096)  # the real cap is 64 MiB
    with serving(_Odd) as base:
        result = fetch_queries(
            base, {"labs": "Observation?patient=p1", "patient": "Patient/p1"}, None, _deadline(5), 2.0
        )
    # Read as "no results", the Bundle would have let a card claim "no ferritin in 12 months".
    assert result.failed == {"labs": "invalid_bundle", "patient": "too_large"}
    assert result.bundles == {}
