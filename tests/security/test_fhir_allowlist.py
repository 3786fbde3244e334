"""fhirServer allowlist per issuer and outbound guards, proven with FHIR servers that count requests."""

from __future__ import annotations

import time

import pytest

from rls_cds.fhir.client import fetch_queries
from tests.api import data
from tests.security.helpers import call

pytestmark = pytest.mark.slow

FHIR_TOKEN = "fhir-access-token-for-allowed-server-only"


def _no_prefetch(pv: dict, pid: str, server: str) -> dict:
    return data.hook_request("patient-view", pid, fhir_server=server, token=FHIR_TOKEN)


def test_fhir_server_not_allowlisted_403_and_no_request(secure, service_ids, jwt_keys, fhir_forbidden):
    pv = service_ids["patient-view"]
    resp = call(secure, pv["id"], _no_prefetch(pv, "p-forbidden", fhir_forbidden.base_url), jwt_keys.mint())
    assert resp.status_code == 403
    assert resp.json()["error"] == "fhir_server_not_allowed"
    time.sleep(0.3)  # anything in flight would have arrived by now
    assert fhir_forbidden.total == 0


@pytest.mark.parametrize(
    "variant",
    [
        "{allowed}-evil",
        "{allowed}/../admin",
        "http://localhost:{port}/fhir",  # same server, another name: not what was allowlisted
        "https://127.0.0.1:{port}/fhir",
    ],
)
def test_lookalike_bases_refused(secure, service_ids, jwt_keys, fhir_allowed, variant):
    pv = service_ids["patient-view"]
    before = fhir_allowed.total
    url = variant.format(allowed=fhir_allowed.base_url, port=fhir_allowed.server.server_address[1])
    resp = call(secure, pv["id"], _no_prefetch(pv, "p-lookalike", url), jwt_keys.mint())
    assert resp.status_code == 403
    assert fhir_allowed.total == before


def test_allowlisted_server_gets_the_token_and_nobody_else(
    secure, service_ids, jwt_keys, fhir_allowed, fhir_forbidden
):
    pv = service_ids["patient-view"]
    before = fhir_allowed.total
    # Trailing slash and upper-case host are the same base.
    url = fhir_allowed.base_url.replace("http://", "HTTP://") + "/"
    resp = call(secure, pv["id"], _no_prefetch(pv, "p-allowed", url), jwt_keys.mint())
    assert resp.status_code == 200, resp.text
    assert fhir_allowed.total > before
    assert set(fhir_allowed.authorizations[before:]) == {f"Bearer {FHIR_TOKEN}"}
    assert fhir_forbidden.total == 0


def test_redirect_to_another_host_not_followed(secure, service_ids, jwt_keys, fhir_allowed, fhir_forbidden):
    pv = service_ids["patient-view"]
    port = fhir_forbidden.server.server_address[1]
    fhir_allowed.redirect_to = f"http://localhost:{port}"
    try:
        before = fhir_allowed.total
        resp = call(secure, pv["id"], _no_prefetch(pv, "p-redirect", fhir_allowed.base_url), jwt_keys.mint())
    finally:
        fhir_allowed.redirect_to = None
    assert resp.status_code == 200  # answers with what it has; the data it could not read are named
    assert fhir_allowed.total > before
    time.sleep(0.3)
    assert fhir_forbidden.total == 0


@pytest.mark.parametrize(
    "base",
    ["http://169.254.169.254/latest", "http://[fe80::1]/fhir", "http://metadata.google.internal/fhir"],
)
def test_client_refuses_link_local_and_metadata(base):
    result = fetch_queries(base, {"patient": "Patient/1"}, "tok", time.monotonic() + 2, 1.0)
    assert result.failed == {"patient": "forbidden_destination"}
