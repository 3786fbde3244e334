"""Shared fixtures live in tests/support/, one module per real process the tests start."""

import os

from hypothesis import settings

pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.fhir_server",
    "tests.support.fault_proxy",
    "tests.support.cds_server",
    "tests.support.jwt_keys",
    "tests.support.celery_workers",
]

# CI runs the property tests with a fixed seed, so a landing never depends on luck; local runs keep
# exploring new examples (a failure found there is a real bug, and is pinned by a vignette).
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
