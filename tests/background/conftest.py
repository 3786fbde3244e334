"""Background fixtures: a fresh Redis database per test on the shared real redis-server, the FHIR
servers file (SMART credentials for sekmet and for the fault proxy in front of it), test patients."""

from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path

import pytest
import yaml

from rls_cds.background.store import Store
from tests.support.rls_patients import load_rls_patients

TASK = "rls_cds.background.tasks.reevaluate_patient"
_DBS = itertools.cycle(range(1, 16))


@pytest.fixture
def broker_url(redis_server) -> str:
    """A Redis database of its own for each test (queues, results and store never leak between tests)."""
    db = next(_DBS)
    url = redis_server.url.rsplit("/", 1)[0] + f"/{db}"
    import redis

    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def store(broker_url) -> Store:
    import redis

    return Store(redis.Redis.from_url(broker_url, socket_timeout=5))


@pytest.fixture
def tenant() -> str:
    return f"bg-{uuid.uuid4().hex[:8]}"


def smart_entry(fhir_server, **extra) -> dict:
    return fhir_server.smart_entry("RS384", token_url=fhir_server.token_url, **extra)


@pytest.fixture(scope="session")
def servers_file(tmp_path_factory, fhir_server, fault_proxy_session) -> Path:
    """sekmet itself and the fault proxy in front of it, both with the SMART client (tenant 'dev',
    the development caller's tenant, so hooks in --dev mode find what workers stored)."""
    path = tmp_path_factory.mktemp("bg-config") / "fhir-servers.yaml"
    servers = {
        fhir_server.base_url: smart_entry(fhir_server, tenant="dev"),
        fault_proxy_session.base_url: smart_entry(fhir_server, tenant="dev"),
    }
    path.write_text(yaml.safe_dump({"servers": servers}))
    return path


def worker_env(servers_file: Path, **extra: str) -> dict[str, str]:
    return {
        "RLS_FHIR_SERVERS_FILE": str(servers_file),
        "RLS_TASK_RETRY_BACKOFF_SECONDS": "0.3",
        "RLS_TASK_MAX_RETRIES": "3",
        **extra,
    }


@pytest.fixture(scope="session")
def bg_patients(fhir_server) -> dict[str, str]:
    """'low_iron_ssri': RLS, ferritin 30, active sertraline; 'no_labs': RLS, no labs."""
    return load_rls_patients(fhir_server, "bg")


def causes(record: dict) -> set[str]:
    return {f["cause"] for f in record["findings"]}


def wait_for(predicate, timeout: float = 30, interval: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
