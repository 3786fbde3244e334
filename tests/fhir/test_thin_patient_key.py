"""The batch files each thin resource under the patient the clinical core would read from it."""

from __future__ import annotations

import pytest

from rls_cds.core.facts import patient_of_reference
from rls_cds.fhir import thin


@pytest.mark.parametrize(
    ("reference", "key"),
    [
        ("Patient/p1", "Patient/p1"),
        ("https://ehr.example/fhir/Patient/p1", "Patient/p1"),
        # Was filed as 'Patient/p1/_history/2', a patient of its own in the batch.
        ("Patient/p1/_history/2", "Patient/p1"),
        ("https://ehr.example/fhir/Patient/p1/_history/2", "Patient/p1"),
        ("Group/g1", None),
        ("urn:uuid:4c2d", None),
    ],
)
def test_patient_key_is_the_cores_reading_of_the_subject(reference, key):
    obs = thin.Observation(subject=thin.Reference(reference=reference))
    assert thin.patient_key(obs) == key == patient_of_reference(reference)


def test_patients_and_unreferenced_resources():
    assert thin.patient_key(thin.Patient(id="p1")) == "Patient/p1"
    assert thin.patient_key(thin.Observation()) is None
    assert thin.patient_key(thin.Medication(id="m1")) is None
