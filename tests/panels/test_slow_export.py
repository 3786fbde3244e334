"""A Bulk export that takes longer than a Celery task's time limit: the planner waits for it (up to
RLS_PANEL_EXPORT_TIMEOUT_SECONDS) instead of being cut off by the worker. A scripted loopback server
(sekmet finishes its exports at once), a real Redis, a real `rls-cds worker` and `panel run --wait`."""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import pytest

from tests.support.panel_runs import run_panel_once
from tests.support.scripted_http import ScriptedHandler, serving

pytestmark = pytest.mark.slow

EXPORT_SECONDS = 7.0  # longer than the worker's time limit below (5 s, soft limit 4 s)
PATIENTS = b'{"resourceType":"Patient","id":"slow-a"}\n{"resourceType":"Patient","id":"slow-b"}\n'


def _handler(started: list[float]):
    class Handler(ScriptedHandler):
        def do_DELETE(self):
            self._send(202)

        def do_GET(self):
            path = urlsplit(self.path).path
            base = f"http://{self.headers['Host']}/fhir"
            if path.endswith("/Group/slow"):
                members = [
                    {"entity": {"reference": "Patient/slow-a"}},
                    {"entity": {"reference": "Patient/slow-b"}},
                ]
                return self._send(200, json.dumps({"resourceType": "Group", "member": members}).encode())
            if path.endswith("/$export"):
                started.append(time.monotonic())
                return self._send(202, b"", {"Content-Location": f"{base}/status/1"})
            if path.endswith("/status/1"):
                if time.monotonic() - started[-1] < EXPORT_SECONDS:
                    return self._send(202, b"", {"Retry-After": "1", "X-Progress": "exporting"})
                manifest = {
                    "transactionTime": "2026-11-25T00:00:00Z",
                    "requiresAccessToken": False,
                    "output": [{"type": "Patient", "url": f"{base}/files/Patient.ndjson"}],
                    "error": [],
                }
                return self._send(200, json.dumps(manifest).encode(), {"Content-Type": "application/json"})
            if path.endswith("/files/Patient.ndjson"):
                return self._send(200, PATIENTS)
            return self._send(404)

    return Handler


@pytest.fixture
def slow_bulk_server():
    with serving(_handler([])) as base:
        yield base


def test_export_slower_than_the_task_time_limit_is_waited_for(tmp_path, slow_bulk_server):
    # The planner waits for the export up to RLS_PANEL_EXPORT_TIMEOUT_SECONDS (1 h) but ran under the
    # worker's task time limit (300 s): every export slower than 4 minutes failed the whole run.
    panel = {"fhir_server": slow_bulk_server, "group": "slow", "strategy": "bulk"}
    env = {"RLS_TASK_TIME_LIMIT_SECONDS": "5", "RLS_PANEL_EXPORT_TIMEOUT_SECONDS": "60"}
    report, out = run_panel_once(tmp_path, "slow", panel, env, timeout=60)
    assert report is not None, out.stderr[-2000:]
    assert report["status"] == "succeeded", report["run_errors"]
    assert report["counts"]["patients_assessed"] == report["counts"]["patients_expected"] == 2
