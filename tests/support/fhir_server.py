"""Test fixture: a real sekmet-fhir R4 server process on 127.0.0.1, bearer tokens required.

The binary is `$RLS_FHIR_SERVER_BIN` (default `.venv-fhir/bin/sekmet`, created by
`make .venv-fhir/.installed`). Settings file, SQLite data and keys live in a per-session temp dir.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
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
    _next_token: int = field(default=0)

    @property
    def token(self) -> str:
        return self.tokens[0]

    def mint_token(self) -> str:
        """A bearer token the server accepts (sekmet takes static tokens fixed at start-up)."""
        self._next_token = (self._next_token + 1) % len(self.tokens)
        return self.tokens[self._next_token]

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
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"sekmet exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if requests.get(f"{base_url}/metadata", timeout=1).status_code in (200, 401):
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    pytest.fail(f"sekmet did not start in {timeout}s: {log_path.read_text()[-2000:]}")


def start_fhir_server(workdir: Path) -> FhirServer:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/fhir"
    tokens = [secrets.token_urlsafe(24) for _ in range(3)]
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "base_url": base_url,
        "host": "127.0.0.1",
        "port": port,
        "data_dir": str(workdir / "data"),
        "own_private_key_path": str(workdir / "keys" / "sekmet_private.pem"),
        "server_auth": {"types": ["bearer"], "tokens": tokens},
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
    return FhirServer(base_url, tokens, proc, log_path)


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory) -> FhirServer:
    server = start_fhir_server(tmp_path_factory.mktemp("sekmet"))
    yield server
    stop_process(server.process)
