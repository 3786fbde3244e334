"""Test fixtures: fault_proxy (filled in by its issue)."""
