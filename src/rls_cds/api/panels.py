"""Operator API for panel runs (authenticated like every other endpoint).

GET  /panels                                  configured panels and their latest run
POST /panels/{panel}/runs                     start a run now (202 + run id; Celery does the work)
GET  /panels/{panel}/runs/{run}               status, and the report once finished
GET  /panels/{panel}/runs/{run}/worklist.csv  the worklist as CSV
GET  /panels/{panel}/runs/{run}/view          the worklist as an HTML page (?cause=..&new=1)
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


def _status(settings, client, panel_id: str, run_id: str) -> dict:
    from rls_cds.panels.service import run_report, run_status

    status = run_status(settings, run_id, client)
    if status is None or status.get("panel") != panel_id:
        raise ApiError(404, "unknown_run", f"panel {panel_id} has no run {run_id}")
    report = run_report(settings, run_id, client)
    if report is not None:
        status["report"] = report
    return status


@router.get("/panels")
async def list_panels(request: Request) -> JSONResponse:
    runtime = request.app.state.runtime
    await runtime.authenticate(request)
    panels = _panels(runtime.settings)
    client = _redis(request)

    def build() -> list[dict]:
        from rls_cds.panels.service import panel_runs, run_status

        out = []
        for p in panels.values():
            runs = panel_runs(runtime.settings, p.id, client, limit=1)
            latest = run_status(runtime.settings, runs[0], client) if runs else None
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


@router.post("/panels/{panel_id}/runs", status_code=202)
async def start_panel_run(panel_id: str, request: Request) -> JSONResponse:
    runtime = request.app.state.runtime
    await runtime.authenticate(request)
    _check_id(panel_id, "panel")
    if panel_id not in _panels(runtime.settings):
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
    await runtime.authenticate(request)
    _check_id(panel_id, "panel")
    _check_id(run_id, "run")
    client = _redis(request)
    return JSONResponse(await _in_thread(_status, runtime.settings, client, panel_id, run_id))


async def _finished_report(request: Request, panel_id: str, run_id: str) -> tuple[dict, object]:
    runtime = request.app.state.runtime
    await runtime.authenticate(request)
    _check_id(panel_id, "panel")
    _check_id(run_id, "run")
    client = _redis(request)
    status = await _in_thread(_status, runtime.settings, client, panel_id, run_id)
    if "report" not in status:
        raise ApiError(409, "run_not_finished", f"run {run_id} is {status.get('status')}; no report yet")
    return status["report"], client


@router.get("/panels/{panel_id}/runs/{run_id}/worklist.csv")
async def get_worklist_csv(panel_id: str, run_id: str, request: Request) -> Response:
    from rls_cds.panels.report import worklist_csv

    report, _ = await _finished_report(request, panel_id, run_id)
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

    report, client = await _finished_report(request, panel_id, run_id)
    history = await _in_thread(_history, request.app.state.runtime.settings, client, panel_id, run_id)
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


def _history(settings, client, panel_id: str, run_id: str) -> list[tuple[str, int]]:
    """Worklist size of the panel's finished runs up to this one, oldest first."""
    from rls_cds.panels.service import panel_runs
    from rls_cds.panels.state import RunState

    runs = panel_runs(settings, panel_id, client, limit=50)
    if run_id in runs:
        runs = runs[runs.index(run_id) :]
    out = []
    for rid in runs[:20]:
        counts = RunState(client, rid).meta().get("counts")
        if counts:
            out.append((rid, int(counts.get("worklist") or 0)))
    return list(reversed(out))
