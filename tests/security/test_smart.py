"""SMART Backend Services client auth against the real sekmet-fhir server (its token endpoint)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import requests
import yaml

from rls_cds.fhir import smart
from rls_cds.fhir.smart import FhirServersError, ForbiddenDestination, load_fhir_servers, session_for
from tests.support.fhir_server import free_port


def _settings(path):
    return SimpleNamespace(fhir_servers_file=path)


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_session_gets_token_and_reads(fhir_server, tmp_path, alg):
    path = fhir_server.write_fhir_servers_file(tmp_path / f"servers-{alg}.yaml", alg=alg, tenant="t1")
    servers = load_fhir_servers(_settings(path))
    cfg = servers[fhir_server.base_url]
    assert cfg.tenant == "t1" and cfg.alg == alg and cfg.has_credentials
    s1 = session_for(fhir_server.base_url + "/", _settings(path))
    r1 = s1.get(f"{fhir_server.base_url}/Patient?_count=1", timeout=10)
    assert r1.status_code == 200, r1.text
    token = r1.request.headers["Authorization"]
    assert token.startswith("Bearer ") and token[7:] not in fhir_server.tokens  # a SMART token, not static
    # A second session reuses the cached token (no second token request).
    r2 = session_for(fhir_server.base_url, _settings(path)).get(
        f"{fhir_server.base_url}/metadata", timeout=10
    )
    assert r2.status_code == 200 and r2.request.headers["Authorization"] == token


def test_refreshes_once_on_401(fhir_server, tmp_path):
    path = fhir_server.write_fhir_servers_file(tmp_path / "servers.yaml", scopes="system/*.rs")
    session = session_for(fhir_server.base_url, _settings(path))
    assert session.get(f"{fhir_server.base_url}/Patient", timeout=10).status_code == 200
    source = session.auth.source
    source._token = "revoked-or-garbage"  # what the server no longer accepts: it answers a real 401
    resp = session.get(f"{fhir_server.base_url}/Patient", timeout=10)
    assert resp.status_code == 200
    assert [h.status_code for h in resp.history] == [401]
    assert source._token not in (None, "revoked-or-garbage")


def test_token_refused_raises_without_token(fhir_server, tmp_path):
    path = fhir_server.write_fhir_servers_file(tmp_path / "servers.yaml", client_id="not-registered")
    with pytest.raises(smart.SmartAuthError) as err:
        session_for(fhir_server.base_url, _settings(path)).get(f"{fhir_server.base_url}/Patient", timeout=10)
    assert "401" in str(err.value) and "invalid_client" in str(err.value)


def test_unconfigured_base_has_no_auth(fhir_server, tmp_path):
    path = tmp_path / "servers.yaml"
    path.write_text(yaml.safe_dump({"servers": {fhir_server.base_url: {}}}))
    resp = session_for(fhir_server.base_url, _settings(path)).get(
        f"{fhir_server.base_url}/Patient", timeout=10
    )
    assert resp.status_code == 401 and "Authorization" not in resp.request.headers
    assert session_for("http://127.0.0.1:1/other", _settings(None)).auth is None


def test_token_only_sent_to_its_origin(fhir_server, tmp_path):
    path = fhir_server.write_fhir_servers_file(tmp_path / "servers.yaml")
    seen, server = _recording_server()
    try:
        session = session_for(fhir_server.base_url, _settings(path))
        session.get(f"http://127.0.0.1:{server.server_port}/fhir/Patient", timeout=5)
    finally:
        server.shutdown()
    assert seen and all("authorization" not in {k.lower() for k in h} for h in seen)


def _recording_server(status=200, location=None):
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(dict(self.headers))
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return seen, server


def test_no_redirect_to_another_host():
    target_seen, target = _recording_server()
    # "localhost" and 127.0.0.1 are different origins: a redirect between them is not followed.
    _, redirector = _recording_server(302, f"http://localhost:{target.server_port}/steal")
    try:
        resp = session_for(f"http://127.0.0.1:{redirector.server_port}", _settings(None)).get(
            f"http://127.0.0.1:{redirector.server_port}/fhir/Patient", timeout=5
        )
    finally:
        target.shutdown()
        redirector.shutdown()
    assert resp.status_code == 302 and target_seen == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.10.1/fhir",
        "http://[fe80::1]/fhir",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[::ffff:169.254.169.254]/",
    ],
)
def test_refuses_link_local_and_metadata(url):
    with pytest.raises(ForbiddenDestination):
        session_for(url, _settings(None)).get(url, timeout=1)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"client_id": "x"}, "private_key_path"),
        ({"client_id": "x", "private_key_path": "missing.pem"}, "private_key_path: cannot load"),
        ({"client_id": "x", "private_key_env": "RLS_TEST_UNSET_KEY_VAR"}, "private_key_env"),
        ({"alg": "HS256"}, ".alg"),
        ({"clientid": "x"}, "unknown key(s) clientid"),
        ({"private_key_path": "k.pem"}, ".client_id"),
    ],
)
def test_invalid_config_names_file_and_key(tmp_path, entry, message):
    path = tmp_path / "servers.yaml"
    path.write_text(yaml.safe_dump({"servers": {"https://fhir.example.org/r4": entry}}))
    with pytest.raises(FhirServersError) as err:
        load_fhir_servers(_settings(path))
    assert str(path) in str(err.value) and "https://fhir.example.org/r4" in str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("http://[::1/fhir", "is not a well-formed URL"),  # was a ValueError traceback at start-up
        ("https://user:pw@fhir.example.org/r4", "must not carry credentials"),
        ("https://fhir.example.org/r4?x=1", "must not carry a query"),
        ("fhir.example.org/r4", "must be an absolute http(s) URL"),
    ],
)
def test_server_key_gets_the_same_base_url_check_as_a_hook(tmp_path, base, message):
    path = tmp_path / "servers.yaml"
    path.write_text(yaml.safe_dump({"servers": {base: {}}}))
    with pytest.raises(FhirServersError) as err:
        load_fhir_servers(_settings(path))
    assert str(path) in str(err.value) and message in str(err.value)


def test_key_must_match_alg(fhir_server, tmp_path):
    path = fhir_server.write_fhir_servers_file(tmp_path / "s.yaml", alg="ES384")
    doc = yaml.safe_load(path.read_text())
    doc["servers"][fhir_server.base_url]["private_key_path"] = str(fhir_server.smart_keys["RS384"])
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(FhirServersError, match="ES384 needs an EC P-384"):
        load_fhir_servers(_settings(path))


def test_private_key_from_env(fhir_server, tmp_path, monkeypatch):
    monkeypatch.setenv("RLS_TEST_SMART_KEY", fhir_server.smart_keys["ES384"].read_text())
    path = tmp_path / "servers.yaml"
    entry = {
        "client_id": fhir_server.smart_client_ids["ES384"],
        "private_key_env": "RLS_TEST_SMART_KEY",
        "alg": "ES384",
    }
    path.write_text(yaml.safe_dump({"servers": {fhir_server.base_url: entry}}))
    resp = session_for(fhir_server.base_url, _settings(path)).get(
        f"{fhir_server.base_url}/Patient", timeout=10
    )
    assert resp.status_code == 200


def test_requests_exception_family():
    # Callers catching requests.RequestException also catch refused destinations and token failures.
    assert issubclass(ForbiddenDestination, requests.RequestException)
    assert issubclass(smart.SmartAuthError, requests.RequestException)
