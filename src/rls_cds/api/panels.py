"""Operator API for panel runs (authenticated like every other endpoint).

GET  /panels                                  configured panels and their latest run
POST /panels/{panel}/runs                     start a run now (202 + run id; Celery does the work)
GET  /panels/{panel}/runs/{run}               status, and the report once finished
GET  /panels/{panel}/runs/{run}/worklist.csv  the worklist as CSV
GET  /panels/{panel}/runs/{run}/view          the worklist as an HTML page (?cause=..&new=1)

Tenant isolation: a caller sees, starts and reads only the panels and runs of its own tenant
(``caller.tenant``; a panel's tenant is config.panel_tenant, a run's is recorded at its creation).
Anything of another tenant is answered exactly like something that does not exist (404).
Development-mode callers see everything.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from rls_cds.api.errors import ApiError

router = APIRouter(tags=["panels"])

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _redis(request: Request):
    runtime = request.app.state.runtime
    store = getattr(runtime, "store", None)
    if store is not None and getattr(store, "redis", None) is not None:
        return store.redis
    try:
        from rls_cds.panels.service import redis_client

        return redis_client(runtime.settings)
    except Exception:  # noqa: BLE001 - no Redis configured or reachable
        raise ApiError(503, "store_unavailable", "panel runs need Redis, which is not available") from None


async def _in_thread(fn, *args):
    """Run blocking Redis work off the event loop; Redis trouble is a 503, never a 500."""
    import redis
    from kombu.exceptions import OperationalError

    try:
        return await run_in_threadpool(fn, *args)
    except (redis.RedisError, OperationalError):
        raise ApiError(503, "store_unavailable", "panel run state (Redis) is not reachable") from None


def _check_id(value: str, what: str) -> str:
    if not _ID.match(value or ""):
        raise ApiError(400, f"invalid_{what}", f"{what} ids are letters, digits, '.', '_' or '-' (max 64)")
    return value


def _panels(settings) -> dict:
    from rls_cds.panels.config import PanelConfigError, load_panels

    try:
        return load_panels(settings)
    except PanelConfigError as exc:
        raise ApiError(503, "panels_misconfigured", str(exc)) from None


def _sees(caller, tenant: str | None) -> bool:
    """Whether the caller may see something of this tenant (None: a local run without a tenant)."""
    if getattr(caller, "dev", False):
        return True
    return tenant is not None and tenant == getattr(caller, "tenant", None)


def _visible_panels(settings, caller) -> dict:
    from rls_cds.fhir.smart import FhirServersError
    from rls_cds.panels.config import panel_tenant

    panels = _panels(settings)
    if getattr(caller, "dev", False):
        return panels
    try:
        return {pid: p for pid, p in panels.items() if _sees(caller, panel_tenant(p, settings))}
    except FhirServersError:  # tenants unknown: show nothing rather than guess
        raise ApiError(503, "panels_misconfigured", "the FHIR servers file cannot be read") from None


def _status(settings, client, caller, panel_id: str, run_id: str) -> dict:
    from rls_cds.panels.service import run_report, run_status

    status = run_status(settings, run_id, client)
    if status is None or status.get("panel") != panel_id or not _sees(caller, status.get("tenant")):
        raise ApiError(404, "unknown_run", f"panel {panel_id} has no run {run_id}")
    report = run_report(settings, run_id, client)
    if report is not None:
        status["report"] = report
    return status


@router.get("/panels")
async def list_panels(request: Request) -> JSONResponse:
    runtime = request.app.state.runtime
    caller = await runtime.authenticate(request)
    panels = _visible_panels(runtime.settings, caller)
    client = _redis(request)

    def build() -> list[dict]:
        out = []
        for p in panels.values():
            latest = _latest_run(runtime.settings, client, caller, p.id)
            out.append(
                {
                    "id": p.id,
                    "title": p.title,
                    "strategy": p.strategy,
                    "schedule": p.schedule,
                    "latest_run": latest and {"run": latest["run"], "status": latest["status"]},
                }
            )
        return out

    return JSONResponse({"panels": await _in_thread(build)})


def _latest_run(settings, client, caller, panel_id: str) -> dict | None:
    from rls_cds.panels.service import panel_runs, run_status

    for rid in panel_runs(settings, panel_id, client, limit=20):
        status = run_status(settings, rid, client)
        if status is not None and _sees(caller, status.get("tenant")):
            return status
    return None


@router.post("/panels/{panel_id}/runs", status_code=202)
async def start_panel_run(panel_id: str, request: Request) -> JSONResponse:
    runtime = request.app.state.runtime
    caller = await runtime.authenticate(request)
    _check_id(panel_id, "panel")
    if panel_id not in _visible_panels(runtime.settings, caller):
        raise ApiError(404, "unknown_panel", f"no panel {panel_id} in the panels file")
    from rls_cds.panels.service import PanelError, start_run

    try:
        run_id = await _in_thread(start_run, runtime.settings, panel_id)
    except PanelError as exc:
        raise ApiError(400, "invalid_panel", str(exc)) from None
    return JSONResponse(
        {"run": run_id, "panel": panel_id, "status_url": f"/panels/{panel_id}/runs/{run_id}"}, status_code=202
    )


@router.get("/panels/{panel_id}/runs/{run_id}")
async def get_panel_run(panel_id: str, run_id: str, request: Request) -> JSONResponse:
    runtime = request.app.state.runtime
    caller = await runtime.authenticate(request)
    _check_id(panel_id, "panel")
    _check_id(run_id, "run")
    client = _redis(request)
    return JSONResponse(await _in_thread(_status, runtime.settings, client, caller, panel_id, run_id))


async def _finished_report(request: Request, panel_id: str, run_id: str) -> tuple[dict, object, object]:
    runtime = request.app.state.runtime
    caller = await runtime.authenticate(request)
    _check_id(panel_id, "panel")
    _check_id(run_id, "run")
    client = _redis(request)
    status = await _in_thread(_status, runtime.settings, client, caller, panel_id, run_id)
    if "report" not in status:
        raise ApiError(409, "run_not_finished", f"run {run_id} is {status.get('status')}; no report yet")
    return status["report"], client, caller


@router.get("/panels/{panel_id}/runs/{run_id}/worklist.csv")
async def get_worklist_csv(panel_id: str, run_id: str, request: Request) -> Response:
    from rls_cds.panels.report import worklist_csv

    report, _, _ = await _finished_report(request, panel_id, run_id)
    return Response(
        worklist_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{panel_id}-{run_id}.csv"'},
    )


@router.get("/panels/{panel_id}/runs/{run_id}/view", response_class=HTMLResponse)
async def view_worklist(
    panel_id: str, run_id: str, request: Request, cause: str | None = None, new: str | None = None
) -> HTMLResponse:
    from rls_cds.panels.html import render_worklist

    report, client, caller = await _finished_report(request, panel_id, run_id)
    history = await _in_thread(_history, request.app.state.runtime.settings, client, caller, panel_id, run_id)
    page = render_worklist(
        report,
        cause=cause or None,
        only_new=new in ("1", "true", "on", "yes"),
        history=history,
        csv_url=f"/panels/{panel_id}/runs/{run_id}/worklist.csv",
    )
    # Patient ids on the page: never cached; no scripts at all (inline CSS and SVG only).
    headers = {
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return HTMLResponse(page, headers=headers)


def _history(settings, client, caller, panel_id: str, run_id: str) -> list[tuple[str, int]]:
    """Worklist size of the panel's finished runs (the caller's tenant) up to this one, oldest first."""
    from rls_cds.panels.service import panel_runs, run_tenant
    from rls_cds.panels.state import RunState

    runs = panel_runs(settings, panel_id, client, limit=50)
    if run_id in runs:
        runs = runs[runs.index(run_id) :]
    out = []
    for rid in runs[:20]:
        meta = RunState(client, rid).meta()
        counts = meta.get("counts")
        if counts and _sees(caller, run_tenant(settings, meta)):
            out.append((rid, int(counts.get("worklist") or 0)))
    return list(reversed(out))
