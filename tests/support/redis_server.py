"""Test fixtures: redis_server (filled in by its issue)."""
