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
    patient: str  # salted digest, safe to log and return
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
    if coalesce and not store.claim_trigger(tenant, patient_id, settings.trigger_coalesce_seconds):
        log.info("re-evaluation coalesced", extra={"patient": pkey, "reason": reason})
        return Queued(pkey, False)
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


def on_order_sign(tenant: str, fhir_server: str | None, patient_id: str) -> None:
    """Called by the API after an order-sign answer was sent: the patient's orders just changed."""
    if not fhir_server:
        log.info("order-sign without fhirServer: nothing to re-evaluate from")
        return
    enqueue_reevaluation(tenant, fhir_server, patient_id, "order-sign")
