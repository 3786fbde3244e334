"""jti replay cache: Redis shared by replicas; when Redis is down the hooks still answer."""

from __future__ import annotations

import pytest

from rls_cds.security.replay import ReplayCache
from tests.security.conftest import secure_env
from tests.security.helpers import call, patient_view_body, rejection_reasons, wait_for_reason
from tests.support.cds_server import start_cds_server, start_redis
from tests.support.fhir_server import stop_process


def test_redis_set_nx_with_ttl(security_redis):
    import redis

    client = redis.Redis.from_url(security_redis.url)
    a, b = ReplayCache(client, 960), ReplayCache(client, 960)  # two replicas
    assert a.seen_before("iss", "jti-unit-1") is False
    assert b.seen_before("iss", "jti-unit-1") is True
    assert b.seen_before("other-iss", "jti-unit-1") is False  # ids are per issuer
    assert 950 <= client.ttl(ReplayCache.key("iss", "jti-unit-1")) <= 960


def test_local_cache_bounded_without_redis():
    cache = ReplayCache(None, 960, local_max=100)
    assert cache.seen_before("i", "x") is False and cache.seen_before("i", "x") is True
    for n in range(500):
        cache.seen_before("i", f"flood-{n}")
    assert len(cache._local) <= 100


@pytest.mark.slow
def test_redis_down_hooks_answer_and_replays_still_caught(tmp_path, jwt_keys, service_ids, fhir_allowed):
    redis_proc = start_redis(tmp_path / "redis")
    env = secure_env(jwt_keys, redis_proc.url, [fhir_allowed.base_url])
    server = start_cds_server(tmp_path / "api", env=env, dev=False)
    pv = service_ids["patient-view"]
    try:
        stop_process(redis_proc.process)
        token = jwt_keys.mint("ES384")
        assert call(server, pv["id"], patient_view_body(pv), token).status_code == 200
        before = len(rejection_reasons(server))
        assert call(server, pv["id"], patient_view_body(pv), token).status_code == 401
        wait_for_reason(server, before, "replayed_jti")
        assert call(server, pv["id"], patient_view_body(pv), jwt_keys.mint("RS384")).status_code == 200
    finally:
        stop_process(server.process)
        stop_process(redis_proc.process)
