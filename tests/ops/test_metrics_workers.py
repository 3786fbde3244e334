"""/metrics of a real `rls-cds serve` with RLS_API_WORKERS=2: every scrape, whichever uvicorn worker
takes it, shows the totals of both workers (prometheus_client multiprocess mode), the series stay the
same from scrape to scrape, and the private metrics directory is gone once serve exits."""

from __future__ import annotations

import signal
import stat
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.api import data
from tests.support.cds_server import start_cds_server, start_redis
from tests.support.fhir_server import stop_process

pytestmark = pytest.mark.slow

HOOKS = 24  # answered 200
BAD = 6  # answered 400 (not JSON): a second series of the same counter
SCRAPES = 10
HOOK_COUNTER = "rls_cds_hook_requests_total"


def _wait_for_both_workers(server, timeout: float = 20) -> None:
    """Until both uvicorn workers have built their app (before that one worker takes every request)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if server.log_text().count("Application startup complete.") >= 2:
            return
        time.sleep(0.05)
    pytest.fail(f"the two uvicorn workers did not start in {timeout}s:\n{server.log_text()[-3000:]}")


def _hook(server, svc: dict) -> int:
    pid = f"mw-{uuid.uuid4().hex[:8]}"
    body = data.hook_request("patient-view", pid, data.full_prefetch(data.patient_record(pid), svc))
    return requests.post(f"{server.url}/cds-services/{svc['id']}", json=body, timeout=10).status_code


def _bad_hook(server, svc: dict) -> int:
    resp = requests.post(
        f"{server.url}/cds-services/{svc['id']}",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    return resp.status_code


def _scrape(server) -> dict[tuple[str, tuple], float]:
    """One GET /metrics (a new connection each time) as {(sample name, labels): value} for rls_cds_*."""
    resp = requests.get(f"{server.url}/metrics", headers={"Connection": "close"}, timeout=10)
    assert resp.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            if s.name.startswith("rls_cds_"):
                key = (s.name, tuple(sorted(s.labels.items())))
                assert key not in samples, f"series twice in one scrape: {key}"
                samples[key] = s.value
    return samples


def _hooks_by_worker(directory: Path) -> dict[str, float]:
    """Per worker process (its counter file), the hook requests it counted."""
    out = {}
    for path in directory.glob("counter_*.db"):
        total = 0.0
        for family in MultiProcessCollector.merge([str(path)]):
            if family.name == "rls_cds_hook_requests":
                total += sum(s.value for s in family.samples if s.name == HOOK_COUNTER)
        out[path.stem.removeprefix("counter_")] = total
    return out


def test_every_scrape_shows_the_sum_over_both_workers(tmp_path):
    redis = start_redis(tmp_path / "redis")
    tmp = tmp_path / "tmp"  # serve makes its private metrics directory here (TMPDIR)
    tmp.mkdir()
    env = {"REDIS_URL": redis.url, "RLS_API_WORKERS": "2", "TMPDIR": str(tmp)}
    server = start_cds_server(tmp_path / "serve", env=env)
    try:
        _wait_for_both_workers(server)
        svc = next(s for s in server.get("/cds-services").json()["services"] if s["hook"] == "patient-view")
        for _ in range(6):  # store checks in both workers (most likely): rls_cds_store_up is 1
            assert server.get("/readyz").status_code == 200
        # Concurrent calls, each on a new connection, so both workers answer some.
        with ThreadPoolExecutor(max_workers=8) as pool:
            good = list(pool.map(lambda _: _hook(server, svc), range(HOOKS)))
            bad = list(pool.map(lambda _: _bad_hook(server, svc), range(BAD)))
        assert good == [200] * HOOKS and bad == [400] * BAD

        scrapes = [_scrape(server) for _ in range(SCRAPES)]
        label = (("service", svc["id"]), ("status", "200"))
        seen = [s.get((HOOK_COUNTER, label)) for s in scrapes]
        assert seen == [HOOKS] * SCRAPES, f"hook 200 counter per scrape: {seen}"
        bad_label = (("service", svc["id"]), ("status", "400"))
        assert [s.get((HOOK_COUNTER, bad_label)) for s in scrapes] == [BAD] * SCRAPES
        latency = ("rls_cds_hook_latency_seconds_count", (("service", svc["id"]),))
        assert [s.get(latency) for s in scrapes] == [HOOKS + BAD] * SCRAPES
        assert all(s.get(("rls_cds_store_up", ())) == 1 for s in scrapes)
        assert all(s.get(("rls_cds_queue_up", ())) == 1 for s in scrapes)  # the Redis-read collector
        assert all(any(name == "rls_cds_cards_total" for name, _ in s) for s in scrapes)
        assert all(s.keys() == scrapes[0].keys() for s in scrapes), "series differ between scrapes"

        # The test really ran two workers: both counted hooks, in one private directory.
        directories = list(tmp.glob("rls-cds-metrics-*"))
        assert len(directories) == 1, directories
        assert stat.S_IMODE(directories[0].stat().st_mode) == 0o700
        by_worker = _hooks_by_worker(directories[0])
        assert sum(by_worker.values()) == HOOKS + BAD
        assert len([n for n in by_worker.values() if n > 0]) == 2, by_worker

        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
        assert not list(tmp.glob("rls-cds-metrics-*")), "metrics directory left behind"
    finally:
        stop_process(server.process)
        stop_process(redis.process)
