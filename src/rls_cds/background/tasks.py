"""Background re-evaluation of one patient: read their FHIR data, run the clinical core, store it.

``reevaluate_patient(tenant, fhir_server, patient_id, reason)`` is idempotent: a per-patient lock
serialises concurrent runs, the store's compare-and-set refuses older data, and the same input
only refreshes the stored assessment's age. FHIR and Redis failures are retried with exponential
back-off and full jitter; what still fails (or can never succeed: bad arguments, unknown patient,
a failure inside the core, a task redelivered over and over because it kills workers) ends in the
tenant's dead-letter list with its reason, never in an endless loop.

Nothing here logs patient ids or resource contents: logs name the patient by its digest (keyed by
RLS_PATIENT_DIGEST_KEY when set).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import lru_cache

import msgspec
import redis
import requests
from celery.exceptions import SoftTimeLimitExceeded

from rls_cds.api.suppression import patient_key
from rls_cds.background.celery_app import app
from rls_cds.background.store import Store
from rls_cds.fhir.base_url import base_url_problem
from rls_cds.fhir.client import FhirFetchError, fetch_search
from rls_cds.fhir.ids import FHIR_ID
from rls_cds.provenance import code_version
from rls_cds.settings import get_settings

log = logging.getLogger("rls_cds.background")

# FHIR failures worth retrying (the server or the network may recover; a token may be refreshed).
RETRYABLE_FHIR = ("timeout", "deadline", "connection", "request", "http_401", "http_403", "http_429")
# A task delivered this many times more than its retries allow has been killing workers: stop it.
EXTRA_DELIVERIES = 3
LOCK_WAIT_SECONDS = 10.0


class PermanentFailure(Exception):
    """Retrying cannot help; ``reason`` is safe to store and log (no PHI)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RetryableFailure(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --- process-wide state ------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _load_terminology():
    from rls_cds.core.validation import set_cache_size
    from rls_cds.terminology import load_terminology

    set_cache_size(get_settings().validation_cache_size)  # once per process, before the first evaluation
    return load_terminology(path=get_settings().terminology_dir)


def _terminology():
    try:
        return _load_terminology()
    except Exception as exc:  # noqa: BLE001 - ImportError or TerminologyError: a deployment problem
        raise PermanentFailure(f"terminology_unavailable: {type(exc).__name__}") from None


@lru_cache(maxsize=1)
def _store() -> Store:
    return Store.from_settings(get_settings(), socket_timeout=5.0, retries=2)


_SESSIONS: dict[str, requests.Session] = {}
_FETCH_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bg-fhir")


def _session(fhir_server: str) -> requests.Session:
    """SMART Backend Services session for this FHIR server (token cached by fhir.smart)."""
    s = _SESSIONS.get(fhir_server)
    if s is not None:
        return s
    try:
        from rls_cds.fhir.smart import session_for
    except ImportError:
        session_for = None
    if session_for is None:
        s = requests.Session()
        s.trust_env = False
    else:
        try:
            s = session_for(fhir_server, get_settings())
        except Exception as exc:  # noqa: BLE001 - configuration errors: retrying will not help
            raise PermanentFailure(f"fhir_server_not_configured: {type(exc).__name__}") from None
    _SESSIONS[fhir_server] = s
    return s


def warm_up() -> None:
    """Load what every task needs once per worker process (before gc.freeze)."""
    _terminology()
    import rls_cds.core.engine  # noqa: F401
    import rls_cds.core.resources  # noqa: F401


# --- the work ------------------------------------------------------------------------------------
def _check_args(tenant, fhir_server, patient_id, reason) -> None:
    if not isinstance(tenant, str) or not tenant or len(tenant) > 200:
        raise PermanentFailure("invalid_tenant")
    if not isinstance(patient_id, str) or not FHIR_ID.match(patient_id):
        raise PermanentFailure("invalid_patient_id")
    if base_url_problem(fhir_server):
        raise PermanentFailure("invalid_fhir_server")
    if not isinstance(reason, str):
        raise PermanentFailure("invalid_reason")


def fetch_patient_data(fhir_server: str, patient_id: str) -> list[dict]:
    """Patient, Conditions, Observations and MedicationRequests, every page of each."""
    settings = get_settings()
    session = _session(fhir_server)
    base = fhir_server.rstrip("/")
    headers = {"Accept": "application/fhir+json"}
    per_request = settings.background_fhir_timeout_seconds
    deadline = time.monotonic() + settings.task_time_limit_seconds * 0.7
    queries = [
        f"Patient/{patient_id}",
        f"Condition?patient={patient_id}&_count=200",
        f"Observation?patient={patient_id}&_count=200",
        f"MedicationRequest?patient={patient_id}&_count=200",
    ]
    # The four reads run in parallel (I/O bound): a patient's re-evaluation waits for the slowest
    # search, not for the sum of them.
    futures = {
        query: _FETCH_POOL.submit(
            fetch_search, f"{base}/{query}", headers, deadline, per_request, session, max_pages=500
        )
        for query in queries
    }
    resources: list[dict] = []
    for query, future in futures.items():
        try:
            resources.extend(future.result())
        except FhirFetchError as exc:
            for other in futures.values():
                other.cancel()
            if query.startswith("Patient/") and exc.reason in ("http_404", "http_410"):
                raise PermanentFailure("patient_not_found") from None
            if exc.reason in RETRYABLE_FHIR or exc.reason.startswith("http_5"):
                raise RetryableFailure(f"fhir_{exc.reason}") from None
            raise PermanentFailure(f"fhir_{exc.reason}") from None
    return resources


def evaluate_record(resources: list[dict], fhir_server: str, reason: str, read_at: float) -> dict:
    """Run the clinical core; the record the store keeps (findings, cards, versions, fingerprint)."""
    from rls_cds.core.engine import evaluate, render_cards
    from rls_cds.core.resources import flatten

    flat, _ = flatten(resources)
    assessment = evaluate(flat, now=datetime.fromtimestamp(read_at, UTC), terminology=_terminology())
    cards = render_cards(assessment, hook="patient-view")
    return {
        "fhir_server": fhir_server,
        "findings": [f if isinstance(f, dict) else msgspec.to_builtins(f) for f in assessment.findings],
        "warnings": list(assessment.warnings),
        "table_version": assessment.table_version,
        "code_version": code_version(),
        "fingerprint": assessment.fingerprint,
        "read_at": read_at,
        "reason": reason,
        "resource_count": len(flat),
        "cards": [c if isinstance(c, dict) else msgspec.to_builtins(c) for c in cards],
    }


def _check_server(fhir_server: str) -> None:
    from rls_cds.background.triggers import background_server

    try:
        allowed, _ = background_server(fhir_server)
    except Exception as exc:  # noqa: BLE001 - FhirServersError: the deployment must fix its file
        raise PermanentFailure(f"fhir_servers_file_invalid: {type(exc).__name__}") from None
    if not allowed:
        raise PermanentFailure("fhir_server_not_configured")


def reevaluate(
    store: Store, tenant: str, fhir_server: str, patient_id: str, reason: str, owner: str | None = None
) -> dict | None:
    """One re-evaluation under the patient's lock; None when the lock stayed busy (caller defers)."""
    settings = get_settings()
    store.release_trigger(tenant, patient_id)  # from now on, new changes must queue a new run
    end = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        with store.patient_lock(tenant, patient_id, settings.task_time_limit_seconds, owner) as held:
            if held:
                read_at = store.now()  # Redis's clock, as the change markers: machines' clocks may differ
                resources = fetch_patient_data(fhir_server, patient_id)
                try:
                    record = evaluate_record(resources, fhir_server, reason, read_at)
                except SoftTimeLimitExceeded:
                    raise
                except ImportError:
                    raise PermanentFailure("clinical_core_unavailable") from None
                except Exception as exc:  # noqa: BLE001 - a core failure is not retried: same input, same failure
                    raise PermanentFailure(f"core_error: {type(exc).__name__}") from None
                return store.save_assessment(tenant, patient_id, record)
        if time.monotonic() > end:
            return None
        time.sleep(0.05 + random.random() * 0.2)


def _backoff(retries: int) -> float:
    """Exponential back-off with full jitter."""
    settings = get_settings()
    ceiling = min(600.0, settings.task_retry_backoff_seconds * (2**retries))
    return random.uniform(settings.task_retry_backoff_seconds / 2, ceiling)


def _dead_letter(
    store: Store,
    tenant,
    patient_id,
    task_id,
    reason: str,
    retries: int,
    task: str = "reevaluate_patient",
    fhir_server=None,
) -> None:
    ok = isinstance(tenant, str) and isinstance(patient_id, str)
    pkey = patient_key(tenant, patient_id) if ok else None
    entry = {"task": task, "task_id": task_id, "patient": pkey, "reason": reason, "retries": retries}
    if ok and FHIR_ID.match(patient_id) and not base_url_problem(fhir_server):
        # What `rls-cds reevaluate --dead-letters` needs to queue the patient again. Kept in Redis only
        # (like the assessments); never logged, and the operator API shows entries without it.
        entry["requeue"] = {"patient_id": patient_id, "fhir_server": fhir_server}
    try:
        store.dead_letter(tenant if isinstance(tenant, str) and tenant else "default", entry)
    except redis.RedisError:
        log.error("dead letter could not be stored", extra={"patient": pkey, "reason": reason})
    log.error("re-evaluation failed permanently", extra={"patient": pkey, "reason": reason})


@app.task(bind=True, name="rls_cds.background.tasks.reevaluate_patient", max_retries=None)
def reevaluate_patient(self, tenant: str, fhir_server: str, patient_id: str, reason: str = "manual") -> dict:
    settings = get_settings()
    started = time.monotonic()
    store = _store()
    retries = self.request.retries or 0
    outcome = "error"
    try:
        _check_args(tenant, fhir_server, patient_id, reason)
        _check_server(fhir_server)
        deliveries = store.redis.incr(f"rls:deliveries:{self.request.id}")
        store.redis.expire(f"rls:deliveries:{self.request.id}", 86400)
        if deliveries > retries + 1 + EXTRA_DELIVERIES:
            raise PermanentFailure(f"delivered {deliveries} times (the worker was lost each time)")
        stored = reevaluate(store, tenant, fhir_server, patient_id, reason, owner=self.request.id)
        if stored is None:  # another run holds the patient: run again after it
            self.apply_async(
                (tenant, fhir_server, patient_id, reason),
                countdown=1 + random.random(),
                queue="hooks",
            )
            outcome = "deferred"
            return {"outcome": outcome}
        outcome = stored["outcome"]
        return {
            "outcome": outcome,
            "revision": stored.get("revision"),
            "changes": stored.get("changes"),
            "table_version": stored.get("table_version"),
        }
    except PermanentFailure as exc:
        outcome = "dead_letter"
        _dead_letter(store, tenant, patient_id, self.request.id, exc.reason, retries, fhir_server=fhir_server)
        return {"outcome": outcome, "reason": exc.reason}
    except (RetryableFailure, redis.RedisError, SoftTimeLimitExceeded) as exc:
        reason_text = getattr(exc, "reason", None) or type(exc).__name__
        if retries >= settings.task_max_retries:
            outcome = "dead_letter"
            _dead_letter(
                store,
                tenant,
                patient_id,
                self.request.id,
                f"{reason_text} (gave up)",
                retries,
                fhir_server=fhir_server,
            )
            return {"outcome": outcome, "reason": reason_text}
        outcome = "retry"
        log.warning("re-evaluation will be retried", extra={"reason": reason_text, "retries": retries})
        raise self.retry(countdown=_backoff(retries), max_retries=settings.task_max_retries) from None
    except Exception as exc:  # noqa: BLE001 - e.g. a malformed FHIR answer: a failed task is acked silently
        outcome = "dead_letter"
        reason_text = f"unexpected_error: {type(exc).__name__}"  # no message: it may quote patient data
        _dead_letter(
            store, tenant, patient_id, self.request.id, reason_text, retries, fhir_server=fhir_server
        )
        return {"outcome": outcome, "reason": reason_text}
    finally:
        with contextlib.suppress(redis.RedisError):
            store.record_task("reevaluate_patient", outcome, time.monotonic() - started)


@app.task(bind=True, name="rls_cds.background.tasks.reevaluate_focus", max_retries=None)
def reevaluate_focus(
    self, tenant: str, fhir_server: str, reference: str, reason: str = "subscription"
) -> dict:
    """An id-only notification named a resource, not its patient: read it, queue its patient."""
    from rls_cds.background.triggers import enqueue_reevaluation, focus_claim, patient_of, split_reference

    settings = get_settings()
    store = _store()
    retries = self.request.retries or 0
    rtype, rid = split_reference(reference)
    try:
        if rtype is None or not FHIR_ID.match(rid or ""):
            raise PermanentFailure("invalid_focus_reference")
        _check_args(tenant, fhir_server, "focus", reason)
        _check_server(fhir_server)
        # From now on a new change of this resource must queue a new read (this one may miss it).
        store.release_once(tenant, focus_claim(fhir_server, reference))
        deadline = time.monotonic() + settings.background_fhir_timeout_seconds
        url = f"{fhir_server.rstrip('/')}/{rtype}/{rid}"
        try:
            found = fetch_search(
                url,
                {"Accept": "application/fhir+json"},
                deadline,
                settings.background_fhir_timeout_seconds,
                _session(fhir_server),
                max_pages=1,
            )
        except FhirFetchError as exc:
            if exc.reason in RETRYABLE_FHIR or exc.reason.startswith("http_5"):
                raise RetryableFailure(f"fhir_{exc.reason}") from None
            raise PermanentFailure(f"fhir_{exc.reason}") from None
        patient = patient_of(found[0]) if found else None
        if patient is None:
            return {"outcome": "no_patient"}  # e.g. a Medication or Practitioner changed
        queued = enqueue_reevaluation(tenant, fhir_server, patient, reason, store=store)
        return {"outcome": "queued" if queued.queued else "coalesced", "patient": queued.patient}
    except PermanentFailure as exc:
        _dead_letter(store, tenant, None, self.request.id, exc.reason, retries, "reevaluate_focus")
        return {"outcome": "dead_letter", "reason": exc.reason}
    except (RetryableFailure, redis.RedisError, SoftTimeLimitExceeded) as exc:  # as in reevaluate_patient
        reason_text = getattr(exc, "reason", None) or type(exc).__name__
        if retries >= settings.task_max_retries:
            _dead_letter(
                store, tenant, None, self.request.id, f"{reason_text} (gave up)", retries, "reevaluate_focus"
            )
            return {"outcome": "dead_letter", "reason": reason_text}
        raise self.retry(countdown=_backoff(retries), max_retries=settings.task_max_retries) from None
    except Exception as exc:  # noqa: BLE001 - as in reevaluate_patient: dead-lettered, never lost silently
        reason_text = f"unexpected_error: {type(exc).__name__}"
        _dead_letter(store, tenant, None, self.request.id, reason_text, retries, "reevaluate_focus")
        return {"outcome": "dead_letter", "reason": reason_text}
