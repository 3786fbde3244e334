"""Request limits with a valid token: body size, JSON depth, prefetch size, per-issuer rate limit."""

from __future__ import annotations

import json

import pytest

from tests.api import data
from tests.security.conftest import secure_env
from tests.security.helpers import GENERIC_401, call, patient_view_body
from tests.support.cds_server import start_cds_server
from tests.support.fhir_server import stop_process

pytestmark = pytest.mark.slow


def test_oversized_body_413(secure, service_ids, jwt_keys):
    pv = service_ids["patient-view"]
    body = patient_view_body(pv)
    body["padding"] = "x" * (300 * 1024)
    resp = call(secure, pv["id"], body, jwt_keys.mint())
    assert resp.status_code == 413 and resp.json()["error"] == "payload_too_large"


def test_oversized_body_without_token_is_401_first(secure, service_ids):
    pv = service_ids["patient-view"]
    body = {"padding": "x" * (300 * 1024)}
    resp = call(secure, pv["id"], body, None)
    assert resp.status_code == 401 and resp.json() == GENERIC_401


def test_deeply_nested_body_400(secure, service_ids, jwt_keys):
    pv = service_ids["patient-view"]
    body = patient_view_body(pv)
    nested: dict = {}
    for _ in range(200):
        nested = {"a": nested}
    body["context"]["extra"] = nested
    resp = call(secure, pv["id"], body, jwt_keys.mint())
    assert resp.status_code == 400 and resp.json()["error"] == "json_too_deep"


def test_too_many_prefetch_resources_413(secure, service_ids, jwt_keys):
    pv = service_ids["patient-view"]
    pid = "p-many"
    many = [data.ferritin(pid, 50, suffix=str(i)) for i in range(250)]
    body = data.hook_request("patient-view", pid, prefetch={"observations1": data.searchset(many)})
    resp = call(secure, pv["id"], body, jwt_keys.mint())
    assert resp.status_code == 413 and resp.json()["error"] == "too_many_resources"


def test_rate_limit_per_issuer_429(tmp_path, service_ids, jwt_keys, security_redis, secure, fhir_allowed):
    """Own issuer (the count is shared in Redis per issuer) on a server limited to 3 calls a minute."""
    limited_iss = "https://ehr-limited.test.example"
    env = secure_env(jwt_keys, security_redis.url, [fhir_allowed.base_url], RLS_RATE_LIMIT_PER_MINUTE="3")
    doc = json.loads(env["RLS_TRUSTED_ISSUERS_JSON"])
    doc["issuers"][0]["iss"] = limited_iss
    env["RLS_TRUSTED_ISSUERS_JSON"] = json.dumps(doc)
    server = start_cds_server(tmp_path / "limited", env=env, dev=False)
    pv = service_ids["patient-view"]
    try:
        # 8 calls: even if a minute boundary falls inside, one window sees at least 4.
        statuses = []
        for _ in range(8):
            resp = call(server, pv["id"], patient_view_body(pv), jwt_keys.mint(iss=limited_iss))
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                assert int(resp.headers["Retry-After"]) >= 1
                assert resp.json()["error"] == "rate_limited"
        assert statuses[0] == 200 and 429 in statuses and set(statuses) <= {200, 429}
    finally:
        stop_process(server.process)
