"""One panel run end to end against a scripted FHIR server: its config files, a real Redis, a real
`rls-cds worker` on the batch queue and `rls-cds panel run PANEL --wait`, then the stored report."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from rls_cds.panels.state import RunState
from tests.support.celery_workers import start_worker
from tests.support.fhir_server import REPO
from tests.support.redis_server import start_redis


def run_panel_once(
    tmp_path: Path, panel_id: str, panel: dict, env: dict[str, str] | None = None, timeout: float = 30
) -> tuple[dict | None, subprocess.CompletedProcess]:
    """(report, the CLI's output) of one run of ``panel`` (its fhir_server is the only server known)."""
    (tmp_path / "panels.yaml").write_text(yaml.safe_dump({"panels": {panel_id: panel}}))
    (tmp_path / "servers.yaml").write_text(yaml.safe_dump({"servers": {panel["fhir_server"]: {}}}))
    env = {
        "RLS_PANELS_FILE": str(tmp_path / "panels.yaml"),
        "RLS_FHIR_SERVERS_FILE": str(tmp_path / "servers.yaml"),
        "RLS_REPORTS_DIR": str(tmp_path / "reports"),
        "RLS_PANEL_LEASE_SECONDS": "4",
        **(env or {}),
    }
    rds = start_redis(tmp_path / "redis")
    worker = start_worker(tmp_path / "w", rds.url, env=env, queues="batch")
    try:
        cli_env = {k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"}
        cli_env.update(env, REDIS_URL=rds.url)
        cmd = [str(REPO / ".venv/bin/rls-cds"), "panel", "run", panel_id, "--wait", "--timeout", str(timeout)]
        out = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=timeout * 2 + 30)
        words = out.stdout.split()
        report = RunState(rds.client(), words[1]).report() if len(words) > 1 else None
        return report, out
    finally:
        worker.stop()
        rds.stop()
