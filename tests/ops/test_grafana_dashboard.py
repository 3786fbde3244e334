"""deploy/grafana-dashboard.json only charts metrics the service really exposes."""

from __future__ import annotations

import json
import re

import redis

from rls_cds.api.metrics import Metrics
from rls_cds.background.metrics import register_background_metrics
from rls_cds.background.store import Store
from tests.ops.deployment import REPO
from tests.support.cds_server import start_redis
from tests.support.fhir_server import stop_process

DASHBOARD = json.loads((REPO / "deploy" / "grafana-dashboard.json").read_text())
_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def _exposed(tmp_path) -> set[str]:
    """Every sample name /metrics can emit: the API's metrics plus the queue collector on a real Redis."""
    server = start_redis(tmp_path / "redis")
    try:
        metrics = Metrics()
        store = Store(redis.Redis.from_url(server.url))
        store.record_task("reevaluate_patient", "stored", 0.1)
        register_background_metrics(metrics.registry, store)
        metrics.feedback.labels("overridden").inc()
        text = metrics.render().decode()
    finally:
        stop_process(server.process)
    names = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names | set(re.findall(r"^(rls_cds_\w+)", text, re.MULTILINE))


def test_dashboard_metrics_exist(tmp_path):
    exposed = _exposed(tmp_path)
    used = set()
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            used.update(re.findall(r"rls_cds_\w+", target["expr"]))
    assert used, "the dashboard charts nothing"
    missing = {
        m for m in used if m not in exposed and not any(m.removesuffix(s) in exposed for s in _SUFFIXES)
    }
    assert not missing, sorted(missing)
    assert {"rls_cds_queue_length", "rls_cds_tasks_total", "rls_cds_hook_latency_seconds_bucket"} <= used


def test_dashboard_is_importable_shape():
    assert DASHBOARD["uid"] and DASHBOARD["title"]
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
