"""Panel API on the running service: run status/report JSON, CSV, and the HTML worklist page loaded by
headless Chromium (rows, filters, screenshot); unauthenticated callers get 401."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess

import pytest
import yaml
from fastapi.testclient import TestClient

from rls_cds.panels import local
from rls_cds.settings import Settings
from tests.panels.conftest import write_export
from tests.support.cds_server import start_cds_server
from tests.support.fhir_server import stop_process

pytestmark = pytest.mark.slow


def _chromium(*args: str, tmp) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed: run scripts/install-system-deps.sh")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'chromium-profile'}",
    ]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def served(tmp_path_factory, panel_redis, terminology):
    work = tmp_path_factory.mktemp("panel-api")
    settings = Settings(reports_dir=work / "reports")
    first, second = work / "first", work / "second"
    write_export(first, 25, seed=9)
    write_export(second, 35, seed=9)  # the same 25 patients and 10 more
    one = local.run_ndjson([str(first)], 1, settings, panel_redis.url, terminology, "clinic-local")
    two = local.run_ndjson([str(second)], 1, settings, panel_redis.url, terminology, "clinic-local")
    panels = {"panels": {"clinic": {"fhir_server": "https://fhir.example.org/r4", "group": "g1"}}}
    (work / "panels.yaml").write_text(yaml.safe_dump(panels))
    server = start_cds_server(
        work / "server", env={"REDIS_URL": panel_redis.url, "RLS_PANELS_FILE": str(work / "panels.yaml")}
    )
    yield server, one, two, work
    stop_process(server.process)


def test_status_report_and_csv_over_http(served):
    server, one, two, _ = served
    body = server.get(f"/panels/clinic-local/runs/{two['run']}").json()
    assert body["status"] == "succeeded" and body["report"]["previous_run"] == one["run"]
    assert body["report"]["counts"]["patients_assessed"] == 35
    new_patients = {r["patient"] for r in two["worklist"] if r["new"]}
    assert new_patients and all(int(p.rsplit("-", 1)[1]) >= 25 for p in new_patients)
    resp = server.get(f"/panels/clinic-local/runs/{two['run']}/worklist.csv")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert {r["patient"] for r in rows} == {r["patient"] for r in two["worklist"]}
    assert server.get(f"/panels/other/runs/{two['run']}").status_code == 404
    assert server.get("/panels/clinic-local/runs/bad%20id").status_code == 400
    page = server.get(f"/panels/clinic-local/runs/{two['run']}/view")
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no scripts
    assert page.headers["cache-control"] == "no-store"
    listing = server.get("/panels").json()["panels"]
    assert [p["id"] for p in listing] == ["clinic"]


def test_worklist_page_in_headless_chromium(served, tmp_path):
    server, _one, two, _ = served
    url = f"{server.url}/panels/clinic-local/runs/{two['run']}/view"
    dom = _chromium("--dump-dom", url, tmp=tmp_path).stdout
    expected_rows = sum(len(r["findings"]) for r in two["worklist"])
    assert dom.count('class="finding"') == expected_rows > 0
    assert 'id="history"' in dom  # the chart of recent runs
    positive = two["worklist"][0]
    assert f'data-patient="{positive["patient"]}"' in dom
    negatives = {f"synth-9-{i}" for i in range(35)} - {r["patient"] for r in two["worklist"]}
    assert negatives and not any(f'data-patient="{p}"' in dom for p in negatives)
    new_only = _chromium("--dump-dom", url + "?new=1", tmp=tmp_path).stdout
    new_rows = [r for r in two["worklist"] if r["new"]]
    new_findings = sum(1 for r in new_rows for f in r["findings"] if f["cause"] in r["new_causes"])
    assert new_only.count('<td class="new">new</td>') == new_findings > 0
    assert not any(f'data-patient="{r["patient"]}"' in new_only for r in two["worklist"] if not r["new"])
    shot = tmp_path / "worklist.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,1600", url, tmp=tmp_path)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000


def test_panel_endpoints_require_authentication(tmp_path):
    app = TestClient(create_app_without_dev(tmp_path))
    for method, path in (("GET", "/panels"), ("POST", "/panels/x/runs"), ("GET", "/panels/x/runs/y/view")):
        resp = app.request(method, path)
        assert resp.status_code == 401, (path, resp.text)


def create_app_without_dev(tmp_path):
    from rls_cds.api.app import create_app

    issuers = {
        "issuers": [{"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/jwks.json"}]
    }
    return create_app(
        Settings(dev_mode=False, reports_dir=tmp_path, trusted_issuers_json=json.dumps(issuers))
    )


def test_redis_down_is_503_not_500(tmp_path):
    from rls_cds.api.app import create_app
    from tests.support.fhir_server import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    panels = tmp_path / "panels.yaml"
    panels.write_text(
        yaml.safe_dump({"panels": {"p": {"fhir_server": "https://f.example.org", "group": "g"}}})
    )
    app = TestClient(create_app(Settings(dev_mode=True, redis_url=dead, panels_file=panels)))
    for method, path in (("GET", "/panels/p/runs/r1"), ("POST", "/panels/p/runs"), ("GET", "/panels")):
        resp = app.request(method, path)
        assert resp.status_code == 503, (path, resp.status_code, resp.text)
        assert resp.json()["error"] == "store_unavailable"
