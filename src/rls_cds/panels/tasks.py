"""Celery tasks of panel runs (queue ``batch``) and the beat schedule built from the panels file.

Every task is idempotent and ends by calling ``advance`` (enqueue what the run needs next). A task
lost with a killed worker is re-enqueued by ``sweep`` (beat, every 30 s; also ``panel run --wait``)
once its lease (settings.panel_lease_seconds) has passed. Logs carry run ids and counts only.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

from celery.schedules import crontab

from rls_cds.background.celery_app import app
from rls_cds.fhir import bulk
from rls_cds.panels import orchestrate, search
from rls_cds.panels.runs import Context, finalize, load_terminology, run_map, run_reduce
from rls_cds.panels.state import RunState, active_runs
from rls_cds.settings import get_settings

log = logging.getLogger("rls_cds.panels")

SWEEP_SECONDS = 30.0


@lru_cache(maxsize=1)
def context() -> Context:
    settings = get_settings()
    from rls_cds.panels.service import redis_client

    return Context(settings=settings, redis=redis_client(settings), terminology=load_terminology(settings))


def session_for(base: str):
    from rls_cds.fhir.smart import session_for as smart_session

    return smart_session(base, get_settings())


def _enqueue(kind: str, run_id: str, item: str | None) -> None:
    if kind == "map":
        map_chunk.apply_async(args=[run_id, item], queue="batch")
    elif kind == "reduce":
        reduce_unit.apply_async(args=[run_id, item], queue="batch")
    elif kind == "start":
        start_run.apply_async(args=[run_id], queue="batch")
    elif kind == "finalize":
        finalize_run.apply_async(args=[run_id], queue="batch")


def _advance(state: RunState) -> str:
    return orchestrate.advance(state, _enqueue, get_settings().panel_lease_seconds)


def _live_run(run_id: str) -> tuple[Context, RunState | None]:
    """The worker context and the run's state; None when the run is gone or already finished (a task
    redelivered or enqueued twice then has nothing left to do)."""
    ctx = context()
    state = RunState(ctx.redis, run_id)
    if not state.exists() or orchestrate.is_terminal(state):
        return ctx, None
    return ctx, state


def sweep_run(run_id: str) -> str:
    """Re-enqueue whatever of the run is pending and past its lease (callable from any process)."""
    ctx = context()
    state = RunState(ctx.redis, run_id)
    if not state.exists():
        return "unknown"
    return _advance(state)


def _planning_time_limits(settings) -> tuple[float, float]:
    """(soft, hard) time limits of the planner. It waits for the Bulk export for up to
    panel_export_timeout_seconds, so the worker-wide task limit (300 s) would cut off every export
    slower than that: the export's wait comes on top of the limit of an ordinary task."""
    wait, limit = settings.panel_export_timeout_seconds, settings.task_time_limit_seconds
    return wait + 0.8 * limit, wait + limit


_PLAN_SOFT_LIMIT, _PLAN_HARD_LIMIT = _planning_time_limits(get_settings())


@app.task(
    name="rls_cds.panels.tasks.start_run",
    acks_late=True,
    soft_time_limit=_PLAN_SOFT_LIMIT,
    time_limit=_PLAN_HARD_LIMIT,
)
def start_run(run_id: str) -> str:
    ctx = context()
    state = RunState(ctx.redis, run_id)
    if not state.exists() or state.meta().get("status") not in ("planning", "exporting"):
        return "skipped"  # redelivered after planning finished
    lease = max(1, int(ctx.settings.panel_lease_seconds))
    lock = state.k("lock:plan")
    if not ctx.redis.set(lock, b"1", nx=True, ex=lease):
        return "busy"  # another worker is planning this run
    try:
        orchestrate.plan(state, ctx.settings, session_for, heartbeat=lambda: ctx.redis.expire(lock, lease))
    except (bulk.BulkError, search.FetchError) as exc:
        orchestrate.fail(state, exc.reason, ctx.settings.reports_dir)
        return "failed"
    except Exception as exc:
        orchestrate.fail(state, f"planning failed ({type(exc).__name__})", ctx.settings.reports_dir)
        raise
    finally:
        ctx.redis.delete(lock)
    log.info("panel run planned", extra={"run": run_id, **state.counts()})
    return _advance(state)


def _open_remote(state: RunState):
    meta = state.meta()
    settings = get_settings()
    session = session_for(meta["fhir_server"])

    def open_remote(chunk):
        return bulk.download(
            session,
            chunk.source,
            bool(meta.get("requires_access_token", True)),
            timeout=settings.background_fhir_timeout_seconds,
            attempts=settings.panel_download_attempts,
        )

    return open_remote


@app.task(name="rls_cds.panels.tasks.map_chunk", bind=True, acks_late=True, max_retries=None)
def map_chunk(self, run_id: str, chunk_id: str) -> str:
    ctx, state = _live_run(run_id)
    if state is None:
        return "skipped"
    if chunk_id not in state.done("map"):
        try:
            run_map(state, chunk_id, ctx, _open_remote(state))
        except bulk.BulkError as exc:
            attempts = get_settings().panel_download_attempts
            if self.request.retries + 1 < attempts:
                raise self.retry(countdown=min(30, 2**self.request.retries), max_retries=attempts) from None
            _chunk_failed(state, chunk_id, exc.reason)
    return _advance(state)


def _chunk_failed(state: RunState, chunk_id: str, reason: str) -> None:
    """Persistent download failure: recorded as the chunk's outcome; its patients go to the error report."""
    spec = state.chunk(chunk_id) or {}
    kind = spec.get("kind") or "ndjson"
    stats = {"resources": 0, "kept": 0, "other_types": 0, "unlinked": 0, "bad_lines": 0, "errors": []}
    state.save_map_output(chunk_id, {}, {}, {**stats, "failed": reason, "kind": kind, "file": kind})
    errors = list(state.meta().get("run_errors") or [])
    state.set_meta(run_errors=[*errors, f"{kind} file could not be downloaded: {reason}"])
    if kind == "Patient":
        state.set_meta(patients_known=False)
    log.warning("panel chunk failed", extra={"run": state.run_id, "kind": kind, "reason": reason})


@app.task(name="rls_cds.panels.tasks.reduce_unit", acks_late=True)
def reduce_unit(run_id: str, unit_id: str) -> str:
    ctx, state = _live_run(run_id)
    if state is None:
        return "skipped"
    if unit_id not in state.done("reduce"):
        meta = state.meta()
        cfg = meta.get("panel_config") or {}
        on_patient = _sink(state, meta, cfg)
        settings = ctx.settings

        def by_search(st, uid, unit, m, evaluator, sink):
            # Stop starting patients well before the soft time limit (80 %): the result is then saved.
            deadline = time.monotonic() + settings.task_time_limit_seconds * 0.6
            timeout = settings.background_fhir_timeout_seconds
            return search.run_search_unit(st, uid, unit, m, evaluator, sink, session_for, timeout, deadline)

        def refetch(pid: str) -> list[dict]:
            session = session_for(meta["fhir_server"])
            return search.patient_resources(
                session, meta["fhir_server"], pid, settings.background_fhir_timeout_seconds
            )

        run_reduce(state, unit_id, ctx, on_patient=on_patient, search=by_search, refetch=refetch)
    return _advance(state)


def _sink(state: RunState, meta: dict, cfg: dict):
    from rls_cds.panels.assessments import AssessmentSink
    from rls_cds.panels.service import run_tenant

    tenant = run_tenant(get_settings(), meta) or "default"
    read_at = meta.get("created_at") or 0.0
    sink = AssessmentSink(get_settings(), tenant, float(read_at), state.run_id)
    if not cfg.get("writeback"):
        return sink
    from rls_cds.panels.writeback import DetectedIssueWriter

    writer = DetectedIssueWriter(session_for(meta["fhir_server"]), meta["fhir_server"], meta["panel"])

    def both(pid, outcome):
        sink(pid, outcome)
        writer(pid, outcome)

    return both


@app.task(name="rls_cds.panels.tasks.finalize_run", acks_late=True)
def finalize_run(run_id: str) -> str:
    ctx, state = _live_run(run_id)
    if state is None:
        return "skipped"
    orchestrate.cleanup_export(state, session_for)
    report = finalize(state, ctx.settings.reports_dir)
    return report["status"]


@app.task(name="rls_cds.panels.tasks.sweep")
def sweep() -> int:
    """Beat: advance every active run (re-enqueues work lost with a dead worker)."""
    ctx = context()
    runs = active_runs(ctx.redis)
    for run_id in runs:
        sweep_run(run_id)
    return len(runs)


@app.task(name="rls_cds.panels.tasks.scheduled_run")
def scheduled_run(panel_id: str) -> str:
    from rls_cds.panels.service import start_run as start

    return start(get_settings(), panel_id)


def beat_schedule(settings) -> dict:
    """The sweep, plus one entry per panel with a cron schedule."""
    from rls_cds.panels.config import PanelConfigError, cron_fields, load_panels

    schedule = {
        "rls-panels-sweep": {
            "task": "rls_cds.panels.tasks.sweep",
            "schedule": SWEEP_SECONDS,
            "options": {"queue": "batch"},
        },  # fmt: skip
    }
    try:
        panels = load_panels(settings)
    except PanelConfigError as exc:
        log.error("panels file invalid: no panel schedules", extra={"error": str(exc)})
        return schedule
    for panel in panels.values():
        if panel.schedule:
            schedule[f"rls-panel-{panel.id}"] = {
                "task": "rls_cds.panels.tasks.scheduled_run",
                "schedule": crontab(**cron_fields(panel.schedule)),
                "args": [panel.id],
                "options": {"queue": "batch"},
            }
    return schedule


app.conf.beat_schedule = {**(app.conf.beat_schedule or {}), **beat_schedule(get_settings())}
