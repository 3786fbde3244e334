"""Per-patient FHIR searches, for servers without Bulk Data: panel membership and each patient's data.

A unit is a group of patients (settings.panel_patients_per_task). For each patient: the Patient, its
Conditions, Observations and MedicationRequests (with the Medications they reference, `_include`),
every page followed (same origin only). A patient whose reads fail after retries goes to the error
report with the reason (an HTTP status or error class, never a URL or a token).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import orjson
import requests

from rls_cds.core.facts import patient_of_reference
from rls_cds.fhir.client import unreadable_bundle
from rls_cds.panels.work import add_error, evaluate_patient, new_result

QUERIES = (
    ("Condition", "Condition?patient={pid}&_count=200"),
    ("Observation", "Observation?patient={pid}&_count=200"),
    ("MedicationRequest", "MedicationRequest?patient={pid}&_include=MedicationRequest:medication&_count=200"),
)
MAX_PAGES = 100


class FetchError(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.netloc) == (pb.scheme, pb.netloc)


def get_json(session: requests.Session, url: str, timeout: float, attempts: int = 3) -> dict:
    for attempt in range(attempts):
        try:
            resp = session.get(url, headers={"Accept": "application/fhir+json"}, timeout=timeout,
                               allow_redirects=False)  # fmt: skip
        except requests.RequestException as exc:
            if attempt == attempts - 1:
                raise FetchError(f"FHIR server unreachable ({type(exc).__name__})") from None
            time.sleep(0.2 * 2**attempt)
            continue
        if resp.status_code == 200:
            try:
                doc = orjson.loads(resp.content)
            except orjson.JSONDecodeError:
                raise FetchError("FHIR server answered with invalid JSON") from None
            if not isinstance(doc, dict):  # callers read it as a resource: a list would crash the unit
                raise FetchError("FHIR server answered with JSON that is not a FHIR resource")
            return doc
        if resp.status_code in (429, 500, 502, 503, 504) and attempt < attempts - 1:
            time.sleep(0.2 * 2**attempt)
            continue
        raise FetchError(f"FHIR server answered HTTP {resp.status_code}")
    raise FetchError("FHIR server kept failing")


def search_all(session: requests.Session, base: str, query: str, timeout: float) -> list[dict]:
    """Every resource of a search, following Bundle.link[next] on the same origin."""
    url = f"{base}/{query}"
    out: list[dict] = []
    for _ in range(MAX_PAGES):
        bundle = get_json(session, url, timeout)
        if unreadable_bundle(bundle):  # else a TypeError below fails the unit on every redelivery
            raise FetchError("FHIR server answered with a Bundle whose entry or link is not a list")
        for entry in bundle.get("entry") or []:
            res = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(res, dict):
                out.append(res)
        nxt = next(
            (
                lk.get("url")
                for lk in bundle.get("link") or []
                if isinstance(lk, dict) and lk.get("relation") == "next"
            ),
            None,
        )
        if not nxt:
            return out
        if not _same_origin(nxt, base):
            raise FetchError("FHIR server sent a next link to another origin")
        url = nxt
    raise FetchError("too many pages")


def group_members(session: requests.Session, base: str, group_id: str, timeout: float) -> list[str]:
    group = get_json(session, f"{base}/Group/{group_id}", timeout)
    ids = []
    for m in group.get("member") or []:
        ref = ((m or {}).get("entity") or {}).get("reference") or ""
        # As the core reads subjects: 'Patient/p1/_history/2' and '<base>/Patient/p1' are both p1.
        patient = patient_of_reference(ref) if isinstance(ref, str) else None
        if patient:
            ids.append(patient.removeprefix("Patient/"))
    return list(dict.fromkeys(ids))


def search_patients(session: requests.Session, base: str, query: str, timeout: float) -> list[str]:
    found = search_all(session, base, query, timeout)
    return list(dict.fromkeys(r["id"] for r in found if r.get("resourceType") == "Patient" and r.get("id")))


def patient_resources(session: requests.Session, base: str, pid: str, timeout: float) -> list[dict]:
    resources = [get_json(session, f"{base}/Patient/{pid}", timeout)]
    for _kind, template in QUERIES:
        resources.extend(search_all(session, base, template.format(pid=pid), timeout))
    return resources


OUT_OF_TIME = (
    "not read: the task time limit was reached (slow FHIR server); "
    "lower RLS_PANEL_PATIENTS_PER_TASK or raise RLS_TASK_TIME_LIMIT_SECONDS"
)


def run_search_unit(
    state,
    uid,
    unit,
    meta,
    evaluator,
    on_patient,
    session_factory,
    timeout: float,
    deadline: float | None = None,
) -> dict:
    """Fetch and evaluate each patient of the unit; save and return the unit result.

    ``deadline`` (time.monotonic()): patients not started by then, or whose reads the task's soft time
    limit interrupts, go to the error report. Without it a unit slower than the time limit failed as a
    whole on every redelivery, and the run never ended."""
    from celery.exceptions import SoftTimeLimitExceeded

    t0 = time.perf_counter()
    base = meta["fhir_server"]
    session = session_factory(base)
    result = new_result(uid)
    patients = unit["patients"]
    for n, pid in enumerate(patients):
        if deadline is not None and time.monotonic() > deadline:
            _out_of_time(result, patients[n:])
            break
        try:
            resources = patient_resources(session, base, pid, timeout)
        except FetchError as exc:
            add_error(result, pid, exc.reason)
            continue
        except SoftTimeLimitExceeded:
            _out_of_time(result, patients[n:])
            break
        evaluate_patient(result, pid, resources, evaluator, on_patient)
    result["seconds"] = round(time.perf_counter() - t0, 4)
    state.save_result(uid, result)
    return result


def _out_of_time(result: dict, patients: list[str]) -> None:
    for pid in patients:
        add_error(result, pid, OUT_OF_TIME)
