"""The two realistic RLS patients the API and background tests read from the real FHIR server.

Each test package loads its own pair (fresh ids per call), so what one package's workers or hooks
do to a patient never shows in another package's assertions.
"""

from __future__ import annotations

import uuid

from tests.api import data
from tests.support.fhir_server import FhirServer, transaction


def load_rls_patients(fhir_server: FhirServer, prefix: str) -> dict[str, str]:
    """Loads into sekmet 'low_iron_ssri' (RLS, ferritin 30, active sertraline) and 'no_labs'
    (RLS only, no labs); returns name -> patient id (ids start with `prefix`)."""
    tag = uuid.uuid4().hex[:8]
    ids = {"low_iron_ssri": f"{prefix}-lis-{tag}", "no_labs": f"{prefix}-nol-{tag}"}
    resources = data.patient_record(ids["low_iron_ssri"], 30, active_sertraline=True)
    resources += data.patient_record(ids["no_labs"], None)
    fhir_server.load_bundle(transaction(resources))
    return ids
