"""Triggers end to end: FHIR Subscription notifications delivered by sekmet-fhir, the backport
notification Bundle, the secret, coalescing, order-sign, the operator endpoint, and patient-view
answering from the stored assessment. Real `rls-cds serve`, workers, Redis and sekmet."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.api import data
from tests.background.conftest import worker_env
from tests.support.cds_server import start_cds_server
from tests.support.fhir_server import stop_process, transaction
from tests.support.redis_server import start_redis

pytestmark = pytest.mark.slow

SECRET = "s3cret-" + uuid.uuid4().hex
OTHER_SECRET = "other-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def stack(tmp_path_factory, servers_file):
    """A development-mode server (tenant 'dev') on its own Redis, accepting notifications."""
    work = tmp_path_factory.mktemp("bg-stack")
    broker = start_redis(work / "redis")
    server = start_cds_server(
        work / "cds",
        env={
            "REDIS_URL": broker.url,
            "RLS_SUBSCRIPTION_SECRET": f"{OTHER_SECRET},{SECRET}",  # one per Subscription
            "RLS_FHIR_SERVERS_FILE": str(servers_file),
            "RLS_TRIGGER_COALESCE_SECONDS": "30",
        },
    )
    yield server, broker
    stop_process(server.process)
    broker.stop()


def _notify(server, body=None, path="", secret=SECRET, method="POST", headers=None):
    hdrs = {"Content-Type": "application/fhir+json", **(headers or {})}
    if secret is not None:
        hdrs["X-Subscription-Secret"] = secret
    return requests.request(
        method,
        f"{server.url}/fhir-subscriptions/notify{path}",
        json=body,
        headers=hdrs,
        timeout=10,
    )


def _assessment(server, pid):
    resp = server.get(f"/operator/assessments/{pid}")
    return resp.json() if resp.status_code == 200 else None


def _wait_assessment(server, pid, predicate=lambda r: True, timeout=60):
    from tests.background.conftest import wait_for

    return wait_for(lambda: (r := _assessment(server, pid)) is not None and predicate(r) and r, timeout)


def _new_patient(fhir_server, ferritin=None) -> str:
    pid = f"sub-{uuid.uuid4().hex[:10]}"
    fhir_server.load_bundle(transaction(data.patient_record(pid, ferritin)))
    return pid


def _causes(record) -> set[str]:
    return {f["cause"] for f in record["findings"]}


def test_rest_hook_subscription_on_sekmet_leads_to_stored_assessment(
    stack, celery_workers, fhir_server, servers_file
):
    server, broker = stack
    celery_workers.start(broker.url, env=worker_env(servers_file))
    pid = _new_patient(fhir_server)  # RLS, no labs yet
    sub = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "rls-cds re-evaluation",
        "criteria": f"Observation?patient={pid}",
        "channel": {
            "type": "rest-hook",
            "endpoint": f"{server.url}/fhir-subscriptions/notify",
            "payload": "application/fhir+json",
            "header": [f"X-Subscription-Secret: {SECRET}", f"X-FHIR-Server: {fhir_server.base_url}"],
        },
    }
    created = requests.post(f"{fhir_server.base_url}/Subscription", json=sub, headers=fhir_server.headers())
    assert created.status_code == 201, created.text
    sub_id = created.json()["id"]
    try:
        assert fhir_server.search(f"Subscription/{sub_id}")["status"] == "active"
        obs = data.ferritin(pid, 18, days_ago=1, suffix="new")
        obs.pop("id")
        posted = requests.post(f"{fhir_server.base_url}/Observation", json=obs, headers=fhir_server.headers())
        assert posted.status_code == 201
        new_id = posted.json()["id"]

        record = _wait_assessment(server, pid, lambda r: "iron_deficiency" in _causes(r))
        assert record, "the notification did not lead to a stored assessment"
        assert record["reason"] == "subscription"
        iron = next(f for f in record["findings"] if f["cause"] == "iron_deficiency")
        assert any(e["resource"] == f"Observation/{new_id}" for e in iron["evidence"])
        assert "iron_deficiency" in record["changes"]["new"]
        assert "error" not in fhir_server.search(f"Subscription/{sub_id}"), "delivery failed"
    finally:
        requests.delete(f"{fhir_server.base_url}/Subscription/{sub_id}", headers=fhir_server.headers())


def test_wrong_or_missing_secret_is_401(stack):
    server, _ = stack
    body = data.ferritin("p-x", 20)
    assert _notify(server, body, secret="wrong").status_code == 401
    missing = _notify(server, body, secret=None)
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    assert _notify(server, body, secret=f"{OTHER_SECRET},{SECRET}").status_code == 401  # the list itself
    assert _notify(server, None, secret=OTHER_SECRET).status_code == 200  # any one configured secret


def test_malformed_notification_bodies_are_400_not_500(stack, fhir_server):
    """JSON objects of the wrong shape are the sender's mistake: a clear 400, never a 500."""
    server, _ = stack
    history = {"resourceType": "Bundle", "type": "history"}
    event = {"name": "type", "valueCode": "event-notification"}
    status = {"resourceType": "SubscriptionStatus", "type": "event-notification", "subscription": "S/1"}
    bodies = [
        {**history, "entry": 5},
        {"resourceType": "Bundle", "entry": 5},
        {**history, "entry": {"resource": {}}},
        {**history, "entry": [{"resource": {**status, "notificationEvent": [{"focus": "Observation/1"}]}}]},
        {**history, "entry": [{"resource": {"resourceType": "Parameters", "parameter": 5}}]},
        {
            **history,
            "entry": [
                {"resource": {"resourceType": "Parameters", "parameter": [event]}},
                {"resource": {"resourceType": "Observation", "id": [1]}},
            ],
        },
        {
            **history,
            "entry": [
                {
                    "resource": {
                        "resourceType": "Parameters",
                        "parameter": [event, {"name": "notification-event", "part": ["focus"]}],
                    }
                }
            ],
        },
    ]
    for body in bodies:
        resp = _notify(server, body, headers={"X-FHIR-Server": fhir_server.base_url})
        assert resp.status_code == 400, (body, resp.status_code, resp.text)
        assert resp.json()["error"] == "invalid_notification"


def _backport(base: str, ntype: str, patient_ref: str | None = None, focus: str | None = None) -> dict:
    params = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/abc"}},
        {"name": "topic", "valueCanonical": "http://example.org/topic/observation"},
        {"name": "status", "valueCode": "active"},
        {"name": "type", "valueCode": ntype},
    ]
    if ntype == "event-notification":
        parts = [{"name": "event-number", "valueString": "1"}]
        if focus:
            parts.append({"name": "focus", "valueReference": {"reference": f"{base}/{focus}"}})
        if patient_ref:
            parts.append(
                {"name": "additional-context", "valueReference": {"reference": f"{base}/{patient_ref}"}}
            )
        params.append({"name": "notification-event", "part": parts})
    return {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [{"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Parameters", "parameter": params}}],
    }


def test_duplicates_coalesce_and_backport_bundles_name_patients(
    stack, celery_workers, fhir_server, servers_file
):
    server, broker = stack
    base = fhir_server.base_url
    pid = _new_patient(fhir_server, ferritin=25)
    obs = data.ferritin(pid, 25)
    hdr = {"X-FHIR-Server": base}
    # No worker yet: the first notification queues, its duplicates coalesce into it.
    first = _notify(server, obs, path=f"/Observation/{obs['id']}", method="PUT", headers=hdr)
    assert first.status_code == 200 and first.json()["queued"] == 1, first.text
    again = _notify(server, obs, path=f"/Observation/{obs['id']}", method="PUT", headers=hdr)
    assert again.json() == {
        "notification": "rest-hook",
        "queued": 0,
        "coalesced": 1,
        "focus_queued": 0,
        "ignored": 0,
    }
    # The backport Bundle names the server through its subscription reference (no header needed).
    bp = _notify(server, _backport(base, "event-notification", f"Patient/{pid}", f"Observation/{obs['id']}"))
    assert bp.json()["coalesced"] == 1
    hs = _notify(server, _backport(base, "handshake"))
    assert hs.status_code == 200 and hs.json() == {"notification": "handshake", "queued": 0, "coalesced": 0}
    # R4B SubscriptionStatus form, a different patient.
    other = _new_patient(fhir_server, ferritin=300)
    r4b = {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [
            {
                "resource": {
                    "resourceType": "SubscriptionStatus",
                    "type": "event-notification",
                    "subscription": {"reference": f"{base}/Subscription/abc"},
                    "notificationEvent": [{"eventNumber": "2", "focus": {"reference": f"Patient/{other}"}}],
                }
            }
        ],
    }
    assert _notify(server, r4b).json()["queued"] == 1
    ping = _notify(server, None, headers=hdr)  # R4 empty rest-hook: a ping, nothing named
    assert ping.status_code == 200 and ping.json()["queued"] == 0

    celery_workers.start(broker.url, env=worker_env(servers_file))
    record = _wait_assessment(server, pid)
    assert record and record["revision"] == 1 and "iron_deficiency" in _causes(record)
    assert _wait_assessment(server, other)
    # Once the queued run has started, a new notification queues again (no change is ever missed).
    assert _notify(server, obs, headers=hdr).json()["queued"] == 1


def test_id_only_focus_is_read_from_the_fhir_server(stack, celery_workers, fhir_server, servers_file):
    server, broker = stack
    celery_workers.start(broker.url, env=worker_env(servers_file))
    pid = _new_patient(fhir_server, ferritin=40)
    resp = _notify(
        server, _backport(fhir_server.base_url, "event-notification", focus=f"Observation/{pid}-ferritin-1")
    )
    assert resp.json()["focus_queued"] == 1
    assert _wait_assessment(server, pid, lambda r: "iron_deficiency" in _causes(r))


def test_a_later_change_of_the_same_focus_resource_is_read_again(
    stack, celery_workers, fhir_server, servers_file
):
    """Id-only notifications about one resource coalesce only until the read they queued starts: the
    same Observation corrected seconds later (inside the coalescing window) is read again, not dropped."""
    server, broker = stack
    celery_workers.start(broker.url, env=worker_env(servers_file))
    pid = _new_patient(fhir_server, ferritin=300)
    note = _backport(fhir_server.base_url, "event-notification", focus=f"Observation/{pid}-ferritin-1")
    assert _notify(server, note).json()["focus_queued"] == 1
    first = _wait_assessment(server, pid)
    assert first and "iron_deficiency" not in _causes(first)

    fhir_server.load_bundle(transaction([data.ferritin(pid, 20)]))  # the same Observation, corrected
    again = _notify(server, note)
    assert again.status_code == 200 and again.json()["focus_queued"] == 1, again.json()
    assert _wait_assessment(server, pid, lambda r: "iron_deficiency" in _causes(r), timeout=30)


def test_unlisted_fhir_server_is_refused(stack):
    server, _ = stack
    resp = _notify(server, data.ferritin("p1", 20), headers={"X-FHIR-Server": "http://127.0.0.1:9/fhir"})
    assert resp.status_code == 403 and resp.json()["error"] == "fhir_server_not_allowed"


def test_order_sign_and_operator_trigger_reevaluation_and_patient_view_uses_it(
    stack, celery_workers, fhir_server, servers_file
):
    server, broker = stack
    celery_workers.start(broker.url, env=worker_env(servers_file))
    services = {s["hook"]: s for s in server.get("/cds-services").json()["services"]}
    pid = _new_patient(fhir_server, ferritin=30)
    svc = services["order-sign"]
    record = data.patient_record(pid, 30)
    body = data.hook_request(
        "order-sign",
        pid,
        data.full_prefetch(record, svc),
        fhir_server=fhir_server.base_url,
        token=fhir_server.token,
        drafts=[data.sertraline_order(pid, status="draft", oid=f"{pid}-draft")],
    )
    assert server.post(f"/cds-services/{svc['id']}", body).status_code == 200
    stored = _wait_assessment(server, pid)
    assert stored and stored["reason"] == "order-sign" and "iron_deficiency" in _causes(stored)

    queued = server.post("/operator/reevaluate", {"patientId": pid, "fhirServer": fhir_server.base_url})
    assert queued.status_code == 202 and queued.json()["taskId"]
    assert _wait_assessment(server, pid, lambda r: r["reason"] == "operator")

    pv = services["patient-view"]
    view = server.post(
        f"/cds-services/{pv['id']}", data.hook_request("patient-view", pid, None, fhir_server.base_url)
    )
    assert view.status_code == 200
    cards = view.json()["cards"]
    assert cards and all("Based on a stored assessment computed" in c["detail"] for c in cards)
    # EHRs nearly always prefetch the Patient: with it alone, the stored assessment still answers.
    only_patient = {"patient": {"resourceType": "Patient", "id": pid}}
    view = server.post(
        f"/cds-services/{pv['id']}",
        data.hook_request("patient-view", pid, only_patient, fhir_server.base_url),
    )
    assert all("Based on a stored assessment computed" in c["detail"] for c in view.json()["cards"])
    live = server.post(
        f"/cds-services/{pv['id']}", data.hook_request("patient-view", pid, data.full_prefetch(record, pv))
    )
    assert live.json()["cards"] and not any("stored assessment" in c["detail"] for c in live.json()["cards"])
    assert (
        server.post(
            "/operator/reevaluate", {"patientId": "bad id!", "fhirServer": fhir_server.base_url}
        ).status_code
        == 400
    )


def test_patient_view_does_not_answer_from_an_assessment_older_than_a_notified_change(
    stack, celery_workers, fhir_server, servers_file
):
    """A notification says the patient's data changed: until a re-evaluation has read the new data,
    patient-view evaluates live instead of showing the stored (now outdated) cards."""
    server, broker = stack
    worker = celery_workers.start(broker.url, env=worker_env(servers_file))
    pv = next(s for s in server.get("/cds-services").json()["services"] if s["hook"] == "patient-view")
    pid = _new_patient(fhir_server)  # RLS, no labs: 'order iron studies'
    assert server.post("/operator/reevaluate", {"patientId": pid, "fhirServer": fhir_server.base_url}).ok
    assert _wait_assessment(server, pid, lambda r: "iron_studies_missing" in _causes(r))

    def view() -> list[dict]:
        body = data.hook_request("patient-view", pid, None, fhir_server.base_url, fhir_server.token)
        return server.post(f"/cds-services/{pv['id']}", body).json()["cards"]

    assert all("stored assessment" in c["detail"] for c in view())
    worker.stop()  # the re-evaluation the notification queues waits in the queue
    fhir_server.load_bundle(transaction([data.ferritin(pid, 20, days_ago=1)]))
    note = _notify(
        server, data.ferritin(pid, 20, days_ago=1), headers={"X-FHIR-Server": fhir_server.base_url}
    )
    assert note.status_code == 200 and note.json()["queued"] == 1, note.text
    cards = view()
    assert not any("stored assessment" in c["detail"] for c in cards), "outdated stored cards were shown"
    assert "iron_deficiency" in {c["source"]["topic"]["code"] for c in cards}

    celery_workers.start(broker.url, env=worker_env(servers_file))  # the queued run lands: stored again
    assert _wait_assessment(server, pid, lambda r: "iron_deficiency" in _causes(r))
    cards = view()
    assert cards and all("stored assessment" in c["detail"] for c in cards)


def test_an_assessment_made_by_other_code_is_not_shown_and_is_recomputed(
    stack, celery_workers, fhir_server, servers_file
):
    """Same data and tables but another code version (an assessment stored before an upgrade, still
    'fresh'): patient-view evaluates live, and a re-run stores new findings instead of 'unchanged'."""
    import orjson

    from rls_cds.background.store import Store

    server, broker = stack
    celery_workers.start(broker.url, env=worker_env(servers_file))
    pv = next(s for s in server.get("/cds-services").json()["services"] if s["hook"] == "patient-view")
    pid = _new_patient(fhir_server)
    assert server.post("/operator/reevaluate", {"patientId": pid, "fhirServer": fhir_server.base_url}).ok
    assert _wait_assessment(server, pid)
    store = Store(broker.client())
    key = store.key("dev", "asmt", pid)
    record = orjson.loads(store.redis.get(key))
    store.redis.set(key, orjson.dumps({**record, "code_version": "0.0.9+previous-release"}))

    body = data.hook_request("patient-view", pid, None, fhir_server.base_url, fhir_server.token)
    cards = server.post(f"/cds-services/{pv['id']}", body).json()["cards"]
    assert cards and not any("stored assessment" in c["detail"] for c in cards)
    assert server.post("/operator/reevaluate", {"patientId": pid, "fhirServer": fhir_server.base_url}).ok
    again = _wait_assessment(server, pid, lambda r: r["revision"] == 2)
    assert again and again["code_version"] != "0.0.9+previous-release"


def test_patient_view_with_partial_prefetch_uses_what_the_ehr_sent_not_the_stored_assessment(
    stack, celery_workers, fhir_server, servers_file
):
    """The EHR prefetched the current medications (sertraline stopped) but not the rest: the stored
    assessment (sertraline active) must not answer over the data the EHR just sent."""
    server, broker = stack
    celery_workers.start(broker.url, env=worker_env(servers_file))
    pv = next(s for s in server.get("/cds-services").json()["services"] if s["hook"] == "patient-view")
    pid = f"sub-{uuid.uuid4().hex[:10]}"
    fhir_server.load_bundle(transaction(data.patient_record(pid, 30, active_sertraline=True)))
    assert server.post("/operator/reevaluate", {"patientId": pid, "fhirServer": fhir_server.base_url}).ok
    assert _wait_assessment(server, pid, lambda r: "drug_induced" in _causes(r))

    meds = next(k for k, t in pv["prefetch"].items() if t.startswith("MedicationRequest"))
    stopped = data.sertraline_order(pid, status="stopped")
    body = data.hook_request(
        "patient-view", pid, {meds: data.searchset([stopped])}, fhir_server.base_url, fhir_server.token
    )
    cards = server.post(f"/cds-services/{pv['id']}", body).json()["cards"]
    assert cards and not any("stored assessment" in c["detail"] for c in cards)
    assert "drug_induced" not in {c["source"]["topic"]["code"] for c in cards}


ST = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic"
BP = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"


def _observation_topic(url: str) -> dict:
    """A SubscriptionTopic for new Observations, as an R4 Basic (the backport IG's encoding)."""
    trigger = [
        {"url": "description", "valueMarkdown": "An Observation was created"},
        {"url": "resource", "valueUri": "http://hl7.org/fhir/StructureDefinition/Observation"},
        {"url": "supportedInteraction", "valueCode": "create"},
        {"url": "fhirPathCriteria", "valueString": "true"},
    ]
    return {
        "resourceType": "Basic",
        "id": "topic-rls-observation-" + uuid.uuid4().hex[:6],
        "modifierExtension": [{"url": f"{ST}.status", "valueCode": "active"}],
        "extension": [
            {"url": f"{ST}.url", "valueUri": url},
            {"url": f"{ST}.title", "valueString": "New Observation"},
            {"url": f"{ST}.resourceTrigger", "extension": trigger},
            {
                "url": f"{ST}.canFilterBy",
                "extension": [
                    {"url": "resource", "valueUri": "Observation"},
                    {"url": "filterParameter", "valueString": "patient"},
                ],
            },
        ],
        "code": {"coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]},
    }


def test_backport_topic_subscription_on_sekmet_leads_to_stored_assessment(
    stack, celery_workers, fhir_server, servers_file
):
    """R4 backport (topic-based) Subscription: sekmet's handshake is accepted, its id-only
    event-notification Bundle names the patient in additional-context, the re-evaluation lands."""
    server, broker = stack
    celery_workers.start(broker.url, env=worker_env(servers_file))
    pid = _new_patient(fhir_server)
    topic_url = f"http://rls-cds.test/SubscriptionTopic/observation-{uuid.uuid4().hex[:6]}"
    topic = _observation_topic(topic_url)
    put = requests.put(
        f"{fhir_server.base_url}/Basic/{topic['id']}", json=topic, headers=fhir_server.headers()
    )
    assert put.status_code in (200, 201), put.text
    sub = {
        "resourceType": "Subscription",
        "meta": {"profile": [f"{BP}/backport-subscription"]},
        "status": "requested",
        "reason": "rls-cds re-evaluation (backport)",
        "criteria": topic_url,
        "_criteria": {
            "extension": [
                {"url": f"{BP}/backport-filter-criteria", "valueString": f"Observation?patient={pid}"}
            ]
        },
        "channel": {
            "type": "rest-hook",
            "endpoint": f"{server.url}/fhir-subscriptions/notify",
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": f"{BP}/backport-payload-content", "valueCode": "id-only"}]},
            "header": [f"X-Subscription-Secret: {SECRET}"],
        },
    }
    created = requests.post(f"{fhir_server.base_url}/Subscription", json=sub, headers=fhir_server.headers())
    assert created.status_code == 201, created.text
    sub_id = created.json()["id"]
    try:
        from tests.background.conftest import wait_for

        assert wait_for(lambda: fhir_server.search(f"Subscription/{sub_id}")["status"] == "active", 20), (
            fhir_server.search(f"Subscription/{sub_id}")
        )
        obs = data.ferritin(pid, 22, days_ago=1, suffix="bp")
        obs.pop("id")
        posted = requests.post(f"{fhir_server.base_url}/Observation", json=obs, headers=fhir_server.headers())
        assert posted.status_code == 201
        record = _wait_assessment(server, pid, lambda r: "iron_deficiency" in _causes(r))
        assert record and record["reason"] == "subscription"
        assert fhir_server.search(f"Subscription/{sub_id}")["status"] == "active"
    finally:
        requests.delete(f"{fhir_server.base_url}/Subscription/{sub_id}", headers=fhir_server.headers())
