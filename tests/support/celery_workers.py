"""Test fixtures: celery_workers (filled in by its issue)."""
