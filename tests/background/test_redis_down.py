"""Redis gone while the API runs: hooks still answer (live), order-sign's trigger fails quietly, and a
notification is answered 503 so the FHIR server delivers it again (no patient silently dropped)."""

from __future__ import annotations

import time

import pytest
import requests

from tests.api import data
from tests.support.cds_server import start_cds_server
from tests.support.fhir_server import stop_process, transaction
from tests.support.redis_server import start_redis

pytestmark = pytest.mark.slow
SECRET = "down-secret"


def test_hooks_answer_and_notifications_ask_for_redelivery(tmp_path, fhir_server, servers_file):
    broker = start_redis(tmp_path / "redis")
    server = start_cds_server(
        tmp_path / "cds",
        env={
            "REDIS_URL": broker.url,
            "RLS_SUBSCRIPTION_SECRET": SECRET,
            "RLS_FHIR_SERVERS_FILE": str(servers_file),
            "RLS_HOOK_DEADLINE_SECONDS": "3",
        },
    )
    try:
        pid = "down-1"
        record = data.patient_record(pid, 30)
        fhir_server.load_bundle(transaction(record))
        services = {s["hook"]: s for s in server.get("/cds-services").json()["services"]}
        broker.stop()

        pv = services["patient-view"]
        body = data.hook_request("patient-view", pid, None, fhir_server.base_url, fhir_server.token)
        started = time.monotonic()
        view = server.post(f"/cds-services/{pv['id']}", body)
        took = time.monotonic() - started
        assert view.status_code == 200
        assert took < 3.0, f"a dead Redis must not hold the hook up ({took:.2f} s)"
        cards = view.json()["cards"]
        assert cards and not any("stored assessment" in c["detail"] for c in cards)  # live evaluation

        sign = services["order-sign"]
        drafts = [data.sertraline_order(pid, status="draft", oid=f"{pid}-d")]
        order = data.hook_request(
            "order-sign", pid, data.full_prefetch(record, sign), fhir_server.base_url, drafts=drafts
        )
        assert server.post(f"/cds-services/{sign['id']}", order).status_code == 200

        note = requests.post(
            f"{server.url}/fhir-subscriptions/notify",
            json=data.ferritin(pid, 20),
            headers={"X-Subscription-Secret": SECRET, "X-FHIR-Server": fhir_server.base_url},
            timeout=15,
        )
        assert note.status_code == 503 and note.json()["error"] == "store_unavailable"
        assert (
            server.post(
                "/operator/reevaluate", {"patientId": pid, "fhirServer": fhir_server.base_url}
            ).status_code
            == 503
        )
        assert server.get(f"/operator/assessments/{pid}").status_code == 503
        assert "Traceback" not in server.log_text()
    finally:
        stop_process(server.process)
        broker.stop()
