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
import orjson

from rls_cds.core.facts import patient_of_reference
from rls_cds.fhir import thin
from rls_cds.panels.evaluation import Evaluator
from rls_cds.panels.relevance import LabHorizon, Relevance
from rls_cds.panels.report import empty_tally
from rls_cds.panels.state import RunState

log = logging.getLogger("rls_cds.panels")

MAX_ERRORS_PER_CHUNK = 200  # beyond this a chunk reports a count, not every line


def partition_of(patient_key: str, partitions: int) -> int:
    return zlib.crc32(patient_key.encode()) % partitions


def _unknown_type(exc: msgspec.ValidationError) -> bool:
    msg = str(exc)
    return msg.startswith("Invalid value") and msg.endswith("`$.resourceType`")


class _Sorter:
    """Files decoded thin resources under (partition, patient); drops what no rule can use."""

    def __init__(self, relevance: Relevance, partitions: int, horizon: LabHorizon | None = None):
        self.relevance = relevance
        self.horizon = horizon
        self.partitions = partitions
        # (partition, patient key) of each subject reference seen (a patient has many resources).
        self.place_of_ref: dict[str, tuple[int, str]] = {}
        self.parts: dict[int, dict[str, list]] = {}
        self.meds: dict[str, thin.Medication] = {}
        self.resources = self.kept = self.unlinked = 0

    def file(self, items: list) -> None:
        rel = self.relevance
        lab_code, lab_cache = rel.lab_code, rel.lab_cache
        condition_code, condition_cache = rel.condition_code, rel.condition_cache
        key_of = thin.patient_key
        crc = zlib.crc32
        observation, condition = thin.Observation, thin.Condition
        patient, medication, medication_request = thin.Patient, thin.Medication, thin.MedicationRequest
        place_of_ref, parts, partitions = self.place_of_ref, self.parts, self.partitions
        horizon = self.horizon
        kept = unlinked = 0
        for res in items:
            kind = type(res)
            if kind is observation:
                # The hot path (most of an export): inline memoised lookup of the LOINC codes.
                code = res.code
                if code is None:
                    continue
                for c in code.coding:
                    analyte = lab_cache.get((c.system, c.code))
                    if analyte is None:
                        analyte = lab_code(c.system, c.code)
                    if analyte:
                        break
                else:
                    continue
                if horizon is not None and horizon.too_old(res, analyte):
                    continue
            elif kind is condition:  # same as Relevance.condition, inlined like the labs
                code = res.code
                if code is None:
                    continue
                for c in code.coding:
                    hit = condition_cache.get((c.system, c.code))
                    if hit is None:
                        hit = condition_code(c.system, c.code)
                    if hit:
                        break
                else:
                    continue
            elif kind is medication_request:
                if rel.medication_request(res) is False:
                    continue
            elif kind is medication:
                if res.id and rel.medication(res):
                    self.meds[res.id] = res
                continue
            elif kind is not patient and rel.keep(res) is False:
                continue
            ref = res.subject.reference if kind is not patient and res.subject is not None else None
            where = place_of_ref.get(ref) if ref is not None else None
            if where is None:
                key = key_of(res)
                if key is None:
                    unlinked += 1
                    continue
                where = (crc(key.encode()) % partitions, key)
                if ref is not None:
                    place_of_ref[ref] = where
            kept += 1
            p, key = where
            by_patient = parts.get(p)
            if by_patient is None:
                parts[p] = {key: [res]}
            else:
                mine = by_patient.get(key)
                if mine is None:
                    by_patient[key] = [res]
                else:
                    mine.append(res)
        self.resources += len(items)
        self.kept += kept
        self.unlinked += unlinked


class _Mapper:
    def __init__(
        self,
        relevance: Relevance,
        partitions: int,
        locate: Callable[[int], int],
        horizon: LabHorizon | None = None,
    ):
        self.sorter = _Sorter(relevance, partitions, horizon)
        self.locate = locate
        self.other = self.bad = 0
        self.errors: list[dict] = []
        # Patient key -> resources of theirs on unreadable lines: their data are incomplete (every one
        # of them, not only the first MAX_ERRORS_PER_CHUNK lines listed with a line number).
        self.unreadable: dict[str, list[str]] = {}

    def lines(self, lines: Iterable[tuple[int, bytes]]) -> None:
        """Line by line: each bad line is reported (file and line) and skipped."""
        decode = thin.LINE_DECODER.decode
        batch: list = []
        for loc, line in lines:
            try:
                batch.append(decode(line))
            except msgspec.ValidationError as exc:
                if _unknown_type(exc):
                    self.other += 1  # a resource type no rule reads (Encounter, Procedure, ...)
                else:
                    self._bad(loc, line, f"invalid resource: {exc}")
            except msgspec.DecodeError as exc:
                self._bad(loc, line, f"malformed JSON: {exc}")
            except UnicodeDecodeError:  # msgspec lets the codec's error through, not a DecodeError
                self._bad(loc, line, "malformed JSON: not UTF-8")
            except RecursionError:
                self._bad(loc, line, "malformed JSON: nested too deeply")
            if len(batch) >= 4096:
                self.sorter.file(batch)
                batch = []
        self.sorter.file(batch)

    def blocks(self, blocks: Iterable[tuple[int, bytes]]) -> None:
        """Whole blocks of lines decoded in one call (msgspec decode_lines); a block with a bad line
        is gone through again line by line to report it."""
        decode_lines = thin.LINE_DECODER.decode_lines
        for offset, block in blocks:
            try:
                items = decode_lines(block)
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                self.lines(_lines_of(offset, block))
                continue
            self.sorter.file(items)

    def _bad(self, loc: int, line: bytes, reason: str) -> None:
        self.bad += 1
        if len(self.errors) < MAX_ERRORS_PER_CHUNK:
            self.errors.append({"line": self.locate(loc), "reason": reason})
        owner = _owner_of_line(line)
        if owner is not None:
            self.unreadable.setdefault(owner[0], []).append(owner[1])

    def result(self) -> tuple[dict[int, dict[str, list]], dict[str, thin.Medication], dict]:
        s = self.sorter
        stats = {
            "resources": s.resources,
            "kept": s.kept,
            "other_types": self.other,
            "unlinked": s.unlinked,
            "bad_lines": self.bad,
            "errors": self.errors,
            "unreadable": self.unreadable,
        }
        return s.parts, s.meds, stats


def _owner_of_line(line: bytes) -> tuple[str, str] | None:
    """('Patient/<id>', 'Type/<id>') of a line the thin decoder rejected, when it is JSON naming one."""
    try:
        res = orjson.loads(line)
    except orjson.JSONDecodeError:  # also not UTF-8, nested too deeply
        return None
    if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
        return None
    kind, rid = res["resourceType"], res.get("id")
    name = f"{kind}/{rid}" if isinstance(rid, str) else f"a {kind}"
    if kind == "Patient":
        return (f"Patient/{rid}", name) if isinstance(rid, str) else None
    subject = res.get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    key = patient_of_reference(ref) if isinstance(ref, str) else None
    return (key, name) if key else None


def unreadable_by_patient(mapstats: list[dict], partitions: int, p: int) -> dict[str, str]:
    """Patient key -> why their data are incomplete, for the patients of partition p with a line the
    map could not read ('Observation/f2 in Observation.ndjson')."""
    found: dict[str, list[str]] = {}
    for s in mapstats:
        for key, names in (s.get("unreadable") or {}).items():
            if partition_of(key, partitions) == p:
                found.setdefault(key, []).extend(f"{n} in {s.get('file')}" for n in names)
    return {
        key: "unreadable line in the export (" + ", ".join(sorted(set(where))[:5]) + "): judge by hand"
        for key, where in found.items()
    }


def _lines_of(offset: int, block: bytes):
    for line in block.split(b"\n"):
        if line.strip():
            yield offset, line
        offset += len(line) + 1


def map_lines(
    lines: Iterable[tuple[int, bytes]],
    relevance: Relevance,
    partitions: int,
    locate: Callable[[int], int] = lambda loc: loc,
    horizon: LabHorizon | None = None,
) -> tuple[dict[int, dict[str, list]], dict[str, thin.Medication], dict]:
    """(parts, medications, stats) for one chunk's lines; parts: partition -> patient key -> thin
    resources. ``locate`` turns a line's position into its 1-based line number (bad lines only);
    ``horizon``: also drop labs older than every look-back window (full runs, not incremental)."""
    mapper = _Mapper(relevance, partitions, locate, horizon)
    mapper.lines(lines)
    return mapper.result()


def map_blocks(
    blocks: Iterable[tuple[int, bytes]],
    relevance: Relevance,
    partitions: int,
    locate: Callable[[int], int] = lambda loc: loc,
    horizon: LabHorizon | None = None,
) -> tuple[dict[int, dict[str, list]], dict[str, thin.Medication], dict]:
    """Same as map_lines for (byte offset, block of whole lines) input: local files."""
    mapper = _Mapper(relevance, partitions, locate, horizon)
    mapper.blocks(blocks)
    return mapper.result()


def save_map(state: RunState, cid: str, parts: dict[int, dict], meds: dict, stats: dict) -> None:
    enc = thin.PACK_ENCODER.encode
    state.save_map_output(
        cid,
        {p: enc(items) for p, items in parts.items()},
        {mid: enc(m) for mid, m in meds.items()},
        stats,
    )


# --- reduce ------------------------------------------------------------------------------------


def _external_med_ref(res: dict) -> str | None:
    """'Medication/<id>' a MedicationRequest dict points at outside itself (None: coded or contained)."""
    ref = res.get("medicationReference")
    if ref is None or res.get("resourceType") != "MedicationRequest":
        return None
    ref = ref.get("reference") or ""
    # As the core reads it (facts._resolve_medication): '.../Medication/<id>/_history/<v>' is <id>.
    ref = ref.split("/_history/", 1)[0]
    if ref.startswith("Medication/"):
        return ref[len("Medication/") :]
    idx = ref.rfind("/Medication/")
    return ref[idx + len("/Medication/") :] if idx >= 0 else None


def group_partition(blobs: Iterable[bytes]) -> dict[str, list[dict]]:
    """Merge the chunks' {patient key: [resources]} of one partition. Thin Structs were encoded with
    their tag, so an untyped msgpack decode gives FHIR-shaped dicts (resourceType included) directly."""
    by_patient: dict[str, list[dict]] = {}
    decode = msgspec.msgpack.decode
    for blob in blobs:
        for key, items in decode(blob).items():
            mine = by_patient.get(key)
            if mine is None:
                by_patient[key] = items
            else:
                mine.extend(items)
    return by_patient


def reduce_partition(
    state: RunState,
    p: int,
    evaluator: Evaluator,
    on_patient: Callable[[str, Any], None] | None = None,
    refetch: Callable[[str], list[dict]] | None = None,
) -> dict:
    """Evaluate every patient of partition p; returns the unit result (also saved in the state).

    Incremental runs (an export with ``_since``) hold only what changed: each member with a change
    is re-read in full (``refetch``, per-patient searches) and evaluated; the others keep their
    previous run's worklist entries and count as ``unchanged``."""
    t0 = time.perf_counter()
    meta = state.meta()
    mapstats = state.mapstats()
    failed_kinds = frozenset(s.get("kind") or "ndjson" for s in mapstats if s.get("failed"))
    unreadable = unreadable_by_patient(mapstats, int(meta["partitions"]), p)
    by_patient = group_partition(state.part_blobs(p))
    members = state.members(p)
    result = new_result(f"p{p}")
    if meta.get("incremental") and members is not None and refetch is not None:
        _reduce_incremental(
            state, p, meta, result, by_patient, members, evaluator, on_patient, refetch, unreadable
        )
    else:
        _reduce_full(state, result, by_patient, members, failed_kinds, evaluator, on_patient, unreadable)
    result["seconds"] = round(time.perf_counter() - t0, 4)
    state.save_result(f"p{p}", result)
    return result


def _reduce_full(state, result, by_patient, members, failed_kinds, evaluator, on_patient, unreadable) -> None:
    # `in` first: only orders carry a medicationReference (no call per Observation).
    wanted_meds = {
        m
        for items in by_patient.values()
        for r in items
        if "medicationReference" in r and (m := _external_med_ref(r))
    }
    meds = {mid: msgspec.msgpack.decode(raw) for mid, raw in state.meds(wanted_meds).items()}
    present: set[str] = set()
    for key, items in sorted(by_patient.items()):
        if members is not None and key not in members:
            result["outside_panel"] += 1  # resources of patients not in the Group: not ours to report
            continue
        pid = key.split("/", 1)[1]
        # From the end: the Patient file is read last, so its resource is usually the last item.
        if any(r.get("resourceType") == "Patient" for r in reversed(items)):
            present.add(key)
        elif members is not None:
            continue  # reported below: no Patient resource for this member
        else:
            result["warnings"] += 1  # facts for a patient whose Patient resource is not in the files
        if failed_kinds:
            add_error(result, pid, "incomplete export: could not read " + ", ".join(sorted(failed_kinds)))
            continue
        if key in unreadable:  # assessed without it, the worklist could say the opposite of the core
            add_error(result, pid, unreadable[key])
            continue
        evaluate_patient(result, pid, _with_medications(items, meds), evaluator, on_patient)
    if members is not None:
        for key in sorted(members - present):
            reason = unreadable.get(key) or "no Patient resource for this member in the export"
            add_error(result, key.split("/", 1)[1], reason)
    else:  # patients known only by lines that could not be read
        for key in sorted(set(unreadable) - set(by_patient)):
            add_error(result, key.split("/", 1)[1], unreadable[key])


def _reduce_incremental(
    state, p, meta, result, by_patient, members, evaluator, on_patient, refetch, unreadable
) -> None:
    forced = state.forced(p)  # new members, past errors
    # A member whose changed line could not be read has changed too: re-read in full.
    touched = sorted({k for k in by_patient if k in members} | ((forced | set(unreadable)) & members))
    result["outside_panel"] += sum(1 for k in by_patient if k not in members)
    for key in touched:
        pid = key.split("/", 1)[1]
        try:
            resources = refetch(pid)
        except Exception as exc:  # noqa: BLE001 - reported per patient (reason has no URL or token)
            add_error(result, pid, getattr(exc, "reason", None) or f"re-read failed ({type(exc).__name__})")
            continue
        evaluate_patient(result, pid, resources, evaluator, on_patient)
    carried = members - set(touched)
    result["unchanged"] = len(carried)
    previous = RunState(state.r, meta["previous_run"]).report() if meta.get("previous_run") else None
    for row in (previous or {}).get("worklist") or []:
        if f"Patient/{row['patient']}" in carried:
            result["worklist"].append(
                {"patient": row["patient"], "findings": row["findings"], "carried": True}
            )
            for cause in {f["cause"] for f in row["findings"]}:
                result["actionable_patients"][cause] = result["actionable_patients"].get(cause, 0) + 1


def _with_medications(items: list[dict], meds: dict[str, dict]) -> list[dict]:
    """The patient's resources plus the Medications their orders reference; orders whose Medication
    is not a drug any rule knows (not kept by the map) are dropped: nothing to say about them."""
    out: list[dict] = []
    added: set[str] = set()
    for res in items:
        mid = _external_med_ref(res) if "medicationReference" in res else None
        if mid is not None:
            med = meds.get(mid)
            if med is None:
                continue
            if mid not in added:
                added.add(mid)
                out.append(med)
        out.append(res)
    return out


def new_result(uid: str) -> dict:
    return {"unit": uid, **empty_tally()}


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
