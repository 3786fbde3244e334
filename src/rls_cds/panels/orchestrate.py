"""Panel runs on Celery: create, plan (Bulk export or membership search), advance, sweep, finalize.

Phases: ``planning`` -> (bulk) ``exporting`` -> ``mapping`` -> ``reducing`` -> ``finalizing`` -> one of
``succeeded`` / ``completed_with_errors`` / ``failed``. ``advance`` is called after every work item and
by the periodic sweep; it enqueues whatever is pending and not already queued within the lease, under
a short per-run lock so two workers finishing at once do not both fan out the next phase.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from rls_cds.fhir import bulk
from rls_cds.panels import search
from rls_cds.panels.config import Panel
from rls_cds.panels.ndjson import Chunk
from rls_cds.panels.runs import new_run_id, next_actions, stale
from rls_cds.panels.state import TERMINAL, RunState, runs_of
from rls_cds.panels.work import partition_of
from rls_cds.provenance import code_digest, files_digest

log = logging.getLogger("rls_cds.panels")


def judged_with(terminology_dir: Path | str) -> str:
    """Digest of what decides findings besides a member's data: the service's code and the
    terminology tables. Results judged under another digest are never carried over (a table edit or
    a new release re-reads every member at the next run, not up to RLS_PANEL_FULL_RUN_EVERY_DAYS later)."""
    tables = files_digest(Path(terminology_dir), (".csv", ".yaml", ".yml"))
    return hashlib.sha256(f"{code_digest()}:{tables}".encode()).hexdigest()[:16]


def create_panel_run(
    client,
    panel: Panel,
    since: str | None = None,
    tenant: str | None = None,
    full_every_days: float | None = None,
    judgement: str | None = None,
) -> RunState:
    """``tenant`` (config.panel_tenant) goes into the run meta: the API shows a run to its tenant only.
    ``full_every_days``: an incremental panel still reads everything when its latest full run is
    older than this (``last_success``). ``judgement``: ``judged_with()`` of this run; an incremental
    run follows only a run judged the same way."""
    state = RunState(client, new_run_id(panel.id))
    previous = None
    if since is None and panel.incremental and panel.strategy == "bulk":
        previous, since = last_success(client, panel.id, full_every_days, judgement)
    meta = {
        "panel": panel.id,
        "panel_config": {k: v for k, v in asdict(panel).items() if k != "extra"},
        "strategy": panel.strategy,
        "fhir_server": panel.fhir_server,
        "tenant": tenant,
        "status": "planning",
        "created_at": time.time(),
        "now": datetime.now(UTC).isoformat(),
        "since": since,
        # Incremental: the export holds changes only; unchanged members keep `previous_run`'s results.
        "incremental": previous is not None,
        "previous_run": previous,
        "partitions": 0,
        "has_members": False,
        "judged_with": judgement,
    }
    state.create(meta, {}, {})
    return state


def last_success(
    client, panel_id: str, full_every_days: float | None = None, judgement: str | None = None
) -> tuple[str | None, str | None]:
    """(run id, export time) of the panel's latest successful run: the next incremental run's _since.

    (None, None), i.e. a full run, when no successful full run is among the last 100 runs or the
    latest one started more than ``full_every_days`` ago. An incremental run carries over the results
    of members whose data did not change, and those were judged at their own run's date: look-back
    windows move ("no iron studies in 12 months" becomes true with no new data), so every member is
    read and judged again at least that often."""
    latest = None
    for rid in runs_of(client, panel_id, 100):
        meta = RunState(client, rid).meta()
        if meta.get("status") != "succeeded" or not meta.get("transaction_time"):
            continue
        if latest is None and judgement is not None and meta.get("judged_with") != judgement:
            return None, None  # judged by other tables or code: its results must not be carried
        latest = latest or (rid, meta["transaction_time"])
        if not meta.get("incremental"):
            age = time.time() - float(meta.get("created_at") or 0)
            too_old = full_every_days is not None and age > full_every_days * 86400
            return (None, None) if too_old else latest
    return None, None


def _chunks_units(members: list[str], per_task: int) -> tuple[int, dict[int, list[str]]]:
    parts = max(1, math.ceil(len(members) / per_task))
    by_part: dict[int, list[str]] = {}
    for pid in members:
        key = f"Patient/{pid}"
        by_part.setdefault(partition_of(key, parts), []).append(key)
    return parts, by_part


def plan(state: RunState, settings, session_factory: Callable, heartbeat: Callable = lambda: None) -> None:
    """Resolve the panel's patients; for bulk also run the export and cut its files into chunks.
    ``heartbeat`` is called while waiting for the export (keeps the planner's lease)."""
    meta = state.meta()
    cfg = meta["panel_config"]
    base = meta["fhir_server"]
    session = session_factory(base)
    timeout = settings.background_fhir_timeout_seconds
    if cfg["strategy"] == "bulk":
        members = search.group_members(session, base, cfg["group"], timeout)
        parts, by_part = _chunks_units(members, settings.panel_patients_per_task)
        state.add_members(by_part)
        if meta.get("incremental"):
            _force_full_reads(state, meta["previous_run"], by_part, parts)
        state.set_meta(status="exporting", has_members=True, expected_patients=len(members), partitions=parts)
        status_url = bulk.kickoff(session, base, cfg["group"], since=meta.get("since"), timeout=timeout)
        state.set_meta(status_url=status_url)
        manifest = bulk.wait_for_manifest(
            session,
            status_url,
            time.monotonic() + settings.panel_export_timeout_seconds,
            timeout=timeout,
            on_progress=lambda _progress: heartbeat(),
        )
        chunks = {}
        for n, f in enumerate(manifest.output):
            kind = str(f.get("type") or "")
            chunks[f"{n:04d}-{kind}"] = Chunk(f"{n:04d}-{kind}", f["url"], kind, remote=True).to_dict()
        export_errors = bulk.read_error_files(session, manifest)
        state.add_chunks(chunks)
        state.add_units({f"p{p}": {"kind": "partition", "p": p} for p in range(parts)})
        state.set_meta(
            status="mapping",
            transaction_time=manifest.transaction_time,
            requires_access_token=manifest.requires_access_token,
            export_errors=export_errors,
        )
        return
    source = cfg.get("group") and "group" or cfg.get("patients") and "patients" or "search"
    if source == "group":
        ids = search.group_members(session, base, cfg["group"], timeout)
    elif source == "patients":
        ids = list(dict.fromkeys(cfg["patients"]))
    else:
        ids = search.search_patients(session, base, cfg["search"], timeout)
    per = settings.panel_patients_per_task
    units = {
        f"g{n // per:05d}": {"kind": "search", "patients": ids[n : n + per]} for n in range(0, len(ids), per)
    }
    state.add_units(units)
    state.set_meta(status="reducing", expected_patients=len(ids), transaction_time=meta["now"])


def _force_full_reads(state: RunState, previous_run: str, by_part: dict[int, list[str]], parts: int) -> None:
    """An incremental export only shows changed data: members the previous run did not assess (new in
    the Group, or in its error report) must be read in full even if nothing of theirs changed."""
    prev = RunState(state.r, previous_run)
    prev_parts = int(prev.meta().get("partitions") or 0)
    assessed: set[str] = set()
    for p in range(prev_parts):
        assessed |= prev.members(p) or set()
    for e in (prev.report() or {}).get("errors") or []:
        assessed.discard(f"Patient/{e['patient']}")
    state.add_forced({p: [k for k in keys if k not in assessed] for p, keys in by_part.items()})


def advance(state: RunState, enqueue: Callable[[str, str, str | None], None], lease: float) -> str:
    """Enqueue what the run needs next; returns the phase seen. enqueue(kind, run_id, item)."""
    lock = f"advance:{int(time.time() * 1000)}"
    if not state.r.set(state.k("lock:advance"), lock, nx=True, px=5000):
        return "busy"
    try:
        phase, pending = next_actions(state)
        if phase in ("map", "reduce"):
            if phase == "reduce" and state.meta().get("status") == "mapping":
                state.set_meta(status="reducing")
            todo = stale(state, phase, pending, lease)
            if todo:
                state.mark_queued(phase, todo)
                for item in todo:
                    enqueue(phase, state.run_id, item)
        elif phase == "planning":
            # The planner holds lock:plan (refreshed while it waits for the export); none and an old
            # run means its worker died: plan again.
            meta = state.meta()
            if not state.r.exists(state.k("lock:plan")) and time.time() - meta["created_at"] > lease:
                enqueue("start", state.run_id, None)
        elif phase == "finalize" and state.claim("finalize", ttl=max(1, int(lease))):
            state.set_meta(status="finalizing")
            enqueue("finalize", state.run_id, None)
        return phase
    finally:
        if state.r.get(state.k("lock:advance")) == lock.encode():
            state.r.delete(state.k("lock:advance"))


def fail(state: RunState, reason: str, reports_dir=None) -> None:
    """A run-level failure (export refused, server down): terminal, with the reason; every member
    already known is listed in the error report with it."""
    meta = state.meta()
    errors = list(meta.get("run_errors") or []) + [reason]
    members: list[str] = []
    for p in range(int(meta.get("partitions") or 0)):
        members.extend(k.split("/", 1)[1] for k in sorted(state.members(p) or ()))
    report = {
        "run": state.run_id,
        "panel": meta["panel"],
        "status": "failed",
        "started_at": meta.get("created_at"),
        "finished_at": time.time(),
        "counts": {
            "patients_assessed": 0,
            "patients_in_error": len(members),
            "patients_expected": meta.get("expected_patients"),
            "worklist": 0,
            "new_since_previous": 0,
            "resources": 0,
        },
        "patients_per_cause": {},
        "actionable_per_cause": {},
        "worklist": [],
        "errors": [{"patient": m, "reason": reason} for m in sorted(members)],
        "parse_errors": [],
        "export_errors": [],
        "run_errors": errors,
    }
    if reports_dir is not None:
        from pathlib import Path

        from rls_cds.panels.report import write_files

        report["files"] = write_files(report, Path(reports_dir))
    state.save_report(report)
    state.finish("failed", run_errors=errors, counts=report["counts"])
    log.warning("panel run failed", extra={"run": state.run_id, "reason": reason})


def cleanup_export(state: RunState, session_factory: Callable) -> None:
    meta = state.meta()
    if meta.get("status_url") and not meta.get("export_deleted"):
        ok = bulk.delete_export(session_factory(meta["fhir_server"]), meta["status_url"])
        state.set_meta(export_deleted=ok)


def is_terminal(state: RunState) -> bool:
    return state.meta().get("status") in TERMINAL
