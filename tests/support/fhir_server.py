"""Test fixtures: fhir_server (filled in by its issue)."""
