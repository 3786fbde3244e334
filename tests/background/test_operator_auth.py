"""Operator endpoints in production mode: a signed JWT from a trusted issuer is required, the
fhirServer must be allowed for that issuer, and the caller's tenant scopes what it can read."""

from __future__ import annotations

import json

import pytest
import requests

from tests.background.conftest import wait_for, worker_env
from tests.support.cds_server import start_cds_server
from tests.support.fhir_server import stop_process
from tests.support.redis_server import start_redis

pytestmark = pytest.mark.slow


def test_operator_endpoints_need_a_valid_token(
    tmp_path, jwt_keys, fhir_server, servers_file, bg_patients, celery_workers
):
    broker = start_redis(tmp_path / "redis")
    issuers = {"issuers": [jwt_keys.issuer_config(tenant="dev", fhir_servers=[fhir_server.base_url])]}
    server = start_cds_server(
        tmp_path / "cds",
        env={
            "REDIS_URL": broker.url,
            "RLS_PUBLIC_URL": jwt_keys.public_url,
            "RLS_TRUSTED_ISSUERS_JSON": json.dumps(issuers),
            "RLS_FHIR_SERVERS_FILE": str(servers_file),
        },
        dev=False,
    )
    try:
        pid = bg_patients["low_iron_ssri"]
        body = {"patientId": pid, "fhirServer": fhir_server.base_url}
        url = f"{server.url}/operator/reevaluate"
        assert requests.post(url, json=body, timeout=10).status_code == 401
        forged = jwt_keys.mint(key=jwt_keys.new_key("ES384").private_key)
        assert requests.post(url, json=body, headers={"Authorization": f"Bearer {forged}"}).status_code == 401

        def auth() -> dict:
            return {"Authorization": f"Bearer {jwt_keys.mint()}"}  # fresh jti each call

        other = {"patientId": pid, "fhirServer": "http://127.0.0.1:9/fhir"}
        refused = requests.post(url, json=other, headers=auth(), timeout=10)
        assert refused.status_code == 403 and refused.json()["error"] == "fhir_server_not_allowed"

        celery_workers.start(broker.url, env=worker_env(servers_file))
        assert requests.post(url, json=body, headers=auth(), timeout=10).status_code == 202
        get = f"{server.url}/operator/assessments/{pid}"
        assert requests.get(get, timeout=10).status_code == 401
        assert wait_for(lambda: requests.get(get, headers=auth(), timeout=10).status_code == 200, 60)
        record = requests.get(get, headers=auth(), timeout=10).json()
        assert record["reason"] == "operator" and record["age_seconds"] >= 0
    finally:
        stop_process(server.process)
        broker.stop()
