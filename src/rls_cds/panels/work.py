"""The two kinds of batch work, both idempotent: map a chunk of NDJSON, reduce one partition of patients.

- map: decode every line of the chunk into thin Structs (msgspec), drop what no rule can use, and
  file what is left under the partition of its patient (crc32 of 'Patient/<id>' mod P). Medications
  (no patient of their own) go to the run's Medication table. Output: one msgpack blob per partition.
- reduce: gather partition p's blobs from every chunk, join each patient's resources across the
  per-type files (and the Medications their orders point at), evaluate each patient with the clinical
  core and keep the outcome. Patients expected but absent, or whose data could not be read completely,
  go to the error report with the reason.

Memory: a map holds one chunk's kept facts; a reduce holds one partition's (100–500 patients).
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from rls_cds.panels import thin
from rls_cds.panels.evaluation import Evaluator
from rls_cds.panels.relevance import Relevance
from rls_cds.panels.state import RunState

log = logging.getLogger("rls_cds.panels")

MAX_ERRORS_PER_CHUNK = 200  # beyond this a chunk reports a count, not every line


def partition_of(patient_key: str, partitions: int) -> int:
    return zlib.crc32(patient_key.encode()) % partitions


def _unknown_type(exc: msgspec.ValidationError) -> bool:
    msg = str(exc)
    return msg.startswith("Invalid value") and msg.endswith("`$.resourceType`")


def map_lines(
    lines: Iterable[tuple[int, bytes]],
    relevance: Relevance,
    partitions: int,
    locate: Callable[[int], int] = lambda loc: loc,
) -> tuple[dict[int, list], dict[str, thin.Medication], dict]:
    """(parts, medications, stats) for the lines of one chunk. ``locate`` turns a line's position
    into its 1-based line number (called only for bad lines)."""
    decode = thin.LINE_DECODER.decode
    keep = relevance.keep
    key_of = thin.patient_key
    crc = zlib.crc32
    parts: dict[int, list] = {}
    meds: dict[str, thin.Medication] = {}
    resources = kept = other = unlinked = 0
    errors: list[dict] = []
    bad = 0
    for loc, line in lines:
        try:
            res = decode(line)
        except msgspec.ValidationError as exc:
            if _unknown_type(exc):
                other += 1  # a resource type no rule reads (Encounter, Procedure, ...)
                continue
            bad += 1
            if len(errors) < MAX_ERRORS_PER_CHUNK:
                errors.append({"line": locate(loc), "reason": f"invalid resource: {exc}"})
            continue
        except msgspec.DecodeError as exc:
            bad += 1
            if len(errors) < MAX_ERRORS_PER_CHUNK:
                errors.append({"line": locate(loc), "reason": f"malformed JSON: {exc}"})
            continue
        resources += 1
        wanted = keep(res)
        if wanted is False:
            continue
        if type(res) is thin.Medication:
            if res.id:
                meds[res.id] = res
            continue
        key = key_of(res)
        if key is None:
            unlinked += 1
            continue
        kept += 1
        p = crc(key.encode()) % partitions
        bucket = parts.get(p)
        if bucket is None:
            parts[p] = [res]
        else:
            bucket.append(res)
    stats = {
        "resources": resources,
        "kept": kept,
        "other_types": other,
        "unlinked": unlinked,
        "bad_lines": bad,
        "errors": errors,
    }
    return parts, meds, stats


def save_map(state: RunState, cid: str, parts: dict[int, list], meds: dict, stats: dict) -> None:
    enc = thin.PACK_ENCODER.encode
    state.save_map_output(
        cid,
        {p: enc(items) for p, items in parts.items()},
        {mid: enc(m) for mid, m in meds.items()},
        stats,
    )


# --- reduce ------------------------------------------------------------------------------------


def _external_med_ref(res: thin.Resource) -> str | None:
    if type(res) is not thin.MedicationRequest or res.medicationReference is None:
        return None
    ref = res.medicationReference.reference or ""
    if ref.startswith("Medication/"):
        return ref[len("Medication/") :]
    idx = ref.rfind("/Medication/")
    return ref[idx + len("/Medication/") :] if idx >= 0 else None


def group_partition(blobs: Iterable[bytes]) -> dict[str, list]:
    by_patient: dict[str, list] = {}
    key_of = thin.patient_key
    for blob in blobs:
        for res in thin.PACK_DECODER.decode(blob):
            key = key_of(res)
            items = by_patient.get(key)
            if items is None:
                by_patient[key] = [res]
            else:
                items.append(res)
    return by_patient


def reduce_partition(
    state: RunState,
    p: int,
    evaluator: Evaluator,
    on_patient: Callable[[str, Any], None] | None = None,
) -> dict:
    """Evaluate every patient of partition p; returns the unit result (also saved in the state)."""
    t0 = time.perf_counter()
    failed_kinds = frozenset(s.get("kind") or "ndjson" for s in state.mapstats() if s.get("failed"))
    by_patient = group_partition(state.part_blobs(p))
    members = state.members(p)
    wanted_meds = {m for items in by_patient.values() for r in items if (m := _external_med_ref(r))}
    meds = {mid: thin.MED_DECODER.decode(raw) for mid, raw in state.meds(wanted_meds).items()}
    result = new_result(f"p{p}")
    for key, items in sorted(by_patient.items()):
        if members is not None and key not in members:
            result["outside_panel"] += 1  # resources of patients not in the Group: not ours to report
            continue
        pid = key.split("/", 1)[1]
        if not any(type(r) is thin.Patient for r in items):
            if members is not None:
                continue  # handled below as "no Patient resource in the export"
            result["warnings"] += 1  # facts for a patient whose Patient resource is not in the files
        if failed_kinds:
            add_error(result, pid, "incomplete export: could not read " + ", ".join(sorted(failed_kinds)))
            continue
        evaluate_patient(result, pid, _resources_for(items, meds), evaluator, on_patient)
    if members is not None:
        present = {k for k, items in by_patient.items() if any(type(r) is thin.Patient for r in items)}
        for key in sorted(members - present):
            add_error(result, key.split("/", 1)[1], "no Patient resource for this member in the export")
    result["seconds"] = round(time.perf_counter() - t0, 4)
    state.save_result(f"p{p}", result)
    return result


def _resources_for(items: list, meds: dict[str, thin.Medication]) -> list[dict]:
    out: list[dict] = []
    added: set[str] = set()
    to_res = thin.to_resource
    for res in items:
        mid = _external_med_ref(res)
        if mid is not None:
            med = meds.get(mid)
            if med is None:
                continue  # the Medication is not a drug any rule knows (or is absent): nothing to say
            if mid not in added:
                added.add(mid)
                out.append(to_res(med))
        out.append(to_res(res))
    return out


def new_result(uid: str) -> dict:
    return {
        "unit": uid,
        "assessed": 0,
        "worklist": [],
        "errors": [],
        "cause_patients": {},
        "actionable_patients": {},
        "outside_panel": 0,
        "warnings": 0,
    }


def add_error(result: dict, pid: str, reason: str) -> None:
    result["errors"].append({"patient": pid, "reason": reason})


def evaluate_patient(
    result: dict,
    pid: str,
    resources: list[dict],
    evaluator: Evaluator,
    on_patient: Callable[[str, Any], None] | None,
    missing: frozenset[str] = frozenset(),
) -> None:
    try:
        outcome = evaluator(resources, missing)
    except Exception as exc:  # noqa: BLE001 - one bad record must not stop the run; it is reported
        add_error(result, pid, f"evaluation failed ({type(exc).__name__})")
        log.warning("patient evaluation failed", extra={"error_type": type(exc).__name__})
        return
    if on_patient is not None:
        try:
            on_patient(pid, outcome)
        except Exception as exc:  # noqa: BLE001 - e.g. store down: the patient is not assessed
            add_error(result, pid, f"assessment could not be stored ({type(exc).__name__})")
            return
    result["assessed"] += 1
    for cause in outcome.causes:
        result["cause_patients"][cause] = result["cause_patients"].get(cause, 0) + 1
    if outcome.actionable:
        for cause in {f["cause"] for f in outcome.actionable}:
            result["actionable_patients"][cause] = result["actionable_patients"].get(cause, 0) + 1
        result["worklist"].append({"patient": pid, "findings": outcome.actionable})
