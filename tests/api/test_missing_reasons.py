"""What a card says when data could not be read: the reason the fetch really failed."""

from __future__ import annotations

import pytest

from rls_cds.api.prefetch import _describe, prefetch_failure


@pytest.mark.parametrize(
    ("reason", "said"),
    [
        ("timeout", "did not answer in time"),
        ("connection", "could not be reached"),
        ("http_401", "refused the access token"),
        ("http_500", "answered 500"),
        ("forbidden_destination", "not an allowed destination"),
        ("foreign_next_link", "another server"),
        ("too_many_pages", "more pages"),
        ("invalid_json", "could not be read"),
    ],
)
def test_each_fetch_failure_is_described_as_what_happened(reason, said):
    assert said in _describe(reason)


@pytest.mark.parametrize(
    ("value", "failure"),
    [
        (None, "absent"),
        ({"resourceType": "Bundle", "type": "searchset", "entry": []}, None),  # empty is data: no results
        ({"resourceType": "Patient", "id": "p1"}, None),
        ({"resourceType": "OperationOutcome", "issue": []}, "OperationOutcome"),
        ({"resourceType": "Bundle", "type": "searchset", "entry": "x"}, "'entry' is not a list"),
        ({"resourceType": "Bundle", "type": "searchset", "entry": {"resource": {}}}, "'entry' is not a list"),
        ("garbage", "not a FHIR resource"),
        (
            {
                "resourceType": "Bundle",
                "entry": [
                    {"resource": {"resourceType": "OperationOutcome", "issue": [{"severity": "warning"}]}}
                ],
            },
            None,  # a warning outcome beside the results (e.g. an ignored search parameter) is not a failure
        ),
    ],
)
def test_prefetch_failure(value, failure):
    got = prefetch_failure(value)
    assert got == failure if failure in (None, "absent") else failure in got
