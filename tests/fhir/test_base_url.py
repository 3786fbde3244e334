"""One check for every FHIR base URL the service is handed (hooks, operator, subscriptions, tasks)."""

from __future__ import annotations

import pytest

from rls_cds.fhir.base_url import base_url_problem


@pytest.mark.parametrize(
    "url",
    [
        "https://ehr.example/fhir/R4",
        "http://127.0.0.1:8080/fhir",
        "http://[::1]:8080/fhir",
        "HTTPS://EHR/fhir/",
    ],
)
def test_plain_http_bases_pass(url):
    assert base_url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (None, "non-empty string"),
        ("", "non-empty string"),
        (42, "non-empty string"),
        ("http://[::1/fhir", "well-formed"),
        ("http://[zz]/", "well-formed"),
        ("http://h:99999/x", "well-formed"),
        ("http://h:port/x", "well-formed"),
        ("ftp://h/x", "http(s)"),
        ("http:///x", "http(s)"),
        ("/fhir", "http(s)"),
        ("http://u:p@h/fhir", "credentials"),
        ("http://h/fhir?x=1", "query or fragment"),
        ("http://h/fhir#x", "query or fragment"),
        ("http://h/fhir?", "query or fragment"),
        (" http://h/fhir", "whitespace"),
        ("http://h/fh ir", "whitespace"),
        ("http://h/fhir\n", "whitespace"),
    ],
)
def test_everything_else_is_refused_with_a_reason(url, why):
    assert why in base_url_problem(url)
