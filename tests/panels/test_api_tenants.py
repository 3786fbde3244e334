"""Tenant isolation of the panel API on a production-mode server (`rls-cds serve` without --dev).

Two trusted EHR issuers with different tenants, real signed JWTs: each sees, starts and reads only its
own tenant's panels and runs; another tenant's run answers exactly like a run that does not exist.
"""

from __future__ import annotations

import json

import pytest
import requests
import yaml

from rls_cds.panels import local
from rls_cds.settings import Settings
from tests.panels.conftest import write_export
from tests.support.cds_server import start_cds_server
from tests.support.fhir_server import stop_process
from tests.support.jwt_keys import PUBLIC_URL

pytestmark = pytest.mark.slow

ISSUER_B = "https://ehr-b.test.example"
SERVER_A = "https://fhir-a.example.org/r4"  # tenant hospital-a through the FHIR servers file


@pytest.fixture(scope="module")
def tenants(tmp_path_factory, panel_redis, terminology, jwt_keys):
    work = tmp_path_factory.mktemp("panel-tenants")
    export = work / "export"
    write_export(export, 12, seed=5)
    settings = Settings(reports_dir=work / "reports", redis_url=panel_redis.url)
    run_a = local.run_ndjson(
        [str(export)], 1, settings, panel_redis.url, terminology, "a-panel", "hospital-a"
    )
    # Newer, and without a tenant (a local run nobody claimed): visible to development callers only.
    untenanted = local.run_ndjson([str(export)], 1, settings, panel_redis.url, terminology, "a-panel")
    panels = {
        "panels": {
            "a-panel": {"fhir_server": SERVER_A, "group": "ga"},
            "b-panel": {
                "fhir_server": "https://fhir-b.example.org/r4",
                "group": "gb",
                "tenant": "hospital-b",
            },
        }
    }
    (work / "panels.yaml").write_text(yaml.safe_dump(panels))
    (work / "servers.yaml").write_text(yaml.safe_dump({"servers": {SERVER_A: {"tenant": "hospital-a"}}}))
    issuers = [
        jwt_keys.issuer_config(tenant="hospital-a"),
        jwt_keys.issuer_config(iss=ISSUER_B, tenant="hospital-b"),
    ]
    env = {
        "REDIS_URL": panel_redis.url,
        "RLS_PUBLIC_URL": PUBLIC_URL,
        "RLS_TRUSTED_ISSUERS_JSON": json.dumps({"issuers": issuers}),
        "RLS_PANELS_FILE": str(work / "panels.yaml"),
        "RLS_FHIR_SERVERS_FILE": str(work / "servers.yaml"),
    }
    server = start_cds_server(work / "server", env=env, dev=False)
    yield server, run_a, untenanted, jwt_keys
    stop_process(server.process)


def _get(server, keys, path: str, iss: str | None = None) -> requests.Response:
    token = keys.mint(iss=iss)  # a fresh jti per call: replay protection stays on
    return requests.get(server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _post(server, keys, path: str, iss: str | None = None) -> requests.Response:
    token = keys.mint(iss=iss)
    return requests.post(server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_tenant_reads_its_own_run(tenants):
    server, run_a, _, keys = tenants
    resp = _get(server, keys, f"/panels/a-panel/runs/{run_a['run']}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["tenant"] == "hospital-a" and body["report"]["counts"]["patients_assessed"] == 12
    assert {r["patient"] for r in body["report"]["worklist"]} == {r["patient"] for r in run_a["worklist"]}
    assert _get(server, keys, f"/panels/a-panel/runs/{run_a['run']}/worklist.csv").status_code == 200
    assert _get(server, keys, f"/panels/a-panel/runs/{run_a['run']}/view").status_code == 200


def test_another_tenant_gets_404_for_the_run_its_csv_and_its_page(tenants):
    server, run_a, _, keys = tenants
    missing = _get(server, keys, "/panels/a-panel/runs/20990101T000000Z-000000", iss=ISSUER_B)
    assert missing.status_code == 404
    for suffix in ("", "/worklist.csv", "/view"):
        resp = _get(server, keys, f"/panels/a-panel/runs/{run_a['run']}{suffix}", iss=ISSUER_B)
        assert resp.status_code == 404, (suffix, resp.text)
        assert resp.json()["error"] == missing.json()["error"] == "unknown_run"
        assert not any(r["patient"] in resp.text for r in run_a["worklist"])


def test_a_run_without_a_tenant_is_not_shown_to_any_tenant(tenants):
    server, _, untenanted, keys = tenants
    for iss in (None, ISSUER_B):
        assert _get(server, keys, f"/panels/a-panel/runs/{untenanted['run']}", iss=iss).status_code == 404


def test_panel_list_shows_only_the_callers_panels_and_runs(tenants):
    server, run_a, untenanted, keys = tenants
    mine = _get(server, keys, "/panels").json()["panels"]
    assert [p["id"] for p in mine] == ["a-panel"]
    # The newest run of the panel has no tenant: the latest run shown is the tenant's own.
    assert mine[0]["latest_run"]["run"] == run_a["run"] != untenanted["run"]
    theirs = _get(server, keys, "/panels", iss=ISSUER_B).json()["panels"]
    assert [p["id"] for p in theirs] == ["b-panel"] and theirs[0]["latest_run"] is None


def test_a_run_started_over_the_api_belongs_to_the_panels_tenant(tenants):
    server, _, _, keys = tenants
    foreign = _post(server, keys, "/panels/a-panel/runs", iss=ISSUER_B)
    unknown = _post(server, keys, "/panels/no-such-panel/runs", iss=ISSUER_B)
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["error"] == unknown.json()["error"] == "unknown_panel"
    started = _post(server, keys, "/panels/a-panel/runs")
    assert started.status_code == 202, started.text
    url = started.json()["status_url"]
    status = _get(server, keys, url)
    assert status.status_code == 200 and status.json()["tenant"] == "hospital-a"
    assert _get(server, keys, url, iss=ISSUER_B).status_code == 404
