"""Bearer JWT verification against a real production-mode `rls-cds serve` (no --dev), real Redis,
real keys and a JWKS served over loopback. Every rejection answers the same generic 401; the
precise reason is only in the operator log."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives import serialization

from tests.security.helpers import (
    GENERIC_401,
    call,
    hs256_with_public_key,
    patient_view_body,
    rejection_reasons,
    unsigned_token,
    wait_for_reason,
)
from tests.support.jwt_keys import ALL_ALGS, PUBLIC_URL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pv(service_ids) -> dict:
    return service_ids["patient-view"]


def _claims(jwt_keys) -> dict:
    now = int(time.time())
    return {
        "iss": jwt_keys.issuer,
        "aud": jwt_keys.audience,
        "iat": now,
        "exp": now + 300,
        "jti": f"j{now}{id(now)}",
    }


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_every_asymmetric_alg_accepted(secure, pv, jwt_keys, alg):
    resp = call(secure, pv["id"], patient_view_body(pv), jwt_keys.mint(alg))
    assert resp.status_code == 200, resp.text
    assert isinstance(resp.json()["cards"], list)


@pytest.mark.parametrize(
    "aud",
    [f"{PUBLIC_URL}/cds-services", "{service_url}", ["https://other.example", "{service_url}"]],
    ids=["base", "service-url", "list"],
)
def test_audience_base_or_exact_service_url(secure, pv, jwt_keys, aud):
    service_url = f"{PUBLIC_URL}/cds-services/{pv['id']}"
    aud = (
        [a.format(service_url=service_url) for a in aud]
        if isinstance(aud, list)
        else aud.format(service_url=service_url)
    )
    assert call(secure, pv["id"], patient_view_body(pv), jwt_keys.mint("RS384", aud=aud)).status_code == 200


def _forged_es384(jwt_keys):
    impostor = jwt_keys.new_key("ES384")
    return jwt_keys.mint("ES384", key=impostor.private_key)  # kid of the real key, wrong signature


def _public_pem(jwt_keys) -> bytes:
    return (
        jwt_keys.keys["RS384"]
        .private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


REJECTIONS = {
    "forged-signature": (_forged_es384, "bad_signature"),
    "wrong-kid": (
        lambda k: k.mint("ES384", key=k.new_key("ES384").private_key, kid="no-such-kid"),
        "unknown_kid",
    ),
    "expired": (lambda k: k.mint("RS384", iat_offset=-1000, lifetime=300), "expired"),
    "future-iat": (lambda k: k.mint("RS384", iat_offset=600), "iat_in_future"),
    "nbf-in-future": (lambda k: k.mint("ES384", nbf_offset=600), "not_yet_valid"),
    "wrong-aud": (
        lambda k: k.mint("RS384", aud="https://another-service.example/cds-services"),
        "wrong_audience",
    ),
    "aud-other-service": (
        lambda k: k.mint("RS384", aud=f"{PUBLIC_URL}/cds-services/other-service"),
        "wrong_audience",
    ),
    "wrong-issuer": (lambda k: k.mint("RS384", iss="https://evil.example"), "unknown_issuer"),
    "alg-none": (lambda k: unsigned_token(_claims(k), "rsa-1"), "alg_not_allowed"),
    "hs256-public-key": (
        lambda k: hs256_with_public_key(_claims(k), "rsa-1", _public_pem(k)),
        "alg_not_allowed",
    ),
    "too-long-lifetime": (lambda k: k.mint("ES384", lifetime=3600), "lifetime_too_long"),
    "no-jti": (lambda k: k.mint("ES384", omit=("jti",)), "missing_claim_jti"),
    "no-exp": (lambda k: k.mint("ES384", omit=("exp",)), "missing_claim_exp"),
    "garbage": (lambda k: "not.a.jwt", "malformed"),
    # A jku that is not a string was looked up in the allowlist (a set): TypeError, answered 500.
    "jku-list": (lambda k: k.mint("ES384", headers={"jku": [k.jwks_url]}), "malformed"),
    "jku-object": (lambda k: k.mint("ES384", headers={"jku": {"url": k.jwks_url}}), "malformed"),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_rejected_with_generic_401(secure, pv, jwt_keys, case):
    make, reason = REJECTIONS[case]
    token = make(jwt_keys)
    before = len(rejection_reasons(secure))
    resp = call(secure, pv["id"], patient_view_body(pv), token)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert resp.json() == GENERIC_401
    wait_for_reason(secure, before, reason)
    assert token not in secure.log_text()


@pytest.mark.parametrize(
    ("auth", "reason"),
    [(None, "missing_token"), ("Basic dXNlcjpwYXNz", "not_bearer"), ("Bearer", "not_bearer")],
)
def test_missing_or_non_bearer_credentials(secure, pv, auth, reason):
    before = len(rejection_reasons(secure))
    resp = call(secure, pv["id"], patient_view_body(pv), None, raw_auth=auth)
    assert resp.status_code == 401 and resp.json() == GENERIC_401
    wait_for_reason(secure, before, reason)


def test_unknown_kid_refreshes_jwks_at_most_once(secure, pv, jwt_keys):
    call(secure, pv["id"], patient_view_body(pv), jwt_keys.mint("ES384"))  # JWKS cached
    before = jwt_keys.hits(jwt_keys.jwks_path)
    for i in range(3):
        forged = jwt_keys.mint("ES384", key=jwt_keys.new_key("ES384").private_key, kid=f"rotated-{i}")
        assert call(secure, pv["id"], patient_view_body(pv), forged).status_code == 401
    assert jwt_keys.hits(jwt_keys.jwks_path) - before <= 1  # rate-limited refresh


def test_key_rotation_picked_up_by_one_refresh(tmp_path, pv, jwt_keys, secure_env_vars):
    """A new kid published at the JWKS URL is accepted after one refresh (own server: own refresh window)."""
    from tests.support.cds_server import start_cds_server
    from tests.support.fhir_server import stop_process

    fetched_before = jwt_keys.hits(jwt_keys.jwks_path)
    server = start_cds_server(tmp_path / "rot", env=secure_env_vars, dev=False)
    try:
        # The key set is fetched at start-up (pre-warm), before any call needs it.
        deadline = time.monotonic() + 3
        while jwt_keys.hits(jwt_keys.jwks_path) == fetched_before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert jwt_keys.hits(jwt_keys.jwks_path) > fetched_before
        assert call(server, pv["id"], patient_view_body(pv), jwt_keys.mint("ES384")).status_code == 200
        rotated = jwt_keys.new_key("ES384", kid="rotated-new")
        jwt_keys.publish(rotated)
        token = jwt_keys.mint("ES384", key=rotated.private_key, kid="rotated-new")
        assert call(server, pv["id"], patient_view_body(pv), token).status_code == 200
    finally:
        stop_process(server.process)


def test_jku_not_allowlisted_is_never_fetched(secure, pv, jwt_keys):
    evil_path = "/attacker/jwks.json"
    attacker = jwt_keys.new_key("ES384", kid="attacker")
    evil_url = jwt_keys.serve(evil_path, {"keys": [attacker.public_jwk]})
    token = jwt_keys.mint("ES384", key=attacker.private_key, kid="attacker", jku=evil_url)
    before = len(rejection_reasons(secure))
    resp = call(secure, pv["id"], patient_view_body(pv), token)
    assert resp.status_code == 401 and resp.json() == GENERIC_401
    wait_for_reason(secure, before, "jku_not_allowed")
    assert jwt_keys.hits(evil_path) == 0


def test_allowlisted_jku_is_used(secure, pv, jwt_keys, jku_key):
    from tests.security.conftest import JKU_PATH

    token = jwt_keys.mint("ES384", key=jku_key.private_key, kid=jku_key.kid, jku=jwt_keys.url(JKU_PATH))
    assert call(secure, pv["id"], patient_view_body(pv), token).status_code == 200
    assert jwt_keys.hits(JKU_PATH) >= 1


def test_replayed_jti_rejected(secure, pv, jwt_keys):
    token = jwt_keys.mint("ES384")
    assert call(secure, pv["id"], patient_view_body(pv), token).status_code == 200
    before = len(rejection_reasons(secure))
    resp = call(secure, pv["id"], patient_view_body(pv), token)
    assert resp.status_code == 401 and resp.json() == GENERIC_401
    wait_for_reason(secure, before, "replayed_jti")
    # Same jti in a fresh token (new signature) is a replay too.
    jti = "fixed-jti-" + str(time.time())
    assert call(secure, pv["id"], patient_view_body(pv), jwt_keys.mint("RS384", jti=jti)).status_code == 200
    assert call(secure, pv["id"], patient_view_body(pv), jwt_keys.mint("RS384", jti=jti)).status_code == 401


def test_replay_across_replicas_sharing_redis(secure, secure_replica, pv, jwt_keys, security_redis):
    import redis

    token = jwt_keys.mint("ES384")
    assert call(secure, pv["id"], patient_view_body(pv), token).status_code == 200
    before = len(rejection_reasons(secure_replica))
    assert call(secure_replica, pv["id"], patient_view_body(pv), token).status_code == 401
    wait_for_reason(secure_replica, before, "replayed_jti")
    # The id is kept in Redis at least as long as the longest accepted token lifetime (900 s).
    client = redis.Redis.from_url(security_redis.url)
    ttls = [client.ttl(k) for k in client.scan_iter("rls:jti:*")]
    assert ttls and min(ttls) >= 900 - 5


def test_feedback_requires_token(secure, pv, jwt_keys):
    feedback = {
        "feedback": [
            {
                "card": "7f6b1f7c-1c84-4f1b-9f0a-1b2c3d4e5f60",
                "outcome": "accepted",
                "outcomeTimestamp": "2026-01-01T00:00:00Z",
            }
        ]
    }
    path = f"/cds-services/{pv['id']}/feedback"
    resp = secure.post(path, feedback)
    assert resp.status_code == 401 and resp.json() == GENERIC_401
    assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    forged = jwt_keys.mint("ES384", key=jwt_keys.new_key("ES384").private_key)
    assert secure.post(path, feedback, headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    ok = secure.post(path, feedback, headers={"Authorization": f"Bearer {jwt_keys.mint('ES384')}"})
    assert ok.status_code != 401, ok.text


def test_discovery_and_health_need_no_token(secure):
    assert secure.get("/cds-services").status_code == 200
    assert secure.get("/healthz").status_code == 200


def _broken_jwks_server():
    """Answers 200 with a JWKS cut off mid-body (the connection drops before Content-Length)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "4096")
            self.end_headers()
            self.wfile.write(b'{"keys": [')
            self.close_connection = True

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_jwks_cut_off_mid_body_is_401_not_500(tmp_path, pv, jwt_keys, secure_env_vars):
    """The issuer's key server dropping the connection mid-body raised urllib3's ProtocolError, which
    the JWKS cache did not catch: every call of that issuer answered 500 instead of 401."""
    import json

    from tests.support.cds_server import start_cds_server
    from tests.support.fhir_server import stop_process

    broken = _broken_jwks_server()
    jwks_url = f"http://127.0.0.1:{broken.server_address[1]}/jwks.json"
    issuer = jwt_keys.issuer_config(jwks_url=jwks_url)
    env = {**secure_env_vars, "RLS_TRUSTED_ISSUERS_JSON": json.dumps({"issuers": [issuer]})}
    server = start_cds_server(tmp_path / "broken-jwks", env=env, dev=False)
    try:
        before = len(rejection_reasons(server))
        resp = call(server, pv["id"], patient_view_body(pv), jwt_keys.mint("ES384"))
        assert resp.status_code == 401 and resp.json() == GENERIC_401
        wait_for_reason(server, before, "unknown_kid")
        assert "unhandled error" not in server.log_text()
    finally:
        stop_process(server.process)
        broken.shutdown()
