"""Trusted-issuer configuration: parsing, clear errors, and `rls-cds serve` refusing unsafe starts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from rls_cds.security.issuers import IssuerConfigError, check_startup, load_trusted_issuers
from tests.support.cds_server import RLS_CDS_BIN, start_cds_server
from tests.support.fhir_server import REPO, stop_process

DEPLOY = REPO / "deploy"


def _settings(file=None, inline=None, dev=False):
    return SimpleNamespace(trusted_issuers_file=file, trusted_issuers_json=inline, dev_mode=dev)


def _ok_issuer(jwt_keys, **kw) -> dict:
    return jwt_keys.issuer_config(**kw)


def test_file_and_env_merge(tmp_path, jwt_keys):
    path = tmp_path / "issuers.yaml"
    path.write_text(
        yaml.safe_dump({"issuers": [_ok_issuer(jwt_keys, fhir_servers=["HTTPS://Fhir.Example.org/r4/"])]})
    )
    inline = json.dumps({"issuers": {"https://other.example": {"jwks": jwt_keys.jwks(), "tenant": "t2"}}})
    trusted = load_trusted_issuers(_settings(path, inline))
    one, two = trusted.get(jwt_keys.issuer), trusted.get("https://other.example")
    assert one.tenant == "test-tenant" and one.fhir_servers == {"https://fhir.example.org/r4"}
    assert two.tenant == "t2" and len(two.static_keys) == len(jwt_keys.jwks()["keys"])
    assert one.audience == () and two.jwks_url is None


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ({"tenant": "x"}, "issuers[0].iss: required"),
        ({"iss": "https://a.example"}, "give its keys"),
        ({"iss": "https://a.example", "jwks_url": "http://ehr.example/jwks"}, "must use https"),
        (
            {"iss": "https://a.example", "jwks_url": "https://a.example/j", "algorithms": ["HS256"]},
            "algorithms",
        ),
        (
            {"iss": "https://a.example", "jwks_url": "https://a.example/j", "fhir_servers": ["ftp://x"]},
            "fhir_servers[0]",
        ),
        (
            {"iss": "https://a.example", "jwks_url": "https://a.example/j", "jwks_hosts": ["x"]},
            "unknown key(s) jwks_hosts",
        ),
        (
            {"iss": "https://a.example", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}},
            "RSA or EC public JWK",
        ),
        ({"iss": "https://a.example", "jwks_url": "https://a.example/j", "audience": []}, "audience"),
    ],
)
def test_errors_name_variable_and_issuer(entry, needle):
    with pytest.raises(IssuerConfigError) as err:
        load_trusted_issuers(_settings(inline=json.dumps({"issuers": [entry]})))
    assert "RLS_TRUSTED_ISSUERS_JSON" in str(err.value) and needle in str(err.value)


def test_private_key_refused(tmp_path, jwt_keys):
    from jwt.algorithms import ECAlgorithm

    private = ECAlgorithm.to_jwk(jwt_keys.keys["ES384"].private_key, as_dict=True)
    path = tmp_path / "i.yaml"
    path.write_text(yaml.safe_dump({"issuers": [{"iss": "https://a.example", "jwks": {"keys": [private]}}]}))
    with pytest.raises(IssuerConfigError, match="PRIVATE key"):
        load_trusted_issuers(_settings(path))
    assert str(path) in str(pytest.raises(IssuerConfigError, load_trusted_issuers, _settings(path)).value)


def test_duplicate_issuer_names_both_sources(tmp_path, jwt_keys):
    path = tmp_path / "i.json"
    path.write_text(json.dumps({"issuers": [_ok_issuer(jwt_keys)]}))
    with pytest.raises(IssuerConfigError, match="configured twice") as err:
        load_trusted_issuers(_settings(path, json.dumps({"issuers": [_ok_issuer(jwt_keys)]})))
    assert "RLS_TRUSTED_ISSUERS_JSON" in str(err.value) and str(path) in str(err.value)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(IssuerConfigError, match="RLS_TRUSTED_ISSUERS_FILE=.*cannot read"):
        load_trusted_issuers(_settings(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("issuers: [unclosed")
    with pytest.raises(IssuerConfigError, match="not valid YAML"):
        load_trusted_issuers(_settings(bad))


def test_sandbox_example_is_development_only():
    sandbox = _settings(DEPLOY / "trusted-issuers.sandbox.yaml")
    trusted = load_trusted_issuers(sandbox)
    issuer = trusted.get("https://sandbox.cds-hooks.org")
    assert issuer.is_sandbox and issuer.static_keys[0]["kid"] == "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
    with pytest.raises(IssuerConfigError, match="sandbox"):
        check_startup(sandbox)
    assert check_startup(_settings(DEPLOY / "trusted-issuers.sandbox.yaml", dev=True))
    # The shipped key set is the published one.
    reference = Path("/work/shared/reference/cds-hooks-sandbox-jwks.json")
    if reference.exists():
        assert json.loads(reference.read_text()) == json.loads(
            (DEPLOY / "cds-hooks-sandbox-jwks.json").read_text()
        )


def test_sandbox_key_refused_under_another_name():
    keys = json.loads((DEPLOY / "cds-hooks-sandbox-jwks.json").read_text())
    renamed = json.dumps({"issuers": [{"iss": "https://innocent.example", "jwks": keys}]})
    with pytest.raises(IssuerConfigError, match="sandbox"):
        check_startup(_settings(inline=renamed))


def test_production_example_parses(tmp_path, jwt_keys):
    shutil.copy(DEPLOY / "trusted-issuers.example.yaml", tmp_path / "issuers.yaml")
    (tmp_path / "clinic-b.jwks.json").write_text(json.dumps({"keys": [jwt_keys.keys["ES384"].public_jwk]}))
    trusted = check_startup(_settings(tmp_path / "issuers.yaml"))
    assert {i.tenant for i in trusted.by_iss.values()} == {"hospital-a", "clinic-b"}
    assert not trusted.sandbox


def _serve(tmp_path: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"}
    return subprocess.run(
        [str(RLS_CDS_BIN), "serve", "--port", "1", *args],
        env={**clean, "RLS_EMBEDDED_WORKER": "false", **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_serve_without_issuers_refuses_to_start(tmp_path):
    out = _serve(tmp_path, {})
    assert out.returncode == 2
    assert "RLS_TRUSTED_ISSUERS_FILE" in out.stderr and "--dev" in out.stderr


@pytest.mark.slow
def test_serve_with_sandbox_issuer_without_dev_refuses(tmp_path):
    out = _serve(tmp_path, {"RLS_TRUSTED_ISSUERS_FILE": str(DEPLOY / "trusted-issuers.sandbox.yaml")})
    assert out.returncode == 2 and "sandbox" in out.stderr and "--dev" in out.stderr


@pytest.mark.slow
def test_serve_with_invalid_issuers_names_the_variable(tmp_path):
    out = _serve(tmp_path, {"RLS_TRUSTED_ISSUERS_JSON": '{"issuers": [{"iss": "https://a.example"}]}'})
    assert out.returncode == 2 and "RLS_TRUSTED_ISSUERS_JSON" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_dev_mode_refuses_non_loopback_host(tmp_path):
    out = _serve(tmp_path, {}, "--dev", "--host", "0.0.0.0")
    assert out.returncode == 2 and "loopback" in out.stderr


@pytest.mark.slow
def test_dev_mode_warns_on_start_and_every_request(tmp_path, security_redis):
    from tests.security.helpers import log_records

    server = start_cds_server(
        tmp_path / "dev",
        env={
            "REDIS_URL": security_redis.url,
            "RLS_TRUSTED_ISSUERS_FILE": str(DEPLOY / "trusted-issuers.sandbox.yaml"),
        },
        dev=True,
    )
    try:
        records = log_records(server)
        assert any(r["level"] == "WARNING" and "DEVELOPMENT MODE" in r["msg"] for r in records)
        services = server.get("/cds-services").json()["services"]
        sid = next(s["id"] for s in services if s["hook"] == "patient-view")
        body = {
            "hook": "patient-view",
            "hookInstance": "1",
            "context": {"patientId": "dev-1"},
            "prefetch": {},
        }
        for _ in range(2):
            assert server.post(f"/cds-services/{sid}", body).status_code == 200
        # With the sandbox issuer configured, a call that does carry a token is really verified.
        bad = server.post(f"/cds-services/{sid}", body, headers={"Authorization": "Bearer not.a.jwt"})
        assert bad.status_code == 401
        import time

        time.sleep(0.2)
        warnings = [r for r in log_records(server) if "request accepted without authentication" in r["msg"]]
        assert len(warnings) == 2 and all(r["level"] == "WARNING" for r in warnings)
    finally:
        stop_process(server.process)
