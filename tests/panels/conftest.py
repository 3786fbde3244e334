"""Shared helpers for the panel tests: generated NDJSON, the terminology, a Redis per module."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.fhir_server import REPO
from tests.support.redis_server import start_redis

sys.path.insert(0, str(REPO / "benchmarks"))

import generate  # noqa: E402


@pytest.fixture(scope="session")
def terminology():
    from rls_cds.settings import get_settings
    from rls_cds.terminology import load_terminology

    return load_terminology(path=get_settings().terminology_dir)


@pytest.fixture(scope="module")
def panel_redis(tmp_path_factory):
    server = start_redis(tmp_path_factory.mktemp("panel-redis"))
    yield server
    server.stop()


def write_export(directory: Path, patients: int, seed: int = 7) -> dict:
    return generate.write_ndjson(directory, patients, seed=seed)


def patients_of(patients: int, seed: int = 7) -> list[dict]:
    """The same patients write_export writes, as full resources per patient (Medications inline)."""
    out = []
    for i in range(patients):
        p = generate.make_patient(i, "mixed", seed)
        p["Medication"] = generate._externalise_medications(p["MedicationRequest"], i)
        out.append(p)
    return out
