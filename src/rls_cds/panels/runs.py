"""Run orchestration shared by Celery workers and the local `panel run --ndjson` runner.

A run is a plan in Redis (``RunState``): map chunks (NDJSON byte ranges or whole Bulk files) and
reduce units (patient partitions, or patient groups for the per-patient search strategy). Work items
are idempotent; ``advance`` moves a run to its next phase once every item of the current one is done,
and ``stale`` names items that were queued long ago and are still not done (their worker died): any
process may re-enqueue them. ``finalize`` writes the report and sets the final status.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rls_cds.panels import ndjson
from rls_cds.panels.evaluation import Evaluator
from rls_cds.panels.relevance import LabHorizon, Relevance
from rls_cds.panels.report import build_report
from rls_cds.panels.state import RunState
from rls_cds.panels.work import map_blocks, map_lines, reduce_partition, save_map

log = logging.getLogger("rls_cds.panels")

GC_THRESHOLDS = (50_000, 50, 100)  # same tuning as the API and the Celery workers (DESIGN §1)


def new_run_id(panel_id: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def tune_gc() -> None:
    """Freeze what start-up allocated (terminology) and make young-generation collections rare."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


# glibc mallopt parameters (malloc.h); the mmap threshold cannot exceed 32 MiB on 64-bit builds.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MALLOC_MMAP_THRESHOLD = 32 * 2**20
MALLOC_TRIM_THRESHOLD = 512 * 2**20


def tune_malloc() -> bool:
    """Keep freed buffers in the heap for the next work item instead of returning them to the OS.

    A batch process allocates and frees multi-megabyte buffers per work item (blocks read, msgpack
    blobs); by default glibc unmaps them and the next item faults the pages back in one by one:
    ~235,000 page faults and 0.7 s of system time for 10,000 patients with one worker; ~64,000 and
    0.3 s with fixed thresholds, same peak memory (it is reused, not grown). Forked workers inherit
    the setting. False (and nothing changed) where the C library has no mallopt (not glibc)."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)
        and mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)
    )


@dataclass
class Context:
    """What a worker process needs, built once per process."""

    settings: Any
    redis: Any
    terminology: Any
    relevance: Relevance = field(init=False)
    _evaluators: dict = field(default_factory=dict)
    _horizons: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.relevance = Relevance(self.terminology)

    def horizon(self, now_iso: str) -> LabHorizon:
        found = self._horizons.get(now_iso)
        if found is None:
            found = LabHorizon(self.terminology, datetime.fromisoformat(now_iso))
            self._horizons = {now_iso: found}
        return found

    def evaluator(self, now_iso: str, fingerprints: bool = True) -> Evaluator:
        key = (now_iso, fingerprints)
        ev = self._evaluators.get(key)
        if ev is None:
            ev = Evaluator(self.terminology, datetime.fromisoformat(now_iso), fingerprints)
            self._evaluators = {key: ev}
        return ev


def load_terminology(settings) -> Any:
    from rls_cds.core.validation import set_cache_size
    from rls_cds.terminology import load_terminology as load

    set_cache_size(settings.validation_cache_size)  # the core's verdict memo (Celery or CLI run)
    return load(path=settings.terminology_dir)


# --- planning ----------------------------------------------------------------------------------


def partitions_for(total_bytes: int, workers: int, partition_bytes: int) -> int:
    return max(workers, math.ceil(total_bytes / max(1, partition_bytes)), 1)


def create_local_run(
    client,
    files: list[Path],
    panel_id: str,
    workers: int,
    settings,
    now: datetime | None = None,
    tenant: str | None = None,
) -> RunState:
    chunks = ndjson.plan_local(files, settings.panel_chunk_bytes)
    parts = partitions_for(ndjson.total_bytes(files), workers, settings.panel_partition_bytes)
    state = RunState(client, new_run_id(panel_id))
    meta = {
        "panel": panel_id,
        "strategy": "ndjson",
        "tenant": tenant,  # local files belong to no FHIR server: no tenant unless given (API: dev only)
        "status": "mapping",
        "created_at": time.time(),
        "now": (now or datetime.now(UTC)).isoformat(),
        "partitions": parts,
        "has_members": False,
    }
    state.create(
        meta,
        {c.id: c.to_dict() for c in chunks},
        {f"p{p}": {"kind": "partition", "p": p} for p in range(parts)},
    )
    return state


# --- work items --------------------------------------------------------------------------------


def run_map(state: RunState, cid: str, ctx: Context, open_remote=None) -> dict:
    spec = state.chunk(cid)
    if spec is None:
        raise KeyError(f"unknown chunk {cid}")
    chunk = ndjson.Chunk.from_dict(spec)
    meta = state.meta()
    parts = int(meta["partitions"])
    # Incremental runs: a changed old lab still marks its patient as changed (re-read in full).
    horizon = None if meta.get("incremental") or not meta.get("now") else ctx.horizon(meta["now"])
    if chunk.remote:
        if open_remote is None:
            raise RuntimeError("a remote chunk needs a Bulk download session")
        lines = ndjson.iter_stream(open_remote(chunk))
        locate = lambda loc: loc  # noqa: E731 - remote lines are numbered while streaming
        name = chunk.kind or "ndjson"
        out_parts, meds, stats = map_lines(lines, ctx.relevance, parts, locate, horizon)
    else:
        blocks = ndjson.iter_local_blocks(chunk.source, chunk.start, chunk.end)
        locate = lambda loc: ndjson.line_number(chunk.source, loc)  # noqa: E731
        name = Path(chunk.source).name
        out_parts, meds, stats = map_blocks(blocks, ctx.relevance, parts, locate, horizon)
    stats["file"] = name
    stats["chunk"] = cid
    save_map(state, cid, out_parts, meds, stats)
    return stats


def run_reduce(state: RunState, uid: str, ctx: Context, on_patient=None, search=None, refetch=None) -> dict:
    unit = state.unit(uid)
    if unit is None:
        raise KeyError(f"unknown unit {uid}")
    meta = state.meta()
    # No sink (a local run without --tenant): nothing is stored, so no fingerprints to compute.
    evaluator = ctx.evaluator(meta["now"], fingerprints=on_patient is not None)
    if unit["kind"] == "partition":
        return reduce_partition(state, int(unit["p"]), evaluator, on_patient, refetch)
    if search is None:
        raise RuntimeError("a search unit needs the per-patient search strategy")
    return search(state, uid, unit, meta, evaluator, on_patient)


def finalize(state: RunState, reports_dir: Path) -> dict:
    report = build_report(state, reports_dir)
    state.save_report(report)
    state.finish(report["status"], counts=report["counts"])
    state.drop_intermediate(int(state.meta().get("partitions") or 0))
    log.info(
        "panel run finished",
        extra={
            "run": state.run_id,
            "status": report["status"],
            "assessed": report["counts"]["patients_assessed"],
            "in_error": report["counts"]["patients_in_error"],
            "worklist": report["counts"]["worklist"],
        },
    )
    return report


# --- phase control (any process may call these) ------------------------------------------------


def next_actions(state: RunState) -> tuple[str, list[str]]:
    """('map'|'reduce', ids still to do), ('planning'|'finalize'|'done', [])."""
    meta = state.meta()
    if meta.get("status") in ("succeeded", "completed_with_errors", "failed"):
        return "done", []
    if meta.get("status") in ("planning", "exporting"):
        return "planning", []  # no work items before the plan exists: never finalize an empty plan
    pending = state.pending("map")
    if pending:
        return "map", pending
    pending = state.pending("reduce")
    if pending:
        return "reduce", pending
    return "finalize", []


def stale(state: RunState, phase: str, ids: list[str], lease_seconds: float) -> list[str]:
    """Items not done whose last enqueue is older than the lease (or never enqueued)."""
    queued = state.queued_at(phase)
    now = time.time()
    return [i for i in ids if now - queued.get(i, 0.0) > lease_seconds]
