"""The Redis store against a real redis-server: round trip, diff, TTL, namespacing, CAS, locks."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from rls_cds.api.suppression import patient_key
from rls_cds.background.store import Store, diff_findings


def _finding(cause: str, code: str = "x") -> dict:
    return {"cause": cause, "summary": f"{cause} {code}", "evidence": [{"system": "s", "code": code}]}


def _record(findings: list[dict], fingerprint: str, read_at: float | None = None) -> dict:
    return {
        "findings": findings,
        "fingerprint": fingerprint,
        "table_version": "tv1",
        "read_at": time.time() if read_at is None else read_at,
        "fhir_server": "http://fhir.example/r4",
        "cards": [{"uuid": str(uuid.uuid4()), "summary": "s", "detail": "d", "indicator": "info"}],
    }


@pytest.fixture
def store(redis_server) -> Store:
    return Store(redis_server.client(), assessment_ttl_seconds=3600)


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def test_round_trip_and_diff(store, tenant):
    first = store.save_assessment(tenant, "p1", _record([_finding("iron_deficiency")], "fp1"))
    assert first["outcome"] == "stored" and first["revision"] == 1
    assert first["changes"] == {"new": ["iron_deficiency"], "resolved": [], "unchanged": []}

    second = store.save_assessment(
        tenant, "p1", _record([_finding("iron_deficiency"), _finding("drug_induced", "312941")], "fp2")
    )
    assert second["revision"] == 2
    assert second["changes"]["new"] == ["drug_induced|s|312941"]
    assert second["changes"]["unchanged"] == ["iron_deficiency"]
    assert second["changes"]["resolved"] == []

    third = store.save_assessment(tenant, "p1", _record([_finding("drug_induced", "312941")], "fp3"))
    assert third["changes"] == {
        "new": [],
        "resolved": ["iron_deficiency"],
        "unchanged": ["drug_induced|s|312941"],
    }
    got = store.get_assessment(tenant, "p1")
    assert got["fingerprint"] == "fp3" and got["revision"] == 3 and got["table_version"] == "tv1"
    assert got["computed_at"].endswith("Z")


def test_same_input_keeps_one_assessment_and_its_diff(store, tenant):
    store.save_assessment(tenant, "p2", _record([_finding("diabetes")], "fpA"))
    again = store.save_assessment(tenant, "p2", _record([_finding("diabetes")], "fpA"))
    assert again["outcome"] == "unchanged" and again["revision"] == 1
    assert again["changes"]["new"] == ["diabetes"], "a rerun on the same data must not erase what changed"


def test_older_data_never_overwrites_newer(store, tenant):
    now = time.time()
    store.save_assessment(tenant, "p3", _record([_finding("parkinsons")], "new", read_at=now))
    late = store.save_assessment(tenant, "p3", _record([], "old", read_at=now - 5))
    assert late["outcome"] == "stale"
    assert store.get_assessment(tenant, "p3")["fingerprint"] == "new"


def test_keys_are_tenant_namespaced_hashed_and_expire(store, tenant, redis_server):
    other = tenant + "-other"
    store.save_assessment(tenant, "patient-secret-id", _record([_finding("diabetes")], "f"))
    assert store.get_assessment(other, "patient-secret-id") is None
    keys = [k.decode() for k in redis_server.client().keys(f"rls:t:{tenant}:*")]
    assert keys == [f"rls:t:{tenant}:asmt:{patient_key(tenant, 'patient-secret-id')}"]
    assert "patient-secret-id" not in keys[0]
    ttl = redis_server.client().ttl(keys[0])
    assert 3500 < ttl <= 3600
    # A tenant string that could inject key separators is digested.
    assert ":" not in store.key("a:b", "asmt").split("rls:t:")[1].rsplit(":asmt", 1)[0]


def test_concurrent_writers_lose_no_update(store, tenant):
    """Many threads write with increasing read times; the stored one is the newest data read."""
    base = time.time()
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            store.save_assessment(tenant, "p4", _record([_finding(f"c{i}")], f"fp{i}", read_at=base + i))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.get_assessment(tenant, "p4")["fingerprint"] == "fp19"


def test_patient_lock_is_exclusive_and_released(store, tenant):
    with store.patient_lock(tenant, "p5", 10) as first:
        assert first
        with store.patient_lock(tenant, "p5", 10) as second:
            assert not second
    with store.patient_lock(tenant, "p5", 10) as again:
        assert again


def test_trigger_claims_coalesce_until_released(store, tenant):
    assert store.claim_trigger(tenant, "p6", 30)
    assert not store.claim_trigger(tenant, "p6", 30)
    store.release_trigger(tenant, "p6")
    assert store.claim_trigger(tenant, "p6", 30)


def test_fresh_cards_say_they_are_stored_and_respect_age_server_and_tables(store, tenant):
    store.save_assessment(tenant, "p7", _record([_finding("diabetes")], "f"))
    cards = store.fresh_cards(tenant, "p7", "http://fhir.example/r4/", 60, "tv1")
    assert cards and "stored assessment computed" in cards[0]["detail"]
    assert store.fresh_cards(tenant, "p7", "http://other.example/r4", 60, "tv1") is None
    assert store.fresh_cards(tenant, "p7", None, 60, "tv2") is None
    time.sleep(1.1)
    assert store.fresh_cards(tenant, "p7", None, 1, "tv1") is None


def test_diff_identity_drug_findings_by_drug():
    prev = [_finding("drug_induced", "a")]
    cur = [_finding("drug_induced", "a"), _finding("drug_induced", "b")]
    d = diff_findings(prev, cur)
    assert d["new"] == ["drug_induced|s|b"] and d["unchanged"] == ["drug_induced|s|a"]


def test_dead_letters_and_ping(store, tenant):
    assert store.ping()
    store.dead_letter(tenant, {"task": "x", "reason": "because"})
    assert store.dead_letters(tenant)[0]["reason"] == "because"
    down = Store(type(store.redis)(host="127.0.0.1", port=1, socket_timeout=0.2, socket_connect_timeout=0.2))
    assert down.ping() is False


def test_lock_owner_can_take_over_its_own_lock(store, tenant):
    """A task redelivered after its worker died holds the same task id: it may take the lock over."""
    with store.patient_lock(tenant, "p8", 60, owner="task-1") as first:
        assert first
        with store.patient_lock(tenant, "p8", 60, owner="task-2") as other:
            assert not other
    store.redis.set(store.key(tenant, "lock", "p8"), "task-1", px=60_000)  # left behind by a killed run
    with store.patient_lock(tenant, "p8", 60, owner="task-1") as again:
        assert again
    assert store.redis.get(store.key(tenant, "lock", "p8")) is None


def test_patient_digests_are_keyed_when_a_digest_key_is_set(store, tenant, monkeypatch):
    import hashlib
    import hmac

    from rls_cds.settings import get_settings

    plain = hashlib.sha256(f"patient\x1f{tenant}\x1fmrn-000123".encode()).hexdigest()[:32]
    assert patient_key(tenant, "mrn-000123") == plain  # without a key: recomputable by anyone
    monkeypatch.setenv("RLS_PATIENT_DIGEST_KEY", "k3y-from-the-vault")
    get_settings.cache_clear()
    try:
        keyed = patient_key(tenant, "mrn-000123")
        expected = hmac.new(b"k3y-from-the-vault", f"patient\x1f{tenant}\x1fmrn-000123".encode(), "sha256")
        assert keyed == expected.hexdigest()[:32] != plain
        # The store's keys follow: what a log line or a Redis key shows cannot be recomputed without it.
        store.save_assessment(tenant, "mrn-000123", _record([_finding("iron_deficiency")], "fp"))
        keys = {k.decode() for k in store.redis.scan_iter(f"rls:t:{tenant}:*")}
        assert any(k.endswith(keyed) for k in keys) and not any(plain in k for k in keys)
        assert store.get_assessment(tenant, "mrn-000123")["fingerprint"] == "fp"
    finally:
        monkeypatch.delenv("RLS_PATIENT_DIGEST_KEY")
        get_settings.cache_clear()


def test_change_markers_and_reads_use_redis_clock_not_the_machines(store, tenant, monkeypatch):
    # The API (marks a change) and a worker (stamps its read) run on different machines: with the API's
    # clock an hour fast, a re-evaluation read after the change looked older than it, and patient-view
    # refused the fresh assessment for an hour.
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    store.mark_changed(tenant, "p1")
    record = _record([_finding("iron_deficiency")], "fp", read_at=store.now())  # the worker's read, after
    store.save_assessment(tenant, "p1", record)
    cards = store.fresh_cards(tenant, "p1", "http://fhir.example/r4", 7200, "tv1")
    assert cards is not None and len(cards) == 1
    assert abs(store.now() - real()) < 5  # Redis's clock, not the patched one


def test_a_switch_between_dopamine_agonists_is_a_new_augmentation_finding():
    def aug(code: str) -> dict:
        return {
            "cause": "augmentation",
            "evidence": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code}],
        }

    changes = diff_findings([aug("859033")], [aug("312845")])  # pramipexole -> ropinirole
    assert len(changes["new"]) == 1 and len(changes["resolved"]) == 1 and not changes["unchanged"]
    assert diff_findings([aug("859033")], [aug("859033")])["unchanged"]
