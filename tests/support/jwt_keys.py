"""Test fixtures: jwt_keys (filled in by its issue)."""
