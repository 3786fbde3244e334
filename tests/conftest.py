"""Shared fixtures live in tests/support/, one module per real process the tests start."""

pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.fhir_server",
    "tests.support.fault_proxy",
    "tests.support.cds_server",
    "tests.support.jwt_keys",
    "tests.support.celery_workers",
]
