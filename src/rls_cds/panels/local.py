"""`rls-cds panel run --ndjson`: screen local Bulk NDJSON files with N worker processes, no FHIR server.

Same plan, work items, run state and report as a Celery run; the workers are forked processes that
inherit the loaded terminology (copy-on-write, frozen out of the GC) instead of Celery workers.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import redis

from rls_cds.panels import ndjson
from rls_cds.panels.runs import (
    Context,
    create_local_run,
    finalize,
    run_map,
    run_reduce,
    tune_gc,
    tune_malloc,
)
from rls_cds.panels.state import RunState

# Per-run globals, set in the parent before forking: the workers inherit them (terminology included).
_CTX: Context | None = None
_URL: str | None = None
_CTX_ON_PATIENT = None


def _child_init() -> None:
    # A forked child must not share the parent's Redis sockets.
    global _CTX
    assert _CTX is not None
    _CTX.redis = redis.Redis.from_url(_URL, socket_timeout=30)


def _map_job(args: tuple[str, str]) -> dict:
    rid, cid = args
    stats = run_map(RunState(_CTX.redis, rid), cid, _CTX)
    return {"resources": stats["resources"]}


def _reduce_job(args: tuple[str, str]) -> dict:
    rid, uid = args
    result = run_reduce(RunState(_CTX.redis, rid), uid, _CTX, on_patient=_CTX_ON_PATIENT)
    return {"patients": result["assessed"] + len(result["errors"])}


def run_ndjson(
    paths: list[str],
    workers: int,
    settings,
    redis_url: str,
    terminology,
    panel_id: str = "local",
    tenant: str | None = None,
    progress: Callable[[str, int, int, dict], None] | None = None,
) -> dict:
    """Run the whole screening; returns the report (also written under settings.reports_dir)."""
    global _CTX, _URL, _CTX_ON_PATIENT
    files = ndjson.ndjson_files(paths)
    client = redis.Redis.from_url(redis_url, socket_timeout=30)
    _URL = redis_url
    _CTX = Context(settings=settings, redis=client, terminology=terminology)
    state = create_local_run(client, files, panel_id, workers, settings, tenant=tenant)
    _CTX_ON_PATIENT = None
    if tenant:  # local files belong to no FHIR server: assessments are stored only when asked
        from rls_cds.panels.assessments import AssessmentSink

        _CTX_ON_PATIENT = AssessmentSink(settings, tenant, time.time(), state.run_id)
    # Import the clinical core (and build the evaluator the reduce will use) before forking.
    _CTX.evaluator(state.meta()["now"], fingerprints=_CTX_ON_PATIENT is not None)
    tune_gc()
    tune_malloc()
    try:
        _map_and_reduce(state, workers, progress)
    except BrokenProcessPool:
        state.finish("failed", run_errors=["a worker process died (out of memory?); run it again"])
        raise RuntimeError("a worker process died; the run was marked failed") from None
    except BaseException as exc:
        # Ctrl-C or a bug: the run must not stay "active" for ever in `panel status`.
        with contextlib.suppress(redis.RedisError):
            state.finish("failed", run_errors=[f"the run stopped ({type(exc).__name__}); run it again"])
        raise
    state.set_meta(status="finalizing")
    return finalize(state, Path(settings.reports_dir))


def _map_and_reduce(state: RunState, workers: int, progress) -> None:
    totals = {"resources": 0, "patients": 0, "started": time.perf_counter()}
    map_items = [(state.run_id, c) for c in state.ids("map")]
    reduce_items = [(state.run_id, u) for u in state.ids("reduce")]
    if workers <= 1:
        _drive("map", map(_map_job, map_items), len(map_items), totals, progress)
        state.set_meta(status="reducing")
        _drive("reduce", map(_reduce_job, reduce_items), len(reduce_items), totals, progress)
        return
    # A pool that notices a dead worker (BrokenProcessPool) instead of waiting for it forever.
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_child_init)
    try:
        _drive("map", _unordered(pool, _map_job, map_items), len(map_items), totals, progress)
        state.set_meta(status="reducing")
        _drive("reduce", _unordered(pool, _reduce_job, reduce_items), len(reduce_items), totals, progress)
    finally:
        pool.shutdown(cancel_futures=True)


def _unordered(pool: ProcessPoolExecutor, fn, items: list):
    return (f.result() for f in as_completed([pool.submit(fn, item) for item in items]))


def _drive(phase, results, total: int, totals: dict, progress) -> None:
    for done, r in enumerate(results, 1):
        totals["resources"] += r.get("resources", 0)
        totals["patients"] += r.get("patients", 0)
        if progress is not None:
            progress(phase, done, total, totals)
