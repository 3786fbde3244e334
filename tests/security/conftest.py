"""Production-mode (`rls-cds serve` without --dev) servers, real Redis, and counting FHIR servers.

`secure` is one API replica trusting the `jwt_keys` issuer; `secure_replica` a second replica on
the same Redis (replays across replicas). `fhir_allowed` / `fhir_forbidden` are loopback FHIR
stand-ins that count every request they receive: the first is on the issuer's fhirServer
allowlist, the second is not (so a test can prove no request reached it). The real sekmet-fhir
server is allowlisted too, for the PHI log test.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.support.cds_server import CdsServer, start_cds_server, start_redis
from tests.support.fhir_server import stop_process
from tests.support.jwt_keys import PUBLIC_URL, JwtKeys

JKU_PATH = "/jku/jwks.json"  # an allowlisted jku with its own key
EMPTY_BUNDLE = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []}).encode()


@dataclass
class CountingFhir:
    """Answers every GET with an empty searchset (or a redirect), counting requests and tokens."""

    server: ThreadingHTTPServer
    hits: Counter = field(default_factory=Counter)
    authorizations: list = field(default_factory=list)
    redirect_to: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/fhir"

    @property
    def total(self) -> int:
        return sum(self.hits.values())


def start_counting_fhir() -> CountingFhir:
    holder: list[CountingFhir] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            me = holder[0]
            me.hits[self.path.split("?")[0]] += 1
            me.authorizations.append(self.headers.get("Authorization"))
            if me.redirect_to:
                self.send_response(302)
                self.send_header("Location", me.redirect_to + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(EMPTY_BUNDLE)))
            self.end_headers()
            self.wfile.write(EMPTY_BUNDLE)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder.append(CountingFhir(server))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return holder[0]


@pytest.fixture(scope="session")
def fhir_allowed() -> CountingFhir:
    server = start_counting_fhir()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="session")
def fhir_forbidden() -> CountingFhir:
    server = start_counting_fhir()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="session")
def security_redis(tmp_path_factory):
    server = start_redis(tmp_path_factory.mktemp("security-redis"))
    yield server
    stop_process(server.process)


@pytest.fixture(scope="session")
def jku_key(jwt_keys: JwtKeys):
    """A key published only at the allowlisted jku URL (not in the issuer's JWKS)."""
    key = jwt_keys.new_key("ES384", kid="jku-only")
    jwt_keys.serve(JKU_PATH, {"keys": [key.public_jwk]})
    return key


def secure_env(jwt_keys: JwtKeys, redis_url: str, fhir_servers: list[str], **extra) -> dict:
    issuer = jwt_keys.issuer_config(allowed_jku=[jwt_keys.url(JKU_PATH)], fhir_servers=fhir_servers)
    return {
        "REDIS_URL": redis_url,
        "RLS_PUBLIC_URL": PUBLIC_URL,
        "RLS_TRUSTED_ISSUERS_JSON": json.dumps({"issuers": [issuer]}),
        "RLS_HOOK_DEADLINE_SECONDS": "2.0",
        "RLS_FHIR_REQUEST_TIMEOUT_SECONDS": "1.5",
        "RLS_MAX_BODY_BYTES": str(256 * 1024),
        "RLS_MAX_JSON_DEPTH": "24",
        "RLS_MAX_PREFETCH_RESOURCES": "200",
        **extra,
    }


@pytest.fixture(scope="session")
def secure_env_vars(jwt_keys, security_redis, fhir_allowed, fhir_server, jku_key) -> dict:
    return secure_env(jwt_keys, security_redis.url, [fhir_allowed.base_url, fhir_server.base_url])


@pytest.fixture(scope="session")
def secure(tmp_path_factory, secure_env_vars) -> CdsServer:
    server = start_cds_server(tmp_path_factory.mktemp("secure-a"), env=secure_env_vars, dev=False)
    yield server
    stop_process(server.process)


@pytest.fixture(scope="session")
def secure_replica(tmp_path_factory, secure_env_vars) -> CdsServer:
    server = start_cds_server(tmp_path_factory.mktemp("secure-b"), env=secure_env_vars, dev=False)
    yield server
    stop_process(server.process)


@pytest.fixture(scope="session")
def service_ids(secure) -> dict[str, dict]:
    """hook -> discovery entry (discovery needs no token)."""
    resp = requests.get(f"{secure.url}/cds-services", timeout=5)
    assert resp.status_code == 200
    return {s["hook"]: s for s in resp.json()["services"]}
