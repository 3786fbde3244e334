"""Test fixture: a real sekmet-fhir R4 server process on 127.0.0.1, bearer tokens required.

The binary is `$RLS_FHIR_SERVER_BIN` (default `.venv-fhir/bin/sekmet`, created by
`make .venv-fhir/.installed`). Settings file, SQLite data and keys live in a per-session temp dir.

Besides static bearer tokens the server accepts SMART Backend Services clients registered at
start-up: `smart_client_ids[alg]` for RS384 (RSA key; also `smart_client_id`) and ES384 (EC P-384
key), private keys in `smart_keys[alg]` (PEM files); `write_fhir_servers_file(path, alg)` writes an
`RLS_FHIR_SERVERS_FILE` for one of them. (sekmet needs one key type per client.)
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sekmet_binary() -> Path:
    path = Path(os.environ.get("RLS_FHIR_SERVER_BIN", REPO / ".venv-fhir" / "bin" / "sekmet"))
    if not path.exists():
        pytest.fail(f"sekmet-fhir not installed at {path}: run `make .venv-fhir/.installed`")
    return path


@dataclass
class FhirServer:
    base_url: str
    tokens: list[str]
    process: subprocess.Popen
    log_path: Path
    # SMART Backend Services client registered at start-up (private keys by alg: RS384, ES384).
    smart_client_id: str | None = None
    smart_keys: dict[str, Path] = field(default_factory=dict)
    smart_client_ids: dict[str, str] = field(default_factory=dict)

    @property
    def token_url(self) -> str:
        return self.base_url.rsplit("/fhir", 1)[0] + "/auth/token"

    def smart_entry(self, alg: str = "RS384", **extra) -> dict:
        """An RLS_FHIR_SERVERS_FILE entry with this server's SMART client (extra keys override)."""
        entry = {
            "client_id": self.smart_client_ids[alg],
            "private_key_path": str(self.smart_keys[alg]),
            "alg": alg,
        }
        return {**entry, **extra}

    def write_fhir_servers_file(
        self, path: Path, alg: str = "RS384", base: str | None = None, **extra
    ) -> Path:
        """An RLS_FHIR_SERVERS_FILE for ``base`` (default: this server; e.g. a proxy in front of it)."""
        path.write_text(yaml.safe_dump({"servers": {base or self.base_url: self.smart_entry(alg, **extra)}}))
        return path

    @property
    def token(self) -> str:
        return self.tokens[0]

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token or self.token}",
            "Content-Type": "application/fhir+json",
            "Accept": "application/fhir+json",
        }

    def load_bundle(self, bundle: dict) -> dict:
        """POST a transaction Bundle; returns the transaction-response Bundle."""
        resp = requests.post(self.base_url, json=bundle, headers=self.headers(), timeout=30)
        assert resp.status_code == 200, f"transaction failed: {resp.status_code} {resp.text[:500]}"
        return resp.json()

    def search(self, query: str) -> dict:
        resp = requests.get(f"{self.base_url}/{query}", headers=self.headers(), timeout=10)
        resp.raise_for_status()
        return resp.json()


def transaction(resources: list[dict]) -> dict:
    """A transaction Bundle that PUTs each resource at its own id (idempotent reloads)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def _wait_ready(base_url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 30) -> None:
    def answers() -> bool:
        return requests.get(f"{base_url}/metadata", timeout=1).status_code in (200, 401)

    if not wait_until_ready(proc, answers, "sekmet", log_path, timeout, not_yet=(requests.RequestException,)):
        pytest.fail(f"sekmet did not start in {timeout}s: {log_tail(log_path)}")


def _smart_client_keys(keydir: Path) -> tuple[dict[str, Path], dict[str, dict]]:
    """Fresh RS384 and ES384 key pairs: private PEM files and each public JWKS, by alg."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    keydir.mkdir(parents=True, exist_ok=True)
    paths, jwks = {}, {}
    for alg, key in (
        ("RS384", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ES384", ec.generate_private_key(ec.SECP384R1())),
    ):
        path = keydir / f"rls-cds-client-{alg.lower()}.pem"
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.write_bytes(pem)
        path.chmod(0o600)
        to_jwk = RSAAlgorithm.to_jwk if alg == "RS384" else ECAlgorithm.to_jwk
        jwks[alg] = {"keys": [{**to_jwk(key.public_key(), as_dict=True), "alg": alg, "use": "sig"}]}
        paths[alg] = path
    return paths, jwks


def start_fhir_server(workdir: Path) -> FhirServer:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/fhir"
    tokens = [secrets.token_urlsafe(24) for _ in range(3)]
    workdir.mkdir(parents=True, exist_ok=True)
    smart_client_ids = {"RS384": "rls-cds-test-client", "ES384": "rls-cds-test-client-es384"}
    smart_keys, smart_jwks = _smart_client_keys(workdir / "client-keys")
    config = {
        "base_url": base_url,
        "host": "127.0.0.1",
        "port": port,
        "data_dir": str(workdir / "data"),
        "own_private_key_path": str(workdir / "keys" / "sekmet_private.pem"),
        "server_auth": {
            "types": ["bearer", "smart"],
            "tokens": tokens,
            "smart_clients": [
                {"client_id": smart_client_ids[alg], "jwks": smart_jwks[alg], "scopes": "system/*.*"}
                for alg in smart_client_ids
            ],
        },
        "validation": {"inbound": "off"},
        "simulator": {"enabled": False},
        "log_inbound": False,
    }
    settings = workdir / "settings.yaml"
    settings.write_text(yaml.safe_dump(config))
    log_path = workdir / "sekmet.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            str(sekmet_binary()),
            "serve",
            "--config",
            str(settings),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "SEKMET_CONFIG": str(settings)},
    )
    log.close()
    try:
        _wait_ready(base_url, proc, log_path)
    except BaseException:
        stop_process(proc)
        raise
    return FhirServer(
        base_url,
        tokens,
        proc,
        log_path,
        smart_client_id=smart_client_ids["RS384"],
        smart_keys=smart_keys,
        smart_client_ids=smart_client_ids,
    )


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def log_tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-3000:]


def wait_until_ready(
    proc: subprocess.Popen,
    is_ready: Callable[[], bool],
    what: str,
    log_path: Path,
    timeout: float,
    not_yet: tuple[type[BaseException], ...] = (),
) -> bool:
    """Poll ``is_ready()`` until it holds (True) or ``timeout`` passes (False: the caller stops the
    process its own way). An exception in ``not_yet`` counts as not ready yet; a process that exits
    fails the test at once, with the tail of its log."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}: {log_tail(log_path)}")
        try:
            if is_ready():
                return True
        except not_yet:
            pass
        time.sleep(0.1)
    return False


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory) -> FhirServer:
    server = start_fhir_server(tmp_path_factory.mktemp("sekmet"))
    yield server
    stop_process(server.process)
