"""Store each assessed patient in the shared assessment store (rls_cds.background.store.Store).

The same store as the background re-evaluation, so a hook that finds no prefetch can answer from a
fresh panel assessment. ``read_at`` is when the run read its data (the export's transaction time or
the run start): the store's compare-and-set keeps whichever assessment saw the newer data.
"""

from __future__ import annotations

import os
from typing import Any


class AssessmentSink:
    """Callable(patient id, Outcome); opens its own store per process (safe across fork)."""

    def __init__(self, settings: Any, tenant: str, read_at: float, run_id: str):
        self.settings = settings
        self.tenant = tenant
        self.read_at = read_at
        self.run_id = run_id
        self._store = None
        self._pid = None

    def _get_store(self):
        if self._store is None or self._pid != os.getpid():
            from rls_cds.background.store import Store
            from rls_cds.provenance import code_version

            self._code_version = code_version()

            self._store = Store.from_settings(self.settings)
            self._pid = os.getpid()
        return self._store

    def __call__(self, patient_id: str, outcome: Any) -> None:
        self._get_store().save_assessment(
            self.tenant,
            patient_id,
            {
                "findings": outcome.findings,
                "fingerprint": outcome.fingerprint,
                "table_version": outcome.table_version,
                "code_version": self._code_version,
                "read_at": self.read_at,
                "source": "panel",
                "run": self.run_id,
            },
        )
