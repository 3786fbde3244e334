"""Triggers: queue a patient's re-evaluation (order signed, FHIR notification, operator request).

Duplicates are coalesced: while a re-evaluation of the patient is queued and has not started
reading yet (a Redis SET NX key, cleared by the task when it starts), another request adds nothing,
because the queued run will read the newest data anyway. A request that arrives once the run has
started reading queues a new run, so no change is ever missed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

from rls_cds.api.suppression import patient_key
from rls_cds.background.store import Store
from rls_cds.settings import get_settings

log = logging.getLogger("rls_cds.background")

TASK_NAME = "rls_cds.background.tasks.reevaluate_patient"
# Publishing must fail fast when Redis is gone: callers answer 503 or log, they never hang.
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


@dataclass
class Queued:
    patient: str  # digest (keyed by RLS_PATIENT_DIGEST_KEY), safe to log and return
    queued: bool  # False: coalesced into a run already queued
    task_id: str | None = None


@lru_cache(maxsize=1)
def _store() -> Store:
    return Store.from_settings(get_settings(), socket_timeout=1.0)


def enqueue_reevaluation(
    tenant: str,
    fhir_server: str,
    patient_id: str,
    reason: str,
    store: Store | None = None,
    coalesce: bool = True,
) -> Queued:
    """Queue ``reevaluate_patient`` on the ``hooks`` queue. Raises redis/kombu errors when Redis is down."""
    from rls_cds.background.celery_app import app

    settings = get_settings()
    store = store or _store()
    pkey = patient_key(tenant, patient_id)
    # First, even when coalesced: hooks must stop answering from the assessment that is now outdated.
    store.mark_changed(tenant, patient_id)
    if coalesce and not store.claim_trigger(tenant, patient_id, settings.trigger_coalesce_seconds):
        log.info("re-evaluation coalesced", extra={"patient": pkey, "reason": reason})
        return Queued(pkey, False)
    if not coalesce:
        store.redis.ping()  # fail in milliseconds (short socket timeout), not in the broker's seconds
    try:
        result = app.send_task(
            TASK_NAME,
            args=(tenant, fhir_server, patient_id, reason),
            queue="hooks",
            retry=True,
            retry_policy=PUBLISH_RETRY,
        )
    except Exception:
        if coalesce:  # nothing was queued: let the next request try again
            store.release_trigger(tenant, patient_id)
        raise
    log.info("re-evaluation queued", extra={"patient": pkey, "reason": reason, "task_id": result.id})
    return Queued(pkey, True, result.id)


def focus_claim(fhir_server: str, reference: str) -> str:
    """The ``Store.claim_once`` name that coalesces notifications about one focus resource. Like a
    patient's trigger it is released when the focus task starts reading (or nothing was queued), so a
    later change of the same resource queues a new read."""
    return f"focus|{fhir_server}|{reference}"


def on_order_sign(tenant: str, fhir_server: str | None, patient_id: str) -> None:
    """Called by the API after an order-sign answer was sent: the patient's orders just changed."""
    if not fhir_server:
        log.info("order-sign without fhirServer: nothing to re-evaluate from")
        return
    enqueue_reevaluation(tenant, fhir_server, patient_id, "order-sign")


# --- which FHIR servers background work may read, and which patient a resource is about ----------
def background_server(fhir_server: str, settings=None) -> tuple[bool, str]:
    """(allowed, tenant) for background reads of ``fhir_server``.

    With settings.fhir_servers_file set, only the servers listed there (their SMART credentials and
    tenant come from it); without it any http(s) server (development: no credentials are sent).
    """
    from rls_cds.fhir.smart import load_fhir_servers, normalize_base

    settings = settings or get_settings()
    servers = load_fhir_servers(settings)
    if not servers:
        return True, unlisted_tenant(settings)
    cfg = servers.get(normalize_base(fhir_server))
    return (cfg is not None, cfg.tenant if cfg is not None else "default")


def unlisted_tenant(settings) -> str:
    """The tenant of background work when there is no servers file: the hooks' development caller's in
    development mode (so hooks find what was stored), else 'default'."""
    return "dev" if settings.dev_mode else "default"


def split_reference(ref: object) -> tuple[str | None, str | None]:
    """'Patient/1', 'https://x/fhir/Patient/1/_history/2' -> ('Patient', '1'); anything else (None, None)."""
    if not isinstance(ref, str) or not ref or ref.startswith("#"):
        return None, None
    parts = [p for p in ref.split("?", 1)[0].split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2 or not parts[-2][:1].isupper():
        return None, None
    return parts[-2], parts[-1]


def patient_of(resource: object) -> str | None:
    """The Patient id a resource is about (itself, subject, patient, beneficiary or for)."""
    if not isinstance(resource, dict):
        return None
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else None
    for key in ("subject", "patient", "beneficiary", "for"):
        ref = resource.get(key)
        rtype, rid = split_reference(ref.get("reference") if isinstance(ref, dict) else None)
        if rtype == "Patient":
            return rid
    return None
