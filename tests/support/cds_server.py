"""Test fixtures: cds_server (filled in by its issue)."""
